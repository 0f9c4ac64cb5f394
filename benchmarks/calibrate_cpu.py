"""`annette calibrate` onto this machine: its time, and the accuracy before and after on networks it never saw.

Runs the README's calibration command (``annette calibrate --hw BASE -o OUT/calibrated.json --minutes M``) as a
subprocess and times it, then measures the evaluation set of ``eval_unseen.py`` (timm architectures and
NAS-Bench-201 networks no build, calibration or design decision used; resumable) and estimates it with the base
and the calibrated bundle. The noise floor (round 1 against round 2) is printed beside them.

    .venv/bin/python benchmarks/calibrate_cpu.py --hw cpu-x86-ort-fp32-t1 [--minutes 3] [--set timm-cnn ...] \\
        [--out runs/calibrate-cpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from eval_unseen import EVAL_SETS, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hw", required=True, help="base bundle (shipped name or file), fitted on another CPU")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--set", action="append", dest="sets", choices=[*EVAL_SETS, "nb201"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="runs/calibrate-cpu")
    parser.add_argument("--skip-calibration", action="store_true", help="reuse OUT/calibrated.json")
    parser.add_argument("--eval-out", default=None, help="measurements of the evaluation set (default OUT/eval; "
                        "share eval_unseen.py's --out to measure them once)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / "calibrated.json"
    annette = str(Path(sys.executable).with_name("annette"))
    if not args.skip_calibration:
        cmd = [annette, "calibrate", "--hw", args.hw, "-o", str(bundle), "--minutes", f"{args.minutes:g}",
               "--store", str(out / "store"), "--json"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            sys.exit(f"calibration failed: {res.stderr.strip()[-2000:]}")
        doc = json.loads(res.stdout)
        doc["wall_s"] = wall
        (out / "calibration.json").write_text(json.dumps(doc, indent=1))
        print(f"`{' '.join(cmd[1:])}`: {wall / 60:.2f} min wall, {doc['n_records']} records; held-out calibration "
              f"records MAPE {doc['before']['mape_pct']:.1f} % -> {doc['after']['mape_pct']:.1f} %", flush=True)
    results = run([args.hw, str(bundle)], args.sets or ["timm-cnn", "timm-mix", "nb201"], rounds=args.rounds,
                  out=args.eval_out or str(out / "eval"))
    print("\n".join(results["lines"]))


if __name__ == "__main__":
    main()
