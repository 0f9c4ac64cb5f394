"""Adapt a hardware model to another machine of its kind without a full build (``annette calibrate``).

What changes between two CPUs run by one runtime is mostly how fast each kind of kernel runs (vector width,
clock, cache and memory bandwidth) and what a node and a run cost; how the runtime maps a network (fusions,
removals, insertions) and the shape of each layer model's response to its parameters mostly stay. A calibrated
bundle keeps the base's mapping and layer models and adds a :class:`annette.hardware.Calibration`: one factor
per layer-model type on its kernel time, and the overheads measured on the new machine.

Two sources:

- :func:`calibrate_here`: measures, on this machine, a few minutes of generated networks chosen to span the
  base's layer types (node chains for the per-node cost; micro-kernels weighted by how often their type occurs
  in real networks; multi-layer blocks; blocks in context), with the runtime's per-node profile where it has
  one. Per type, the factor is the time-weighted median of observed / predicted kernel time over the profiled
  layers, shrunk towards the global factor by :data:`SHRINK` pseudo-samples; then the per-node and per-run
  overheads are refitted on the whole records with the scaled model. A seeded fifth of the records is held out
  and scored before and after.
- :func:`calibrate_measured`: whole-network timings measured elsewhere (CSV: ``model,latency_ms``; a device
  annette cannot reach). Fewer numbers, so fewer parameters: one global factor and the per-node cost (ridge
  towards the base's), and from :data:`GROUP_MIN` networks on, one factor per group of types (convolutions,
  matrix products, everything else) ridged towards the global one. Scored by leave-one-out.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from annette.errors import InsufficientDataError, InvalidOptionError, ModelFileError
from annette.evaluate.metrics import Metrics, compute_metrics
from annette.graph.ir import Graph
from annette.hardware import Calibration, HardwareModel, Overhead
from annette.layers.layertype import LayerType
from annette.records import BenchRecord

log = logging.getLogger(__name__)

SHRINK = 10.0  # pseudo-samples of the global factor in each type's factor
GROUP_MIN = 20  # whole-network timings from which per-group factors are fitted
GROUP_SHARE = 0.1  # the least share of the networks' kernel time a group needs for a factor of its own
HOLDOUT = 5  # one calibration record in HOLDOUT is scored, not fitted
STAGE_MIX = {"overhead": 0.0, "micro": 0.45, "multi": 0.25, "context": 0.30}  # shares of the measured configurations
GROUPS = ("conv", "matmul", "other")
# Size slopes tried for the kernel time's dependence on the bytes a network moves, factor (MB / ref) ** slope:
# micro-benchmarks run each layer with its data hot; a network's layers hand larger working sets through the
# caches the more data it moves (see Calibration.size_factor). Only from GROUP_MIN timings spanning SIZE_SPAN.
SIZE_SLOPES = tuple(round(float(x), 3) for x in np.arange(-0.1, 0.1001, 0.005))
SIZE_SPAN = 10.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CalibrationReport:
    """What a calibration measured and reached: records used, factors, and held-out accuracy before/after."""

    n_records: int
    elapsed_s: float
    scales: Mapping[str, float]
    default_scale: float
    overhead: Overhead
    before: Metrics | None
    after: Metrics | None
    store: str | None = None
    size_slope: float = 0.0
    size_ref_mb: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_records": self.n_records,
            "elapsed_s": self.elapsed_s,
            "scales": dict(self.scales),
            "default_scale": self.default_scale,
            "overhead": self.overhead.to_dict(),
            "before": None if self.before is None else self.before.to_dict(),
            "after": None if self.after is None else self.after.to_dict(),
            "store": self.store,
            "size_slope": self.size_slope,
            "size_ref_mb": self.size_ref_mb,
        }


# -- the base model's terms ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Terms:
    """Per graph: the base model's kernel time per layer-model type (no overheads), its executed layers, and the
    MB they move (inputs, outputs and weights of every executed layer)."""

    kernel: list[dict[str, float]]
    nodes: np.ndarray
    traffic: np.ndarray

    def take(self, idx: Sequence[int] | np.ndarray) -> _Terms:
        idx = np.asarray(idx, dtype=np.intp)
        return _Terms([self.kernel[i] for i in idx], self.nodes[idx], self.traffic[idx])


def _terms(graphs: Sequence[Graph], hw: HardwareModel, kind: str) -> _Terms:
    from annette.estimate import estimate_many

    bare = replace(hw, overhead=Overhead(), calibration=None)
    kernel: list[dict[str, float]] = []
    nodes = []
    traffic = []
    for est in estimate_many(graphs, bare, kind=kind):
        per: dict[str, float] = defaultdict(float)
        for layer in est.layers:
            if layer.time_ms is not None:
                per[layer.model.split("/", 1)[0] or layer.type] += layer.time_ms
        kernel.append(dict(per))
        nodes.append(est.n_executed)
        traffic.append(est.traffic_mb)
    return _Terms(kernel, np.array(nodes, dtype=np.float64), np.array(traffic, dtype=np.float64))


def _node_ms(overhead: Overhead) -> float:
    """What each executed layer adds to its (profiled) kernel time in an estimate."""
    return overhead.per_node_ms - overhead.profiler_node_ms


def _overhead(node_ms: float, per_run_ms: float, prior: Overhead, n: int, method: str) -> Overhead:
    """An overhead whose per-node effect is ``node_ms`` where it can be: the profiler's cost is the prior's (what
    the profiles say; a calibration does not invent a larger one), and per_node = node_ms + that, at least 0."""
    per_node = max(0.0, node_ms + prior.profiler_node_ms)
    return Overhead(per_node, max(0.0, per_run_ms), n, method, profiler_node_ms=prior.profiler_node_ms)


def _predict(terms: _Terms, scales: Mapping[str, float], default: float, overhead: Overhead) -> np.ndarray:
    return np.array([sum(t * scales.get(k, default) for k, t in per.items()) for per in terms.kernel]) \
        + _node_ms(overhead) * terms.nodes + overhead.per_run_ms


def _refit_overhead(terms: _Terms, measured: np.ndarray, scales: Mapping[str, float], default: float,
                    prior: Overhead, ridge: float = 0.0) -> Overhead:
    """Per-node effect and per-run cost given the scaled kernels: weighted least squares on the whole records
    (1/measured), ridged towards ``prior`` by ``ridge`` (in units of records); see :func:`_overhead`."""
    kernel = _predict(terms, scales, default, Overhead())
    gap = measured - kernel
    w = 1.0 / measured
    A = np.column_stack([terms.nodes, np.ones_like(terms.nodes)]) * w[:, None]
    b = gap * w
    if ridge > 0:
        scale = np.sqrt(ridge / len(measured)) * np.array([np.mean(A[:, 0]), np.mean(A[:, 1])])
        A = np.vstack([A, np.diag(scale)])
        b = np.concatenate([b, scale * np.array([_node_ms(prior), prior.per_run_ms])])
    (node_ms, per_run), *_ = np.linalg.lstsq(A, b, rcond=None)
    if per_run < 0:
        per_run = 0.0
        node_ms = float(np.sum(w * w * gap * terms.nodes) / np.sum(w * w * terms.nodes**2))
    return _overhead(float(node_ms), float(per_run), prior, len(measured),
                     "calibrated: whole records, weighted least squares on the scaled kernel times")


def _graphs_times(records: Sequence[BenchRecord]) -> tuple[list[Graph], np.ndarray]:
    pairs = [(r.graph, r.measurement.label_ms) for r in records if r.graph is not None and r.measurement is not None]
    return [g for g, _ in pairs], np.array([t for _, t in pairs], dtype=np.float64)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


# -- calibration from benchmarks on this machine ------------------------------------------------------------
def calibration_plan(target_key: str, *, seed: int = 0, size: int = 3000) -> list[Any]:
    """Node chains first (the per-node cost), then a seeded mix of micro-kernels (weighted by how often their
    type occurs in real networks), core blocks and blocks in context, interleaved so that any prefix spans them."""
    from annette.bench.blocks import FAMILIES, sample_params, stage_families
    from annette.bench.context_blocks import chain_plan
    from annette.bench.sweeps import family_weights, make_config

    rng = np.random.default_rng([seed, 7])
    micro = family_weights()
    pools = {
        "micro": (list(micro), np.array(list(micro.values()))),
        "multi": ([n for n in stage_families("core") if FAMILIES.get(n).kind == "multi"], None),
        "context": (stage_families("context"), None),
    }
    out = {c.config_id: c for c in (make_config("node_chain", p, target_key, "calibrate") for p in chain_plan())}
    shares = np.array([STAGE_MIX[k] for k in pools])
    for _ in range(size):
        names, p = pools[str(rng.choice(list(pools), p=shares / shares.sum()))]
        family = str(rng.choice(names, p=None if p is None else p / p.sum()))
        cfg = make_config(family, sample_params(family, rng, max_cost=5e8), target_key, "calibrate")
        out.setdefault(cfg.config_id, cfg)
    return list(out.values())


def calibrate_here(
    base: HardwareModel | str | Path,
    *,
    minutes: float = 3.0,
    backend: str | None = None,
    threads: int | None = None,
    backend_options: Mapping[str, Any] | None = None,
    store_dir: str | Path | None = None,
    kind: str = "mixed",
    seed: int = 0,
    name: str | None = None,
    max_configs: int | None = None,
    progress: Progress | None = None,
) -> tuple[HardwareModel, CalibrationReport]:
    """Measure calibration networks here for ``minutes`` (measurement and fit together; at most ``max_configs``)
    and adapt ``base`` to this machine (see the module docstring). Records go to ``store_dir`` (default: a
    temporary folder)."""
    from annette.backends import get_backend
    from annette.bench.campaign import measure_configs
    from annette.bench.store import BenchStore
    from annette.estimate import estimate_many
    from annette.fit import fit_overhead

    if not minutes > 0 or not math.isfinite(minutes):
        raise InvalidOptionError(f"calibration minutes must be a positive number, got {minutes}")
    say = progress or (lambda m: log.info("%s", m))
    hw = base if isinstance(base, HardwareModel) else HardwareModel.load(base)
    kind = kind if kind in hw.kinds else hw.kinds[-1]
    backend = backend or hw.target.backend
    options = {"threads": threads or hw.target.threads, **dict(backend_options or {})}
    target = get_backend(backend, **options).describe()
    start = time.perf_counter()
    tmp = None
    if store_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="annette-calibrate-")
        store_dir = tmp.name
    try:
        with BenchStore(store_dir) as store:
            plan = calibration_plan(target.key, seed=seed)
            say(f"measuring calibration networks on {target.device_model} for {0.8 * minutes:.1f} min")
            measure_configs(store, plan, backend=backend, backend_options=options, target=target,
                            budget_s=0.8 * 60 * minutes, max_configs=max_configs,
                            progress=lambda p: say(f"{p.done} measured ({p.failed} failed), last {p.last}")
                            if p.done % 50 == 0 else None)
            records = [r for r in store.records() if r.graph is not None and r.measurement is not None
                       and r.target.key == target.key]
    finally:
        if tmp is not None:
            tmp.cleanup()
    if len(records) < 10:
        raise InsufficientDataError(f"only {len(records)} calibration records measured in {minutes} min; give it more time")
    say(f"fitting on {len(records)} records")
    new_overhead = fit_overhead(records) if any(r.profile for r in records) else hw.overhead
    held = {r.config_id for r in records if int(r.config_id[:6], 16) % HOLDOUT == 0 and r.family != "node_chain"}
    test = [r for r in records if r.config_id in held]
    train = [r for r in records if r.config_id not in held]
    all_graphs, all_measured = _graphs_times(records)
    all_terms = _terms(all_graphs, hw, kind)  # the base's terms of every record, once
    position = {r.config_id: i for i, r in enumerate(records)}

    def fit(rs: Sequence[Any]) -> tuple[dict[str, float], float, Overhead]:
        scales, default = _per_type_scales(rs, hw, kind)
        idx = np.array([position[r.config_id] for r in rs], dtype=np.intp)
        terms = all_terms.take(idx)
        return scales, default, _refit_overhead(terms, all_measured[idx], scales, default, new_overhead)

    method = (f"per-type factors: time-weighted median of observed/predicted profiled kernel time, shrunk to the "
              f"global factor by {SHRINK:g} pseudo-samples; overheads refitted on {len(records)} whole records")
    before = after = None
    if len(test) >= 5:  # scored as estimated: the base, and a calibration fitted without the held-out records
        scales, default, ov = fit(train)
        graphs, measured = _graphs_times(test)
        held_out = _calibrated(hw, target=target, overhead=ov, scales=scales, default=default, n=len(train),
                               source="", method=method, report=None, name=name)
        before = compute_metrics(measured, [e.total_ms for e in estimate_many(graphs, hw, kind=kind)])
        after = compute_metrics(measured, [e.total_ms for e in estimate_many(graphs, held_out, kind=kind)])
    scales, default, ov = fit(records)
    elapsed = time.perf_counter() - start
    report = CalibrationReport(len(records), elapsed, scales, default, ov, before, after,
                               None if tmp is not None else str(store_dir))
    new = _calibrated(hw, target=target, overhead=ov, scales=scales, default=default, n=len(records),
                      source=f"{len(records)} micro-benchmarks, blocks and node chains measured on this machine "
                             f"({elapsed / 60:.1f} min)",
                      method=method, report=report, name=name)
    return new, report


def _per_type_scales(records: Sequence[Any], hw: HardwareModel, kind: str) -> tuple[dict[str, float], float]:
    """Factor per layer-model type from profiled layers (kernel times as the profiler reports them, as the base's
    layer models were fitted) against the base's prediction; without profiles, one factor from whole records."""
    from annette.layers.features import executed_type, extract
    from annette.mapping.learn import read_profile

    rules = hw.rules
    positions = {r.op_type: r.position for r in rules.insertions}
    if rules.layouts is not None:
        positions.update({rules.layouts.to_blocked: "before", rules.layouts.to_plain: "after"})
    layers, observed = [], []
    for rec in records:
        run = read_profile(rec)
        if run is None:
            continue
        for ex, t, _ in run.executed(positions):
            layers.append(ex)
            observed.append(t)
    if not layers:
        return {}, _global_scale_from_totals(records, hw, kind)
    X = extract(layers).select(hw.feature_names)
    y = np.array(observed)
    types = [executed_type(ex) for ex in layers]
    by_model: dict[int, list[int]] = defaultdict(list)
    models: dict[int, Any] = {}
    resolved = {t: hw.resolve(t, kind) for t in set(types)}
    for i, tname in enumerate(types):
        res = resolved[tname]
        if res is not None and i not in X.errors:
            by_model[id(res.model)].append(i)
            models[id(res.model)] = res
    ratios, weights, owner = [], [], []
    for key, idx in by_model.items():
        r, mtype = models[key], models[key].type
        rows = np.array(idx)
        pred = np.asarray(r.model.predict(X.take(rows)), dtype=np.float64)
        ok = (pred > 0) & np.isfinite(pred)
        ratios.extend(np.log(y[rows][ok] / pred[ok]).tolist())
        weights.extend(pred[ok].tolist())
        owner.extend([mtype] * int(ok.sum()))
    lr, w, own = np.array(ratios), np.array(weights), np.array(owner, dtype=object)
    g = _weighted_median(lr, w)
    scales = {}
    for mtype in sorted(set(owner)):
        sel = own == mtype
        n = int(sel.sum())
        m = _weighted_median(lr[sel], w[sel])
        scales[mtype] = float(math.exp((n * m + SHRINK * g) / (n + SHRINK)))
    return scales, float(math.exp(g))


