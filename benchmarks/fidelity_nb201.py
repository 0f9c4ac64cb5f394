"""Regenerate the README's fidelity figures: 100 NAS-Bench-201 architectures (seed 0), measured and estimated.

Fixed settings: ``annette.evaluate.study.nb201_specs(100, seed=0)``, backend onnxruntime (or --backend openvino), 1 thread,
batch 1, 3 interleaved rounds, round order seed 0. Writes the report (report.html, summary.md,
results.json, PNGs incl. ranking.png) to ``--out`` (reruns resume from its measurements.jsonl) and prints
the markdown table with the date and machine.

    .venv/bin/python benchmarks/fidelity_nb201.py --hw HW [--out runs/fidelity_nb201]
"""

from __future__ import annotations

import _study  # benchmarks/_study.py: the shared command line

from annette.evaluate.study import nb201_specs

NUM_ARCHS = 100
SAMPLE_SEED = 0


def main() -> None:
    _study.main(
        __doc__,
        nb201_specs(NUM_ARCHS, seed=SAMPLE_SEED),
        f"NAS-Bench-201 fidelity ({NUM_ARCHS} archs, seed {SAMPLE_SEED})",
        "runs/fidelity_nb201",
    )


if __name__ == "__main__":
    main()
