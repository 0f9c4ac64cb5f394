"""Calibration from K whole-network timings (`annette calibrate --measured`): accuracy and ranking against K.

HELP's setting (NeurIPS 2021): a device annette never ran on gives K end-to-end timings of a search space's
networks; the rest of the space is ranked with the calibrated model. Here the device is this machine (a CPU the
base bundle was not fitted on), the space NAS-Bench-201: N networks drawn with a seed nothing else uses are
measured once in interleaved rounds (label: minimum; resumable), then for each K, S random subsets of K networks
calibrate the base (``annette.calibrate.calibrate_measured``, what the CLI runs) and the other N - K networks
are estimated. Reports mean and worst Spearman, MAPE and ±10 % accuracy over the subsets, the base before
calibration, and the noise floor.

    .venv/bin/python benchmarks/calibrate_measured.py --hw cpu-x86-ort-fp32-t1 [--n 60] [--k 5 10 20 50] \\
        [--subsets 10] [--out runs/calibrate-measured]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from annette.backends.base import cpu_model
from annette.calibrate import calibrate_measured
from annette.estimate import estimate_many
from annette.evaluate.metrics import compute_metrics, noise_floor
from annette.evaluate.study import StudySettings, nb201_specs, run_study
from annette.hardware import HardwareModel
from annette.importers import load_model

SEED = 777_001  # no build stage, validation or other evaluation draws with it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hw", required=True)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--k", type=int, nargs="*", default=[5, 10, 20, 50])
    parser.add_argument("--subsets", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="runs/calibrate-measured")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    specs = nb201_specs(args.n, seed=SEED)
    base = HardwareModel.load(args.hw)
    res = run_study(specs, base, Path(args.out) / "measurements", StudySettings(rounds=args.rounds, profile=False))
    nets = list(res.networks)
    measured = np.array([n.measured_ms for n in nets])
    graphs = [load_model(n.spec) for n in nets]
    rows = [(n.spec, g, float(m)) for n, g, m in zip(nets, graphs, measured, strict=True)]
    before = compute_metrics(measured, [e.total_ms for e in estimate_many(graphs, base)])
    noise = noise_floor([n.rounds_ms[0] for n in nets], [n.rounds_ms[1] for n in nets])
    lines = [f"NAS-Bench-201, {len(nets)} networks measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
             f"{cpu_model()} (ONNX Runtime, 1 thread, min of {args.rounds} rounds); base {base.name} (fitted on "
             f"{base.target.device_model}); {args.subsets} random calibration subsets per K, scored on the other "
             "networks.", "",
             "| K | Spearman mean | Spearman worst | MAPE % mean | MAPE % worst | ±10 % acc. % mean |",
             "|---:|---:|---:|---:|---:|---:|",
             f"| 0 (base) | {before.spearman:.3f} | - | {before.mape_pct:.1f} | - | {before.within10_pct:.0f} |"]
    out: dict[str, object] = {"before": before.to_dict(), "noise_floor": noise.to_dict(), "k": {}}
    rng = np.random.default_rng(0)
    for k in args.k:
        if k >= len(nets) - 5:
            continue
        ms = []
        for _ in range(args.subsets):
            idx = rng.permutation(len(nets))
            cal, rest = idx[:k], idx[k:]
            hw, _ = calibrate_measured(base, [rows[i] for i in cal])
            est = [e.total_ms for e in estimate_many([graphs[i] for i in rest], hw)]
            ms.append(compute_metrics(measured[rest], est))
        sp = [m.spearman for m in ms]
        mape = [m.mape_pct for m in ms]
        out["k"][str(k)] = [m.to_dict() for m in ms]  # type: ignore[index]
        lines.append(f"| {k} | {np.mean(sp):.3f} | {min(sp):.3f} | {np.mean(mape):.1f} | {max(mape):.1f} | "
                     f"{np.mean([m.within10_pct for m in ms]):.0f} |")
    lines.append(f"| noise floor | {noise.spearman:.3f} | | {noise.mape_pct:.1f} | | {noise.within10_pct:.0f} |")
    print("\n".join(lines))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.md").write_text("\n".join(lines) + "\n")
    (Path(args.out) / "results.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