def _global_scale_from_totals(records: Sequence[Any], hw: HardwareModel, kind: str) -> float:
    """One factor from whole records (no profiles): the median of (measured − overheads) / predicted kernels."""
    graphs, measured = _graphs_times(records)
    terms = _terms(graphs, hw, kind)
    kernel = _predict(terms, {}, 1.0, Overhead())
    rest = measured - _node_ms(hw.overhead) * terms.nodes - hw.overhead.per_run_ms
    return float(np.exp(np.median(np.log(np.maximum(rest, 1e-6) / kernel))))


# -- calibration from whole-network timings measured elsewhere ------------------------------------------------
def read_measured(path: str | Path, *, batch: int | None = None) -> list[tuple[str, Graph, float]]:
    """``(model, graph, latency_ms)`` from a CSV with columns ``model`` (a spec or a file, relative to the CSV)
    and ``latency_ms`` (and optionally ``batch``)."""
    from annette.importers import load_model

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{p}: cannot read the measured timings: {exc}") from exc
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or not {"model", "latency_ms"} <= set(rows[0]):
        raise ModelFileError(f"{p}: expected a CSV with columns model,latency_ms (got {list(rows[0]) if rows else 'no rows'})")
    out = []
    for i, row in enumerate(rows, 2):
        spec = (row.get("model") or "").strip()
        try:
            ms = float(row["latency_ms"])
        except (TypeError, ValueError):
            raise ModelFileError(f"{p}:{i}: latency_ms {row['latency_ms']!r} is not a number") from None
        if not (math.isfinite(ms) and ms > 0):
            raise ModelFileError(f"{p}:{i}: latency_ms must be a positive number, got {ms}")
        local = p.parent / spec
        b = int(row["batch"]) if row.get("batch") else batch
        out.append((spec, load_model(str(local) if local.is_file() else spec, batch=b), ms))
    return out


