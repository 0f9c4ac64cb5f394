"""What a fit reports: held-out quality per type and kind, end to end on held-out records, and provenance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import numpy as np

import annette
from annette.hardware import HardwareModel, Overhead
from annette.mapping.rules import MappingRules
from annette.quality import EndToEnd, FitQuality, LayerQuality
from annette.records import BenchRecord, Target

Quality = LayerQuality  # held-out quality of one (type, kind)


@dataclass(frozen=True)
class FitReport:
    """What a fit used, skipped and achieved."""

    target: Target
    records_used: dict[str, int]
    skipped: dict[str, int]
    n_samples: dict[str, int]  # executed-layer type -> samples
    overhead: Overhead
    rules: list[str]
    quality: tuple[Quality, ...]
    end_to_end: dict[str, dict[str, float | int | None]] = field(default_factory=dict)  # kind -> n, mape
    fallbacks: dict[str, str] = field(default_factory=dict)
    pooled: dict[str, list[str]] = field(default_factory=dict)  # primary type -> fused types its model serves

    def fit_quality(self) -> FitQuality:
        """The report as the bundle's quality records it."""
        return FitQuality(
            target=self.target.key,
            records_used=self.records_used,
            skipped=self.skipped,
            n_samples=self.n_samples,
            overhead=self.overhead.to_dict(),
            rules=tuple(self.rules),
            layer_quality=self.quality,
            end_to_end_holdout={k: EndToEnd.from_dict(e) for k, e in self.end_to_end.items()},
            fallbacks=self.fallbacks,
            pooled={p: tuple(ts) for p, ts in self.pooled.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return self.fit_quality().to_dict()


def describe_rules(rules: MappingRules) -> str:
    """One line for the fit's progress."""
    layout = "" if rules.layouts is None else f", {len(rules.layouts.blocked)} blocked-layout rules"
    return (f"mapping: {len(rules.fusions)} fusions, {len(rules.removals)} removals, {len(rules.merges)} merges, "
            f"{len(rules.insertions)} insertions{layout}")


def scores(pred: np.ndarray, true: np.ndarray) -> tuple[float | None, float | None]:
    """MAPE (a fraction) and R² of ``pred`` against ``true``; None where undefined."""
    if len(true) == 0:
        return None, None
    mape = float(np.mean(np.abs(pred - true) / true))
    ss = float(np.sum((true - np.mean(true)) ** 2))
    r2 = 1.0 - float(np.sum((pred - true) ** 2)) / ss if len(true) > 1 and ss > 0 else None
    return mape, r2


def end_to_end(
    records: Sequence[BenchRecord], hw: HardwareModel, kinds: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """MAPE of whole-record estimates (mapping + layer models + overheads) on held-out multi-layer records."""
    from annette.estimate import estimate_many

    out: dict[str, dict[str, float | int | None]] = {}
    if not records:
        return out
    graphs = [r.graph for r in records if r.graph is not None]
    measured = np.array([r.measurement.label_ms for r in records if r.measurement is not None])
    for kind in kinds:
        ests = estimate_many(graphs, hw, kind=kind)
        pred = np.array([e.total_ms for e in ests])
        complete = np.array([not e.unsupported for e in ests])
        mape, _ = scores(pred[complete], measured[complete])
        out[kind] = {"n": int(complete.sum()), "n_incomplete": int((~complete).sum()), "mape": mape}
    return out


def provenance_of(
    all_records: Sequence[BenchRecord],
    used: Sequence[BenchRecord],
    seed: int,
    holdout: float,
    kinds: Sequence[str],
    exclude_flags: Sequence[str],
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Where a bundle comes from: when, with which versions, from which records, with which options."""
    dates = sorted(str(r.metadata["date"]) for r in used if r.metadata.get("date"))
    versions: dict[str, str | None] = {}
    for pkg in ("numpy", "scipy", "lightgbm", used[0].target.runtime):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "annette_version": annette.__version__,
        "library_versions": versions,
        "records_total": len(all_records),
        "records_used": dict(Counter(r.kind for r in used)),
        "records_failed": sum(1 for r in all_records if r.status != "ok"),
        "measured_from": dates[0] if dates else None,
        "measured_to": dates[-1] if dates else None,
        "seed": seed,
        "holdout": holdout,
        "kinds": list(kinds),
        "exclude_flags": list(exclude_flags),
        **(extra or {}),
    }
