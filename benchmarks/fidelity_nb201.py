"""Regenerate the README's fidelity figures: 100 NAS-Bench-201 architectures (seed 0), measured and estimated.

Fixed settings: ``annette.evaluate.study.nb201_specs(100, seed=0)``, backend onnxruntime (or --backend openvino), 1 thread,
batch 1, 3 interleaved rounds, round order seed 0. Writes the report (report.html, summary.md,
results.json, PNGs incl. ranking.png) to ``--out`` (reruns resume from its measurements.jsonl) and prints
the markdown table with the date and machine.

    .venv/bin/python benchmarks/fidelity_nb201.py --hw HW [--out runs/fidelity_nb201]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from annette.evaluate.report import markdown_table, settings_line, write_report
from annette.evaluate.study import Progress, StudySettings, nb201_specs, run_study

NUM_ARCHS = 100
SAMPLE_SEED = 0
SETTINGS = StudySettings(backend="onnxruntime", threads=1, batch=1, rounds=3, seed=0, profile=True)


def show(p: Progress) -> None:
    where = f" round {p.round + 1}" if p.round >= 0 else ""
    print(f"[{p.phase}{where}] {p.done}/{p.total} {p.network}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hw", required=True, help="hardware model: shipped name or JSON file")
    parser.add_argument("--backend", default=SETTINGS.backend, help="backend that measures: onnxruntime or openvino")
    parser.add_argument("--out", default="runs/fidelity_nb201", help="report directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run_study(
        nb201_specs(NUM_ARCHS, seed=SAMPLE_SEED),
        args.hw,
        args.out,
        dataclasses.replace(SETTINGS, backend=args.backend),
        title=f"NAS-Bench-201 fidelity ({NUM_ARCHS} archs, seed {SAMPLE_SEED})",
        progress=show,
    )
    files = write_report(result, args.out)
    print()
    print(settings_line(result))
    print()
    print(markdown_table(result))
    print(f"\nreport: {files.html}")


if __name__ == "__main__":
    main()