def group_of(model_type: str) -> str:
    """The group of a layer-model type whose factor a calibration from whole networks fits: conv, matmul or other."""
    head = LayerType.parse(model_type).base_op
    return "conv" if head == "Conv" else "matmul" if head in ("MatMul", "Gemm") else "other"


@dataclass(frozen=True)
class _Fit:
    """Factors per layer-model type (``default`` for the rest), the overhead, and the size slope at ``ref_mb``."""

    scales: dict[str, float]
    default: float
    overhead: Overhead
    slope: float = 0.0
    ref_mb: float = 1.0


def _fit_measured(terms: _Terms, measured: np.ndarray, hw: HardwareModel, ridge: float = 1.0) -> _Fit:
    """:func:`_fit_at` for each size slope of :data:`SIZE_SLOPES` (only 0 with fewer than GROUP_MIN timings or
    networks that move about the same bytes); the slope of least weighted squared error wins."""
    traffic = np.maximum(terms.traffic, 1e-6)
    ref = float(np.exp(np.mean(np.log(traffic))))
    span = float(traffic.max() / traffic.min())
    slopes = SIZE_SLOPES if len(measured) >= GROUP_MIN and span >= SIZE_SPAN else (0.0,)
    best: tuple[float, _Fit] | None = None
    for slope in slopes:
        factor = (traffic / ref) ** slope
        fit = _fit_at(terms, measured, hw, factor, ridge)
        kernel = _predict(terms, fit.scales, fit.default, Overhead())
        pred = kernel * factor + _node_ms(fit.overhead) * terms.nodes + fit.overhead.per_run_ms
        sse = float(np.sum(((pred - measured) / measured) ** 2))
        if best is None or sse < best[0]:
            best = (sse, replace(fit, slope=slope, ref_mb=ref) if slope else fit)
    assert best is not None
    return best[1]


