"""Regenerate the shipped hardware models that come from foreign data (deterministic, seeded).

    .venv/bin/python scripts/build_shipped_models.py [--shared ../shared] [--only NAME ...] [--work DIR]

- ``annette-dnndk``, ``annette-ncs2``: the original ANNETTE's roofline and refined-roofline layer models and
  mapping models (``shared/legacy-annette/models``), converted by :mod:`annette.convert.legacy_bundle`.
- ``h200-torch-eager-fp16``, ``h200-torch-eager-fp32``: fitted from ``shared/data/h200-torch-eager`` by
  :mod:`annette.convert.h200`, with held-out accuracy (20 % of each kind's rows, seed 0) and the tables'
  repeatability in ``quality``.

Bundles are written to ``src/annette/data/hw/<name>.json``. ``--work`` keeps the benchmark stores the H200
tables are imported into (re-runs then skip the import).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import replace
from pathlib import Path

from annette.convert.h200 import TABLES, fit_h200, heldout_accuracy, read_records, repeatability
from annette.convert.legacy_bundle import LEGACY_SOURCES, build_legacy_bundle
from annette.quality import EndToEnd, HeldoutAccuracy

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
HOLDOUT = 0.2
H200_DIR = "data/h200-torch-eager"


def build_h200(name: str, shared: Path, work: Path | None) -> None:
    table = shared / H200_DIR / TABLES[name]
    records = read_records(table, None if work is None else work / name)
    logging.info("%s: %d records; held-out evaluation (%.0f %% per kind, seed %d)", name, len(records), HOLDOUT * 100, SEED)
    heldout = heldout_accuracy(records, fraction=HOLDOUT, seed=SEED)
    provenance = {
        "source": f"shared/{H200_DIR}/{table.name}",
        "source_sha256": hashlib.sha256(table.read_bytes()).hexdigest(),
        "description": "single-layer timings of PyTorch 2.11.0+cu130 eager on one NVIDIA H200 (cuDNN 9.19, "
        "channels_last, cudnn.benchmark off); one sample = launch + kernel of one eager call",
        "fitted_at": "deterministic build: scripts/build_shipped_models.py",
        "built_by": "annette.convert.h200",
    }
    hw, _ = fit_h200(records, name=name, seed=SEED, holdout=0.0, provenance=provenance)
    # held-out rows estimated end to end (single-layer networks through the bundle), as `annette hw list` shows
    end_to_end = {kind: EndToEnd(per["all"]["n"], 0, per["all"]["mape_pct"] / 100)
                  for kind, per in heldout["by_kind"].items()}
    fit = hw.quality.fit
    quality = replace(hw.quality, fit=None if fit is None else replace(fit, end_to_end_holdout=end_to_end),
                      heldout=HeldoutAccuracy.from_dict(heldout), repeatability=repeatability(table))
    path = replace(hw, quality=quality).save(ROOT / "src/annette/data/hw" / f"{name}.json")
    mixed = heldout["by_kind"].get("mixed", {}).get("all", {})
    logging.info("wrote %s (held-out mixed MAPE %.1f %%)", path, mixed.get("mape_pct", float("nan")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("--only", nargs="*", default=None, help="bundle names to build (default: all)")
    parser.add_argument("--work", type=Path, default=None, help="keep the H200 benchmark stores here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = [*LEGACY_SOURCES, *TABLES]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"unknown bundle(s) {unknown}; choose from {names}")
    for name in args.only or names:
        if name in LEGACY_SOURCES:
            hw = build_legacy_bundle(name, args.shared / "legacy-annette")
            logging.info("wrote %s", hw.save(ROOT / "src/annette/data/hw" / f"{name}.json"))
        else:
            build_h200(name, args.shared, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
