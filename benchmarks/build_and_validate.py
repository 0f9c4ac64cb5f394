"""The README's build from nothing on this machine, then its accuracy on the evaluation set (networks no build
stage, fit or design decision used: ``eval_unseen.py``).

Runs ``annette build --backend B --threads 1 --out OUT/build --budget-min M`` as a subprocess (exactly the
README's command; its own log goes to OUT/build.log), times it, prints the build's own validation, then measures
and estimates the evaluation sets with the new bundle (and any ``--compare`` bundles on the same measurements).

    .venv/bin/python benchmarks/build_and_validate.py [--backend onnxruntime] [--budget-min 30] \\
        [--set timm-cnn --set timm-mix --set nb201] [--compare cpu-x86-ort-fp32-t1] [--out runs/build-and-validate] \\
        [--skip-build [--bundle FILE]]
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
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--budget-min", type=float, default=30.0)
    parser.add_argument("--set", action="append", dest="sets", choices=[*EVAL_SETS, "nb201"])
    parser.add_argument("--compare", action="append", default=[], help="other bundles estimated on the same networks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="runs/build-and-validate")
    parser.add_argument("--skip-build", action="store_true", help="evaluate the bundle (--bundle) as it is")
    parser.add_argument("--bundle", help="the bundle to evaluate with --skip-build (default OUT/build/hardware.json)")
    parser.add_argument("--name", help="the bundle's name (annette build --name), e.g. to ship it")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = Path(args.bundle) if args.bundle and args.skip_build else out / "build" / "hardware.json"
    if args.skip_build and not bundle.is_file():
        sys.exit(f"--skip-build: no bundle at {bundle} (build into --out first, or name one with --bundle)")
    if not args.skip_build:
        annette = str(Path(sys.executable).with_name("annette"))
        cmd = [annette, "build", "--backend", args.backend, "--threads", "1", "--out", str(out / "build"),
               "--budget-min", f"{args.budget_min:g}", "--json", *(["--name", args.name] if args.name else [])]
        t0 = time.perf_counter()
        with open(out / "build.log", "w") as log:
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, check=False)
        if res.returncode != 0:
            sys.exit(f"build failed (exit {res.returncode}); see {out / 'build.log'}")
        doc = json.loads(res.stdout)
        print(f"`annette build --backend {args.backend} --threads 1 --budget-min {args.budget_min:g}`: "
              f"{(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        for s in doc["stages"]:
            print(f"  {s['name']:9s} {s['measured']:6d} measured {s['elapsed_s'] / 60:5.1f} min  {s['note'][:120]}")
    v = json.loads(bundle.read_text())["quality"].get("validation")
    if v:
        m, nf = v["metrics"], v["noise_floor"]
        print(f"build validation ({m['n']} generated networks): MAPE {m['mape_pct']:.1f} %, ±10 % {m['within10_pct']:.0f} %, "
              f"Spearman {m['spearman']:.3f}; noise floor MAPE {nf['mape_pct']:.1f} %", flush=True)
    results = run([str(bundle), *args.compare], args.sets or ["timm-cnn", "timm-mix", "nb201"], backend=args.backend,
                  rounds=args.rounds, out=str(out / "eval"))
    print("\n".join(results["lines"]))


if __name__ == "__main__":
    main()