def _fit_at(terms: _Terms, measured: np.ndarray, hw: HardwareModel, size: np.ndarray, ridge: float) -> _Fit:
    """Global factor and per-node cost (ridge towards the base's), then, from GROUP_MIN timings on, per-group
    factors ridged towards the global one; every factor is on the base's kernel time times ``size`` (per graph)."""
    k = len(measured)
    w = 1.0 / measured
    kernel = _predict(terms, {}, 1.0, Overhead()) * size
    base = hw.overhead
    # [s, per_node] with per_run fixed at the base's; ridge rows keep per_node near the base's with few timings
    A = np.column_stack([kernel, terms.nodes]) * w[:, None]
    b = (measured - base.per_run_ms) * w
    reg = np.sqrt(ridge) * np.mean(A[:, 1])
    A = np.vstack([A, [0.0, reg]])
    b = np.concatenate([b, [reg * _node_ms(base)]])
    (s, node_ms), *_ = np.linalg.lstsq(A, b, rcond=None)
    s = max(float(s), 1e-3)
    ov = _overhead(float(node_ms), base.per_run_ms, base, k,
                   f"calibrated from {k} whole-network timings (ridge towards the base)")
    types = sorted({t for per in terms.kernel for t in per})
    scales = {t: s for t in types}
    if k >= GROUP_MIN:
        cols = {g: size * np.array([sum(v for t, v in per.items() if group_of(t) == g) for per in terms.kernel])
                for g in GROUPS}
        # a group gets a factor of its own only where it carries a real share of the networks' kernel time: a
        # group that is a sliver of every network (the classifier Gemm of a NAS cell) is not identified by them
        total = sum(float(cols[g].sum()) for g in GROUPS)
        used = [g for g in GROUPS if cols[g].sum() >= GROUP_SHARE * total]
        if used:
            rest = s * sum((cols[g] for g in GROUPS if g not in used), np.zeros_like(measured))  # at the global factor
            G = np.column_stack([cols[g] for g in used]) * w[:, None]
            y = (measured - base.per_run_ms - _node_ms(ov) * terms.nodes - rest) * w
            lam = np.sqrt(ridge * 2.0) * np.mean(np.abs(G), axis=0)
            G2 = np.vstack([G, np.diag(lam)])
            y2 = np.concatenate([y, lam * s])
            fitted, *_ = np.linalg.lstsq(G2, y2, rcond=None)
            factor = {g: max(float(f), 1e-3) for g, f in zip(used, fitted, strict=True)}
            scales = {t: factor.get(group_of(t), s) for t in types}
    return _Fit(scales, s, ov)


