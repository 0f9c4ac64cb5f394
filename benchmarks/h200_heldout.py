"""Held-out accuracy of the H200 PyTorch-eager bundles, the tables' own repeatability, and zoo coverage.

For each table (fp16, fp32) of ``shared/data/h200-torch-eager``: import it (bench importer, format
h200-torch-eager), hold out a seeded 20 % of the rows of every kind, fit on the rest
(``annette.convert.h200.fit_h200``), estimate every held-out row's single-layer network with each layer-model
kind, and print MAPE, ±10 % share and Spearman per table kind and overall. Labels are the rows' median
(see ``annette.convert.h200.LABEL``). The noise floor: configurations a table holds twice, compared row
against row (median and minimum). ``--zoo`` estimates every torchvision classification model with the
shipped bundles (exports missing ONNX files with torch) and reports unsupported layers and the types that
fall back to the generic eager model.

    .venv/bin/python benchmarks/h200_heldout.py [--shared ../shared] [--work DIR] [--zoo] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from annette.convert.h200 import GENERIC, TABLES, heldout_accuracy, read_records, repeatability

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
FRACTION = 0.2


def _fmt(m: dict[str, Any]) -> str:
    rho = m.get("spearman")
    return f"{m['mape_pct']:6.1f} {m['within10_pct']:6.1f} {'   -' if rho is None else f'{rho:6.3f}'} {m['n']:5d}"


def show(name: str, res: dict[str, Any], noise: dict[str, Any]) -> None:
    by_kind = res["by_kind"]
    families = list(next(iter(by_kind.values())))
    print(f"\n{name}: fit on {res['n_train']} rows, {res['n_test']} held out ({res['fraction']:.0%} per kind, "
          f"seed {res['seed']}), label = {res['label']}")
    print(f"{'table kind':14s} " + " ".join(f"{k:>27s}" for k in by_kind))
    print(f"{'':14s} " + " ".join(f"{'MAPE% ±10% Spearman     n':>27s}" for _ in by_kind))
    for fam in families:
        print(f"{fam:14s} " + " ".join(f"{_fmt(by_kind[k][fam]):>27s}" for k in by_kind))
    print(f"noise floor: {noise['n_pairs']} configurations held twice; second vs first row:")
    for stat in ("median_ms", "min_ms"):
        if stat in noise:
            m = noise[stat]
            print(f"  {stat:9s} MAPE {m['mape_pct']:.1f} %, ±10 % {m['within10_pct']:.1f} %, Spearman {m['spearman']:.3f}")


def zoo() -> dict[str, Any]:
    from annette.estimate import estimate_many
    from annette.hardware import HardwareModel
    from annette.importers import load_model
    from annette.torchvision_models import TORCHVISION_MODELS

    graphs = []
    for name in TORCHVISION_MODELS:
        print(f"importing torchvision:{name}", flush=True)
        graphs.append(load_model(f"torchvision:{name}"))
    out: dict[str, Any] = {}
    for bundle in TABLES:
        hw = HardwareModel.load(bundle)
        ests = estimate_many(graphs, hw, kind="mixed")
        generic = Counter(x.type for e in ests for x in e.layers if x.model.startswith(GENERIC))
        unsupported = {e.model: e.n_unsupported for e in ests if e.n_unsupported}
        out[bundle] = {
            "n_models": len(ests),
            "unsupported": unsupported,
            "generic_types": dict(generic.most_common()),
            "total_ms": {e.model: e.total_ms for e in ests},
        }
        print(f"\n{bundle}: {len(ests)} torchvision models, {len(unsupported)} with unsupported layers {unsupported}")
        print(f"  types estimated by {GENERIC} (layers): {dict(generic.most_common())}")
        for e in ests:
            print(f"  {e.model:22s} {e.total_ms:9.3f} ms  {e.n_executed:5d} executed layers")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--work", type=Path, default=None, help="keep the imported stores here (faster reruns)")
    parser.add_argument("--zoo", action="store_true", help="also check torchvision coverage of the shipped bundles")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for name, file in TABLES.items():
        table = args.shared / "data" / "h200-torch-eager" / file
        records = read_records(table, None if args.work is None else args.work / name)
        res = heldout_accuracy(records, fraction=FRACTION, seed=SEED)
        noise = repeatability(table)
        show(name, res, noise)
        results[name] = {"heldout": res, "repeatability": noise}
    if args.zoo:
        results["zoo"] = zoo()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
