"""Record a measured study (``annette evaluate`` / ``benchmarks/*.py`` results.json) in a hardware bundle.

Adds ``quality["measured"][STUDY] = {date, cpu, load average, settings, n, per-kind MAPE/±10 %/Spearman,
noise floor}`` to the bundle, so ``annette hw list`` can show how the model did on real networks. It copies
figures from the results file only: nothing is computed or edited by hand.

    .venv/bin/python scripts/record_accuracy.py BUNDLE.json RESULTS.json --study zoo18
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("n", "mape_pct", "within10_pct", "spearman", "kendall")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--study", required=True, help="short name, e.g. zoo18 or nb201-100")
    args = parser.parse_args()
    bundle = json.loads(args.bundle.read_text())
    res = json.loads(args.results.read_text())
    entry = {
        "title": res["title"],
        "date": res["metadata"]["date"],
        "cpu": res["metadata"].get("cpu"),
        "loadavg": res["metadata"].get("loadavg"),
        "settings": res["settings"],
        "label": res["label_statistic"],
        "kinds": {k: {key: v[key] for key in KEYS} for k, v in res["overall"].items()},
        "noise_floor": {key: res["noise_floor"][key] for key in KEYS},
    }
    bundle.setdefault("quality", {}).setdefault("measured", {})[args.study] = entry
    args.bundle.write_text(json.dumps(bundle))
    mixed = entry["kinds"].get("mixed", {})
    print(f"{args.bundle}: recorded {args.study} (mixed MAPE {mixed.get('mape_pct', float('nan')):.2f} %)")


if __name__ == "__main__":
    main()