def calibrate_measured(
    base: HardwareModel | str | Path,
    measured: Sequence[tuple[str, Graph, float]],
    *,
    kind: str = "mixed",
    device: str | None = None,
    name: str | None = None,
) -> tuple[HardwareModel, CalibrationReport]:
    """Adapt ``base`` to a device from whole-network timings ``(model, graph, latency_ms)`` measured there (see the
    module docstring); K as small as 5 works (one factor and the per-node cost)."""
    if len(measured) < 3:
        raise InsufficientDataError(f"calibration from measured timings needs at least 3 networks, got {len(measured)}")
    hw = base if isinstance(base, HardwareModel) else HardwareModel.load(base)
    m = np.array([ms for _, _, ms in measured], dtype=np.float64)
    _, report = _fit_totals(hw, [g for _, g, _ in measured], m, kind)
    scales, default, ov = report.scales, report.default_scale, report.overhead
    target = replace(hw.target, backend="external",
                     device_model=device or "a device calibrated from measured timings", extra={
                         **hw.target.extra, "calibrated_from": "measured timings"})
    digest = hashlib.sha256("".join(f"{s}{ms}" for s, _, ms in measured).encode()).hexdigest()[:12]
    method = ("one factor and the per-node cost (ridge towards the base)" if len(m) < GROUP_MIN else
              "factors per group (conv, matmul, other) ridged towards one global factor, and the per-node cost")
    new = _calibrated(hw, target=target, overhead=ov, scales=scales, default=default, n=len(m),
                      source=f"{len(m)} whole-network timings measured elsewhere (digest {digest})",
                      method=method + "; validation: leave-one-out", report=report, name=name,
                      size=(report.size_slope, report.size_ref_mb))
    return new, report


