"""Record a measured study (``annette evaluate`` / ``benchmarks/*.py`` results.json) in a hardware bundle.

Adds ``quality["measured"][STUDY] = {date, cpu, load average, settings, n, per-kind MAPE/±10 %/Spearman,
noise floor}`` (:class:`annette.quality.MeasuredStudy`) to the bundle, so ``annette hw list`` can show how the model
did on real networks. It copies figures from the results file only: nothing is computed or edited by hand.

    .venv/bin/python scripts/record_accuracy.py BUNDLE.json RESULTS.json --study zoo18
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from annette.quality import BundleQuality, MeasuredStudy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--study", required=True, help="short name, e.g. zoo18 or nb201-100")
    args = parser.parse_args()
    bundle = json.loads(args.bundle.read_text())
    res = json.loads(args.results.read_text())
    study = MeasuredStudy.from_results(res)
    bundle["quality"] = BundleQuality.from_dict(bundle.get("quality", {})).with_study(args.study, study).to_dict()
    args.bundle.write_text(json.dumps(bundle))
    mixed = study.kinds.get("mixed")
    mape = float("nan") if mixed is None or mixed.mape_pct is None else mixed.mape_pct
    print(f"{args.bundle}: recorded {args.study} (mixed MAPE {mape:.2f} %)")


if __name__ == "__main__":
    main()
