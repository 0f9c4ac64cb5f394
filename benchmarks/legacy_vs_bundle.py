"""The converted original-ANNETTE bundles against the exact legacy path, on every legacy graph that converts.

For each concrete graph of ``shared/legacy-annette/graphs`` that ``graph_from_legacy`` converts, each device
(``annette-dnndk`` with dnndk.json, ``annette-ncs2`` with ov.json) and kind (roofline, refined-roofline):
the legacy total (``annette.legacy``), the time the original spends on its DataInput layers (graph inputs,
no layers in annette), the shipped bundle's estimate of the converted graph, and their ratio
bundle / (legacy − inputs). Every layer whose times differ by more than 1e-9 (relative) is attributed to a
documented reason (``annette.convert.legacy_check.REASONS``); the summary counts them.

    .venv/bin/python benchmarks/legacy_vs_bundle.py [--shared ../shared] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import Counter
from pathlib import Path

from annette.convert.legacy_bundle import LEGACY_SOURCES
from annette.convert.legacy_check import REASONS, Comparison, compare
from annette.errors import AnnetteError
from annette.hardware import HardwareModel

ROOT = Path(__file__).resolve().parents[1]
KIND_FILE = {"roofline": "roofline", "refined": "ref_roofline"}


def run(shared: Path) -> tuple[list[tuple[str, str, Comparison]], dict[str, str]]:
    legacy = shared / "legacy-annette"
    graphs = sorted((legacy / "graphs").glob("*.json"))
    results: list[tuple[str, str, Comparison]] = []
    skipped: dict[str, str] = {}
    for name, src in LEGACY_SOURCES.items():
        hw = HardwareModel.load(name)
        for kind, file in src.layer_models.items():
            for g in graphs:
                try:
                    c = compare(g, hw, kind, legacy / file, legacy / src.mapping)
                except AnnetteError as exc:
                    skipped[g.stem] = str(exc).splitlines()[0]
                    continue
                results.append((g.stem, name, c))
    return results, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    results, skipped = run(args.shared)

    print(f"{'graph':26s} {'bundle':14s} {'kind':9s} {'legacy ms':>11s} {'inputs ms':>10s} {'bundle ms':>11s} "
          f"{'ratio':>9s}  layers differing (reason: count)")
    for graph, name, c in results:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(c.reasons.items()) if r != "graph input") or "-"
        ratio = c.rel_error + 1.0  # NaN where the original estimates nothing but inputs
        print(f"{graph:26s} {name:14s} {c.kind:9s} {c.legacy_ms:11.4f} {c.legacy_input_ms:10.4f} {c.bundle_ms:11.4f} "
              f"{ratio:9.6f}  {reasons}")

    print(f"\n{len({g for g, _, _ in results})} graphs converted, {len(skipped)} not convertible:")
    for g, why in sorted(skipped.items()):
        print(f"  {g}: {why[:110]}")
    exact = [(g, n, c) for g, n, c in results if c.expected_exact]
    worst = max((abs(c.rel_error) for _, _, c in exact), default=0.0)
    print(f"\n{len(exact)} of {len(results)} (graph, bundle, kind) pairs have no layer-level difference but graph "
          f"inputs; there |bundle / (legacy - inputs) - 1| <= {worst:.1e}:")
    for g, n, c in exact:
        print(f"  {g} {n} {c.kind}")
    ratios = [c.rel_error + 1.0 for _, _, c in results if math.isfinite(c.rel_error)]
    print(f"all pairs: ratio bundle / (legacy - inputs) from {min(ratios):.4f} to {max(ratios):.4f} "
          f"(median {statistics.median(ratios):.4f})")
    total: Counter[str] = Counter()
    n_layers = 0
    for _, _, c in results:
        total.update(c.reasons)
        n_layers += len(c.diffs)
    print("\nlayers that differ, by reason (over all pairs):")
    for reason, n in total.most_common():
        print(f"  {n:5d}  {reason}: {REASONS[reason]}")
    if args.json is not None:
        rows = [{"graph": g, "bundle": n, **c.to_dict()} for g, n, c in results]
        args.json.write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=1))


if __name__ == "__main__":
    main()