def _fit_totals(hw: HardwareModel, graphs: Sequence[Graph], m: np.ndarray, kind: str) -> tuple[str, CalibrationReport]:
    """:func:`_fit_measured` on whole-network timings ``m`` of ``graphs``, scored leave-one-out (each network
    estimated by a fit without it) against the base's own estimates."""
    from annette.estimate import estimate_many

    start = time.perf_counter()
    kind = kind if kind in hw.kinds else hw.kinds[-1]
    terms = _terms(graphs, hw, kind)
    loo = np.zeros_like(m)
    for i in range(len(m)):
        keep = np.arange(len(m)) != i
        f = _fit_measured(terms.take(np.flatnonzero(keep)), m[keep], hw)
        hw_i = _calibrated(hw, target=hw.target, overhead=f.overhead, scales=f.scales, default=f.default,
                           n=len(m) - 1, source="", method="", report=None, name=None, size=(f.slope, f.ref_mb))
        loo[i] = estimate_many([graphs[i]], hw_i, kind=kind)[0].total_ms
    before = compute_metrics(m, [e.total_ms for e in estimate_many(graphs, hw, kind=kind)])
    f = _fit_measured(terms, m, hw)
    return kind, CalibrationReport(len(m), time.perf_counter() - start, f.scales, f.default, f.overhead, before,
                                   compute_metrics(m, loo), size_slope=f.slope, size_ref_mb=f.ref_mb)


