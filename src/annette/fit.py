"""Fit a hardware model from benchmark records: overheads, mapping rules, then layer models per type and kind.

1. Records: ``ok`` ones with a graph and a measurement, of one target, without an excluded stability flag.
2. Overheads: where a record has a per-node profile, its measured time minus the summed kernel times is
   regressed on the number of executed nodes: per-node and per-run overhead (:func:`fit_overhead`), added
   per executed layer and per run by every estimate.
3. Mapping rules: :func:`annette.mapping.learn_rules` (profiles first, timing test where singles exist).
4. Samples: every profiled node of a micro or multi record is one sample of its executed-layer type (kernel
   time; nodes covering the same layers, a layer split into several kernels, are one sample); a record
   without profile that maps to a single executed layer is one sample (measured time less the overheads). Network records are kept out unless ``use_networks`` (they are for evaluation).
5. Quality: ~``holdout`` of the records of each family are held out; each type and kind is fitted on the
   rest and scored on them (MAPE, R² on ms, n), and held-out multi-layer records are estimated end to end.
   Then every model is refitted on all records.

Types with fewer samples than a kind needs (:data:`MIN_SAMPLES`) lack that kind (estimates fall back to a
simpler one); types with fewer than the roofline's minimum have no model: their layers use their primary
member's type (``Conv[grouped]+Relu`` → ``Conv[grouped]``), else the generic model fitted on all samples
(``*``), and the estimate says so per layer.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import annette
from annette.errors import HardwareModelError
from annette.hardware import KIND_FALLBACKS, CacheModel, HardwareModel, Overhead
from annette.layers import KINDS, LAYER_MODELS, LayerModel
from annette.layers.features import GENERIC_TYPE, Features, executed_type, extract
from annette.mapping.apply import apply
from annette.mapping.learn import learn_rules, read_profile
from annette.mapping.mapped import ExecutedLayer
from annette.mapping.rules import MappingRules
from annette.quality import BundleQuality, FitQuality
from annette.records import BenchRecord, Target

logger = logging.getLogger(__name__)

MIN_SAMPLES: dict[str, int] = {"roofline": 8, "refined": 12, "statistical": 30, "mixed": 30}
LAYER_RECORD_KINDS = ("micro", "multi")
CACHE_KIND = "cache"  # cache-pressure records (annette.bench.context_blocks): for fit_cache, not layer samples

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Quality:
    """Held-out quality of one (type, kind): MAPE and R² of kernel time, sample counts."""

    type: str
    kind: str
    n_train: int
    n_test: int
    mape: float | None
    r2: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "kind": self.kind,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "mape": self.mape,
            "r2": self.r2,
        }


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.key,
            "records_used": self.records_used,
            "skipped": self.skipped,
            "n_samples": self.n_samples,
            "overhead": self.overhead.to_dict(),
            "rules": self.rules,
            "layer_quality": [q.to_dict() for q in self.quality],
            "end_to_end_holdout": self.end_to_end,
            "fallbacks": self.fallbacks,
            "pooled": self.pooled,
        }


# -- records -------------------------------------------------------------------------------------------------
def _usable(
    records: Iterable[BenchRecord], exclude_flags: Sequence[str], target_key: str | None
) -> tuple[list[BenchRecord], Counter[str], Target]:
    skipped: Counter[str] = Counter()
    kept: list[BenchRecord] = []
    for r in records:
        if r.status != "ok":
            skipped["failed"] += 1
        elif r.graph is None:
            skipped["no graph"] += 1
        elif r.measurement is None or not math.isfinite(r.measurement.label_ms) or r.measurement.label_ms <= 0:
            skipped["no valid measurement"] += 1
        elif any(f in exclude_flags for f in r.measurement.flags):
            skipped["excluded flag"] += 1
        else:
            kept.append(r)
    keys = Counter(r.target.key for r in kept)
    if not keys:
        raise HardwareModelError(f"no usable benchmark record (skipped: {dict(skipped) or 'none given'})")
    if target_key is None:
        if len(keys) > 1:
            raise HardwareModelError(
                f"records of {len(keys)} targets: {dict(keys)}; choose one with target_key (a key, or a pattern "
                "such as 'external/cuda:0/fp32/b*/t1' that pools batches)"
            )
        target_key = next(iter(keys))
    matched = sorted(k for k in keys if fnmatch.fnmatchcase(k, target_key))
    if not matched:
        raise HardwareModelError(f"no usable record of target {target_key!r}; targets: {dict(keys)}")
    other = sum(n for k, n in keys.items() if k not in matched)
    if other:
        skipped["other target"] += other
    kept = [r for r in kept if r.target.key in matched]
    target = kept[0].target
    if len(matched) > 1:
        # Pooled targets (e.g. every batch size): batch 0 says so, and the pooled values are kept.
        batches = sorted({r.target.batch for r in kept})
        target = replace(target, batch=0 if len(batches) > 1 else target.batch,
                         extra={**target.extra, "pooled_targets": ",".join(matched)})
    return kept, skipped, target


CHAIN_FAMILY = "node_chain"  # annette.bench.context_blocks: chains of trivial nodes


def fit_overhead(records: Sequence[BenchRecord]) -> Overhead:
    """Per-node and per-run overheads (both >= 0) and the profiler's own per-node cost, from profiled records.

    The gap between a record's unprofiled time and its summed profiled kernel times is regressed on its node
    count: gap = per_run + g · nodes (least squares weighted by 1/measured, so small and large records count
    alike). Only g = per_node − profiler_node is seen there: a runtime's profiler can add a cost of its own to
    each kernel time it reports (ONNX Runtime's does: whole microseconds per node, ``benchmarks/
    profiler_overhead.py``), which makes g negative. The per-node cost of an unprofiled run is therefore taken
    from chains of trivial nodes (family ``node_chain``: the slope of their unprofiled time over their node
    count, kernel included, so an upper bound of the dispatch cost), where the store has them; per_node =
    max(0, chain slope, g) and profiler_node = per_node − g >= 0, which keeps every estimate's sum what the
    gap says: estimates add per_node to each layer and take profiler_node off its (profiled) kernel time.
    """
    rows = [
        (len(r.profile), r.measurement.label_ms, sum(p.time_ms for p in r.profile))
        for r in records
        if r.profile and r.measurement is not None
    ]
    if not rows:
        return Overhead(method="none: no per-node profiles, overheads are inside the layer models")
    n, label, kernel = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    gap = label - kernel
    w2 = (1.0 / label) ** 2
    if len(set(n.tolist())) < 2:
        g, per_run = 0.0, float(np.median(gap))
        how = "median (measured − Σ kernel), one node count only"
    else:
        A = np.column_stack([n, np.ones_like(n)]) * np.sqrt(w2)[:, None]
        (g, per_run), *_ = np.linalg.lstsq(A, gap * np.sqrt(w2), rcond=None)
        how = "least squares, 1/measured weights: measured − Σ kernel = per_run + (per_node − profiler_node)·nodes"
        if per_run < 0:  # no physical run cost is negative: the line through the origin
            g, per_run = float(np.sum(w2 * gap * n) / np.sum(w2 * n * n)), 0.0
            how += " (per_run clipped at 0)"
    chains = [(len(r.profile), r.measurement.label_ms) for r in records
              if r.family == CHAIN_FAMILY and r.profile and r.measurement is not None]
    slope = 0.0
    if len({c for c, _ in chains}) >= 3:
        cn, ct = (np.array(col, dtype=np.float64) for col in zip(*chains, strict=True))
        slope = float(np.polyfit(cn, ct, 1)[0])
        how += f"; per_node from {len(chains)} unprofiled node chains"
    per_node = max(0.0, slope, float(g))
    return Overhead(per_node, max(0.0, float(per_run)), len(rows), how, profiler_node_ms=per_node - float(g))


# -- samples -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Samples:
    layers: list[ExecutedLayer]
    times: np.ndarray
    record: np.ndarray  # index of the record each sample comes from


def collect_samples(records: Sequence[BenchRecord], rules: MappingRules, overhead: Overhead) -> _Samples:
    """Training samples (executed layer, kernel ms, record index) from records (see the module docstring):
    profiled kernel times as the profiler reports them (summed over the nodes of a layer split into several
    kernels; estimates take the profiler's own per-node cost, ``overhead.profiler_node_ms``, off each layer's
    prediction, which keeps the layer models' targets as measured), or, for an
    unprofiled single-layer record, the measured time less the per-run and per-node overheads."""
    positions = {r.op_type: r.position for r in rules.insertions}
    if rules.layouts is not None:
        positions.update({rules.layouts.to_blocked: "before", rules.layouts.to_plain: "after"})
    layers: list[ExecutedLayer] = []
    times: list[float] = []
    owner: list[int] = []
    for i, rec in enumerate(records):
        run = read_profile(rec)
        if run is not None:
            for ex, t, _ in run.executed(positions):
                layers.append(ex)
                times.append(t)
                owner.append(i)
            continue
        assert rec.graph is not None and rec.measurement is not None
        executed = apply(rec.graph, rules).executed
        if len(executed) == 1:
            layers.append(executed[0])  # the kernel as a profiler would report it (see estimate_many)
            times.append(rec.measurement.label_ms - overhead.per_run_ms - overhead.per_node_ms
                         + overhead.profiler_node_ms)
            owner.append(i)
    return _Samples(layers, np.array(times, dtype=np.float64), np.array(owner, dtype=np.intp))


def _holdout(records: Sequence[BenchRecord], fraction: float, rng: np.random.Generator) -> set[int]:
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_family[r.family].append(i)
    held: set[int] = set()
    for idx in by_family.values():
        k = int(round(fraction * len(idx))) if len(idx) >= 5 else 0
        held.update(int(x) for x in rng.permutation(idx)[:k])
    return held


def _scores(pred: np.ndarray, true: np.ndarray) -> tuple[float | None, float | None]:
    if len(true) == 0:
        return None, None
    mape = float(np.mean(np.abs(pred - true) / true))
    ss = float(np.sum((true - np.mean(true)) ** 2))
    r2 = 1.0 - float(np.sum((pred - true) ** 2)) / ss if len(true) > 1 and ss > 0 else None
    return mape, r2


def _fit_one(kind: str, X: Any, y: np.ndarray, seed: int) -> LayerModel:
    cls = LAYER_MODELS.get(kind)
    settings: dict[str, Any] = {"seed": seed} if "seed" in cls().get_params() else {}
    return cls(**settings).fit(X, y)


# -- the fit -------------------------------------------------------------------------------------------------
def fit_records(
    records: Iterable[BenchRecord],
    *,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    holdout: float = 0.15,
    alpha: float = 0.5,
    exclude_flags: Sequence[str] = (),
    use_networks: bool = False,
    target_key: str | None = None,
    name: str | None = None,
    provenance: dict[str, Any] | None = None,
    progress: Progress | None = None,
    generic_default: bool = True,
) -> tuple[HardwareModel, FitReport]:
    """Build a hardware model from benchmark records; see the module docstring for the steps.

    ``generic_default``: op types no benchmark covered (e.g. ReduceL2, Einsum) are estimated with the generic
    model fitted on all types (roofline over FLOPs and bytes, plus the per-node overhead), and each such
    layer says so in its note; without it they are *unsupported* (left out of the total, listed).
    """
    for k in kinds:
        LAYER_MODELS.get(k)
    say = progress or (lambda msg: logger.info("%s", msg))
    all_records = list(records)
    usable, skipped, target = _usable(all_records, exclude_flags, target_key)
    layer_kinds = (*LAYER_RECORD_KINDS, "network") if use_networks else LAYER_RECORD_KINDS
    fit_set = [r for r in usable if r.kind in layer_kinds]
    if not fit_set:
        raise HardwareModelError(f"no usable {'/'.join(layer_kinds)} record among {len(usable)} usable records")
    say(f"{len(fit_set)} records of {target.key} ({dict(Counter(r.kind for r in fit_set))})")

    overhead = fit_overhead(fit_set)
    say(f"overhead: {overhead.per_node_ms * 1e3:.2f} µs per node, {overhead.per_run_ms * 1e3:.2f} µs per run; the "
        f"profiler adds {overhead.profiler_node_ms * 1e3:.2f} µs per node ({overhead.n_records} profiled records)")
    rules = learn_rules(fit_set, alpha=alpha, run_overhead_ms=overhead.per_run_ms)
    layout = "" if rules.layouts is None else f", {len(rules.layouts.blocked)} blocked-layout rules"
    say(f"mapping: {len(rules.fusions)} fusions, {len(rules.removals)} removals, {len(rules.merges)} merges, "
        f"{len(rules.insertions)} insertions{layout}")

    samples = collect_samples(fit_set, rules, overhead)
    X = extract(samples.layers)
    types = np.array([executed_type(ex) for ex in samples.layers], dtype=object)
    valid = np.array([i not in X.errors for i in range(len(X))]) & np.isfinite(samples.times) & (samples.times > 0)
    if not valid.all():
        skipped["samples without features or positive time"] += int((~valid).sum())
    rng = np.random.default_rng(seed)
    held = _holdout(fit_set, holdout, rng)
    is_test = np.isin(samples.record, sorted(held))

    counts = Counter(types[valid].tolist())
    sparse = {t for t, n in counts.items() if n < MIN_SAMPLES["roofline"]}
    fallbacks = {t: GENERIC_TYPE for t in sorted(sparse)}
    groups: dict[str, np.ndarray] = {t: np.flatnonzero(valid & (types == t)) for t in counts if t not in sparse}
    groups[GENERIC_TYPE] = np.flatnonzero(valid)

    quality: list[Quality] = []
    train_models: dict[str, dict[str, LayerModel]] = defaultdict(dict)
    final: dict[str, dict[str, LayerModel]] = defaultdict(dict)

    def fit_group(t: str, idx: np.ndarray, type_kinds: Sequence[str]) -> None:
        train, test = idx[~is_test[idx]], idx[is_test[idx]]
        for kind in type_kinds:
            if len(idx) < MIN_SAMPLES[kind]:
                continue
            if len(train) >= MIN_SAMPLES[kind]:
                m = _fit_one(kind, X.take(train), samples.times[train], seed)
                train_models[t][kind] = m
                pred = m.predict(X.take(test)) if len(test) else np.zeros(0)
                mape, r2 = _scores(pred, samples.times[test])
                quality.append(Quality(t, kind, len(train), len(test), mape, r2))
            final[t][kind] = _fit_one(kind, X.take(idx), samples.times[idx], seed)
        say(f"{t}: {len(idx)} samples, kinds {', '.join(final[t]) or 'none'}")

    for t, idx in sorted(groups.items()):
        fit_group(t, idx, ("roofline",) if t == GENERIC_TYPE else kinds)
    pooled = _pool_primaries(
        X, samples.times, types, valid, is_test, kinds, train_models, final, quality, fit_group, fallbacks, say
    )

    feature_names = X.names
    for t in [t for t, models in final.items() if not models]:
        del final[t]
    hw_name = name or f"{target.backend}-{target.device}-{target.precision}-b{target.batch}-t{target.threads}"
    end_to_end = _end_to_end(
        [fit_set[i] for i in sorted(held) if fit_set[i].kind != "micro"],
        HardwareModel(hw_name, target, rules, dict(train_models), overhead, fallbacks, feature_names),
        kinds,
    )
    report = FitReport(
        target=target,
        records_used=dict(Counter(r.kind for r in fit_set)),
        skipped=dict(skipped),
        n_samples=dict(sorted(counts.items())),
        overhead=overhead,
        rules=rules.summary(),
        quality=tuple(quality),
        end_to_end=end_to_end,
        fallbacks=fallbacks,
        pooled=pooled,
    )
    hw = HardwareModel(
        name=hw_name,
        target=target,
        rules=rules,
        layer_models={t: dict(m) for t, m in final.items() if m},
        overhead=overhead,
        fallbacks=fallbacks,
        feature_names=feature_names,
        provenance=_provenance(all_records, fit_set, seed, holdout, kinds, exclude_flags, provenance),
        quality=BundleQuality(fit=FitQuality.from_dict(report.to_dict())),
        default_type=GENERIC_TYPE if generic_default and final.get(GENERIC_TYPE) else None,
    )
    return hw, report


def _pool_primaries(
    X: Features,
    times: np.ndarray,
    types: np.ndarray,
    valid: np.ndarray,
    is_test: np.ndarray,
    kinds: Sequence[str],
    train_models: dict[str, dict[str, LayerModel]],
    final: dict[str, dict[str, LayerModel]],
    quality: list[Quality],
    fit_group: Callable[[str, np.ndarray, Sequence[str]], None],
    fallbacks: dict[str, str],
    say: Progress,
) -> dict[str, list[str]]:
    """Where a primary type has fused variants (``Conv``: ``Conv+BatchNormalization+Relu``, ...), try one model
    of the primary type fitted on all of them (the fused members are features: ``n_members``, ``n_inputs``,
    the bytes), which gives sparse variants the data of the whole family. A fused variant keeps its own models
    only where they beat the pooled ones on its held-out samples. The pooled models replace the per-type ones
    where that lowers the family's held-out MAPE (kind: the most refined one fitted), else nothing changes.
    Returns primary type -> the fused types its pooled model serves."""
    ref = kinds[-1]
    primary = np.array([str(t).split("+", 1)[0] for t in types], dtype=object)
    out: dict[str, list[str]] = {}
    for p in sorted(set(primary[valid].tolist())):
        idx = np.flatnonzero(valid & (primary == p))
        fused = sorted({str(t) for t in types[idx]} - {p})
        test = idx[is_test[idx]]
        if not fused or len(test) == 0 or len(idx[~is_test[idx]]) < MIN_SAMPLES[ref]:
            continue
        own_train = {t: dict(train_models.get(t, {})) for t in (p, *fused)}
        own_final = {t: dict(final.get(t, {})) for t in (p, *fused)}
        own_quality = [q for q in quality if q.type == p]
        quality[:] = [q for q in quality if q.type != p]
        train_models.pop(p, None)
        final.pop(p, None)
        fit_group(p, idx, kinds)
        pool_model = train_models.get(p, {}).get(ref)
        if pool_model is None:
            continue

        def mape(model: LayerModel | None, rows: np.ndarray) -> float:
            if model is None or not len(rows):
                return math.inf
            return float(np.mean(np.abs(model.predict(X.take(rows)) / times[rows] - 1)))

        def resolved(models: Mapping[str, Mapping[str, LayerModel]], t: str, p: str = p) -> LayerModel | None:
            for name in (t, p):  # what an estimate would use: the type's own model, else its primary's
                for k in KIND_FALLBACKS[ref]:
                    if k in models.get(name, {}):
                        return models[name][k]
            return None

        keep = [t for t in fused if mape(resolved(own_train, t), test[types[test] == t])
                < mape(pool_model, test[types[test] == t])]
        pooled_train = {p: train_models[p], **{t: own_train[t] for t in keep}}
        tested = [t for t in (p, *fused) if (types[test] == t).any()]
        before = sum(mape(resolved(own_train, t), test[types[test] == t]) * int((types[test] == t).sum())
                     for t in tested)
        after = sum(mape(resolved(pooled_train, t), test[types[test] == t]) * int((types[test] == t).sum())
                    for t in tested)
        if not after < before:  # the per-type models stay
            train_models.pop(p, None)
            final.pop(p, None)
            quality[:] = [q for q in quality if q.type != p] + own_quality
            for t, m in own_train.items():
                if m:
                    train_models[t] = m
            for t, m in own_final.items():
                if m:
                    final[t] = m
            say(f"{p}: per-type models kept (held-out {ref} MAPE {before / len(test):.3f} vs pooled "
                f"{after / len(test):.3f})")
            continue
        for t in fused:
            if t not in keep:
                train_models.pop(t, None)
                final.pop(t, None)
                fallbacks.pop(t, None)
        out[p] = [t for t in fused if t not in keep]
        say(f"{p}: pooled over {len(fused) + 1} types (held-out {ref} MAPE {before / len(test):.3f} → "
            f"{after / len(test):.3f}); own models kept for {keep or 'none'}")
    return out


def _end_to_end(
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
        mape, _ = _scores(pred[complete], measured[complete])
        out[kind] = {"n": int(complete.sum()), "n_incomplete": int((~complete).sum()), "mape": mape}
    return out


def _provenance(
    all_records: Sequence[BenchRecord],
    used: Sequence[BenchRecord],
    seed: int,
    holdout: float,
    kinds: Sequence[str],
    exclude_flags: Sequence[str],
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
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


CACHE_CANDIDATES_MB = tuple(2 ** (k / 2) for k in range(4, 23))  # 4 MB ... 2 GB in steps of sqrt(2)


def fit_cache(records: Iterable[BenchRecord], hw: HardwareModel, *, kind: str = "mixed") -> CacheModel | None:
    """The cache model (see :class:`annette.hardware.CacheModel`) from cache-pressure records: blocks whose
    weights add up to more or less than the cache holds, measured end to end.

    For each candidate capacity C, the measured time less ``hw``'s estimate (no cache model) is fitted as
    Σ weight bytes / B over the layers the model charges (weighted least squares, 1/measured weights, B > 0);
    the C with the smallest residual wins. None where fewer than 5 records are usable or no capacity explains
    at least 10 % of the residual (the target shows no cache effect at these sizes)."""
    usable = [
        r for r in records
        if r.status == "ok" and r.graph is not None and r.measurement is not None and r.target.key == hw.target.key
    ]  # fmt: skip
    if len(usable) < 5:
        return None
    from annette.estimate import estimate_many

    graphs = [r.graph for r in usable if r.graph is not None]
    label = np.array([r.measurement.label_ms for r in usable if r.measurement is not None])
    y = label - np.array([e.total_ms for e in estimate_many(graphs, replace(hw, cache=None), kind=kind)])
    w = 1.0 / label
    base = float(np.sum((w * y) ** 2))

    def charged(capacity: float) -> np.ndarray:
        """Bytes the cache model charges per graph (at 1e3 B/s its cache_ms are bytes)."""
        unit = replace(hw, cache=CacheModel(capacity, 1e3))
        return np.array([e.cache_ms for e in estimate_many(graphs, unit, kind=kind)])

    best: tuple[float, float, float, np.ndarray] | None = None  # (sse, capacity, ms per byte, charged bytes)
    for mb in CACHE_CANDIDATES_MB:
        x = charged(mb * 2**20)
        denom = float(np.sum((w * x) ** 2))
        k = float(np.sum(w * w * x * y)) / denom if denom else 0.0
        if k <= 0:
            continue
        sse = float(np.sum((w * (y - k * x)) ** 2))
        if best is None or sse < best[0]:
            best = (sse, mb * 2**20, k, x)
    if best is None or best[0] > 0.9 * base:
        return None
    _, capacity, k, x = best
    before, after = (100 * float(np.mean(np.abs(r) / label)) for r in (y, y - k * x))
    return CacheModel(
        capacity, 1e3 / k, len(usable),
        f"weighted least squares over {len(usable)} cache-pressure records ({kind} estimates): MAPE "
        f"{before:.1f} % without, {after:.1f} % with the cache model",
    )  # fmt: skip


def fit_store(
    store_dir: str | Path | Sequence[str | Path], cache_dirs: Sequence[str | Path] = (), **opts: Any
) -> tuple[HardwareModel, FitReport]:
    """Fit a hardware model from one benchmark store directory or several (e.g. a campaign and a targeted one;
    their records are pooled), with the options of :func:`fit_records`; then its cache model (:func:`fit_cache`)
    from their cache-pressure records (kind ``cache``, measured by ``annette build``) and those of the stores in
    ``cache_dirs``, where there are any."""
    from annette.bench.store import BenchStore

    dirs = [Path(store_dir)] if isinstance(store_dir, (str, Path)) else [Path(d) for d in store_dir]
    if not dirs:
        raise HardwareModelError("fit_store needs at least one benchmark store directory")
    records = [r for d in dirs for r in BenchStore(d, create=False).records(status=None)]
    cache_records = [r for r in records if r.kind == CACHE_KIND]
    stores = [str(d.resolve()) for d in dirs]
    extra = {"store": stores[0] if len(stores) == 1 else stores, **dict(opts.pop("provenance", None) or {})}
    if cache_dirs:
        extra["cache_store"] = [str(Path(d).resolve()) for d in cache_dirs]
    hw, report = fit_records(records, provenance=extra, **opts)
    cache_records += [r for d in cache_dirs for r in BenchStore(Path(d), create=False).records()]
    if cache_records:
        cache = fit_cache(cache_records, hw, kind="mixed" if "mixed" in hw.kinds else hw.kinds[-1])
        logger.info("cache model: %s", cache)
        hw = replace(hw, cache=cache)
    return hw, report