def stack_on_networks(hw: HardwareModel, graphs: Sequence[Graph], measured: Sequence[float], *,
                      kind: str = "mixed") -> tuple[HardwareModel, CalibrationReport, bool]:
    """The build's network stage: the stacked layer models corrected on whole generated networks measured on the
    build's own machine (per-group factors and the per-node cost, as :func:`calibrate_measured` fits them), kept
    only where leave-one-out over those networks beats the uncorrected estimates. Returns the bundle (unchanged
    where not kept, its target is the build's), the report, and whether the correction was kept."""
    m = np.asarray(measured, dtype=np.float64)
    if len(m) < 3:
        raise InsufficientDataError(f"the network stage needs at least 3 measured networks, got {len(m)}")
    _, report = _fit_totals(hw, graphs, m, kind)
    before, after = report.before, report.after
    keep = before is not None and after is not None and after.mape_pct < before.mape_pct
    if not keep:
        return hw, report, False
    new = _calibrated(hw, target=hw.target, overhead=report.overhead, scales=report.scales,
                      default=report.default_scale, n=len(m),
                      source=f"{len(m)} generated networks measured end to end by the build",
                      method="factors per group (conv, matmul, other) ridged towards one global factor, the "
                             "per-node cost and the size slope; validation: leave-one-out", report=report,
                      name=hw.name, size=(report.size_slope, report.size_ref_mb))
    return replace(new, provenance=hw.provenance), report, True


def _calibrated(hw: HardwareModel, *, target: Any, overhead: Overhead, scales: Mapping[str, float], default: float,
                n: int, source: str, method: str, report: CalibrationReport | None, name: str | None,
                size: tuple[float, float] = (0.0, 1.0)) -> HardwareModel:
    from datetime import datetime, timezone

    validation = {} if report is None else {
        "before": None if report.before is None else report.before.to_dict(),
        "after": None if report.after is None else report.after.to_dict()}
    calibration = Calibration(scales=dict(scales), default_scale=default, base=hw.name, source=source, n_records=n,
                              method=method, machine=target.to_dict(), validation=validation, size_slope=size[0],
                              size_ref_mb=size[1])
    provenance = {**hw.provenance, "calibrated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "calibrated_from": hw.name}
    return replace(hw, name=name or f"{hw.name}-calibrated", target=target, overhead=overhead, calibration=calibration,
                   provenance=provenance)
