"""Estimate = apply the hardware model's mapping to a graph, then sum its layer models over executed layers.

Each executed layer costs its layer model's kernel time plus the target's per-node overhead (never less
than 0: the per-node term can be a negative correction of profiled kernel times); the run adds the per-run
overhead. A layer that no model covers is *unsupported*: listed on the result with the reason,
left out of the total (never a silent 0 ms), and an error under ``strict``. A layer made only of ops that
the accounting declares zero-cost (Reshape, Flatten, ...) and that has no model of its own costs only the
node overhead, and says so.

:func:`estimate_many` maps the graphs one at a time without building per-layer objects, keys every executed
layer by what its features depend on (shapes, attributes, wiring), computes features and types once per
distinct key (repeated cells, blocks shared between networks), and calls each layer model once over the
distinct rows of its types. Nothing per layer outlives the call but numpy columns (so no full garbage
collection passes over a NAS loop's heap); an estimate's per-layer table is rebuilt, by mapping its graph
again, when first read (one :func:`estimate` keeps its graph's plan for it instead: it maps the graph once).
This is what makes several hundred estimates per second possible in a NAS loop (benchmarks/estimate_speed.py
measures it).
Totals are summed in order over each graph's own layers: the same floats as one-by-one :func:`estimate`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import warnings
import weakref
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annette.errors import ShapeError, UnknownNameError, UnsupportedLayerError
from annette.graph.accounting import ZERO_COST_OPS
from annette.graph.ir import Graph
from annette.hardware import (
    KIND_FALLBACKS,
    HardwareModel,
    Resolved,
    TargetMismatchWarning,
    target_mismatch,
)
from annette.layers.features import (
    DistinctRows,
    Features,
    executed_type,
    inserted_row_key,
    layer_key,
    row_key,
)
from annette.layers.layertype import LayerType
from annette.mapping.apply import Inserted, Mapper, Plan
from annette.mapping.mapped import ExecutedLayer

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

ESTIMATE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LayerEstimate:
    """One executed layer: what it covers, its work, and its predicted time (None: unsupported)."""

    name: str
    type: str
    covers: tuple[str, ...]
    inserted: bool
    flops: float
    bytes: float
    bound: str
    time_ms: float | None
    model: str  # "<type>/<kind>" of the layer model used, "" where none
    note: str = ""
    anchor: str = ""  # inserted layers: the executed layer they were inserted for
    generic: bool = False  # costed by the bundle's generic default model (a guess: no model of its own type)

    @property
    def supported(self) -> bool:
        return self.time_ms is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "covers": list(self.covers),
            "inserted": self.inserted,
            "flops": self.flops,
            "bytes": self.bytes,
            "bound": self.bound,
            "time_ms": self.time_ms,
            "model": self.model,
            "note": self.note,
            "anchor": self.anchor,
            "generic": self.generic,
        }


@dataclass(frozen=True, eq=False)
class _Table:
    """Per-executed-layer columns of one :func:`estimate_many` call, with features, types and bounds per distinct
    row. No per-layer object outlives the call: an estimate's layers are rebuilt (by mapping its graph again)
    when first read; one :func:`estimate` keeps its graph's plan for them instead."""

    graphs: Sequence[Graph]
    mapper: Mapper
    rows: np.ndarray  # executed layer -> its distinct row
    X: Features  # distinct rows
    types: list[str]  # per distinct row
    times: np.ndarray  # per executed layer: ms including the per-node overhead; NaN: unsupported
    bounds: np.ndarray  # per distinct row
    resolved: dict[str, Resolved | None]
    zero_cost: frozenset[str]  # types costed as node overhead only
    generic: frozenset[str] = frozenset()  # types costed by the generic default model
    plans: Sequence[Plan] | None = None  # the graphs' plans where kept (one estimate: its layers are read)
    beyond: Mapping[int, Resolved] = field(default_factory=dict)  # rows beyond their type's model's data

    def layers(self, graph: int, start: int, n: int) -> tuple[LayerEstimate, ...]:
        plan = self.mapper.plan(self.graphs[graph]) if self.plans is None else self.plans[graph]
        executed = plan.mapped().executed
        if len(executed) != n:  # the graph changed (it is frozen, so only by force)
            raise ShapeError(f"graph {self.graphs[graph].name!r} maps to {len(executed)} layers now, {n} when estimated")
        return tuple(self.row(start + j, ex) for j, ex in enumerate(executed))

    def _value(self, u: int, name: str) -> float:
        return float(self.X.values[u, self.X.names.index(name)]) if name in self.X.names else math.nan

    def row(self, i: int, ex: ExecutedLayer) -> LayerEstimate:
        u = int(self.rows[i])
        t = self.types[u]
        r = self.beyond.get(u, self.resolved[t])
        time_ms = None if math.isnan(self.times[i]) else float(self.times[i])
        bound, model, note = str(self.bounds[u]), "", ""
        if u in self.X.errors:
            note = f"cannot account: {self.X.errors[u]}"
        elif r is not None:
            model, note = f"{r.type}/{r.kind}", r.note
        elif t in self.zero_cost:
            note = "zero-cost op, no layer model: node overhead only"
        else:
            note = f"no layer model for {t} or its fallbacks"
        return LayerEstimate(
            name=ex.name,
            type=t,
            covers=ex.covers,
            inserted=ex.inserted,
            flops=self._value(u, "flops"),
            bytes=self._value(u, "bytes"),
            bound=bound,
            time_ms=time_ms,
            model=model,
            note=note,
            anchor=ex.anchor,
            generic=t in self.generic,
        )


@dataclass(frozen=True)
class Estimate:
    """A network's estimated latency on one target, per executed layer (built on first access) and in total."""

    model: str
    hardware: str
    target: str
    kind: str
    total_ms: float
    n_executed: int
    n_unsupported: int
    removed: tuple[str, ...]
    run_overhead_ms: float
    node_overhead_ms: float  # included in every layer's time_ms
    _table: _Table = field(repr=False, compare=False)
    _graph: int = field(repr=False, compare=False)  # index in the table's graphs
    _start: int = field(repr=False, compare=False)  # first executed layer in the table's columns
    cache_ms: float = 0.0  # weights fetched again in a network larger than the cache (included in layers' time_ms)
    # Executed layers costed by the bundle's generic default model (guesses: no model of their own type), and
    # their time (included in total_ms).
    n_generic: int = 0
    generic_ms: float = 0.0
    traffic_mb: float = 0.0  # what the executed layers move: inputs, outputs and weights (MB)
    # What the caller should know about every number here (e.g. the bundle was fitted for another machine).
    warnings: tuple[str, ...] = ()

    @property
    def generic_share(self) -> float:
        """The share of total_ms that generic-model guesses make up (0 to 1)."""
        return self.generic_ms / self.total_ms if self.total_ms > 0 else 0.0

    @property
    def generic(self) -> tuple[LayerEstimate, ...]:
        """The executed layers costed by the generic default model."""
        if not self.n_generic:
            return ()
        return tuple(layer for layer in self.layers if layer.generic)

    @cached_property
    def layers(self) -> tuple[LayerEstimate, ...]:
        return self._table.layers(self._graph, self._start, self.n_executed)

    @property
    def unsupported(self) -> tuple[LayerEstimate, ...]:
        if not self.n_unsupported:
            return ()
        return tuple(layer for layer in self.layers if not layer.supported)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": ESTIMATE_SCHEMA_VERSION,
            "model": self.model,
            "hardware": self.hardware,
            "target": self.target,
            "kind": self.kind,
            "total_ms": self.total_ms,
            "run_overhead_ms": self.run_overhead_ms,
            "node_overhead_ms": self.node_overhead_ms,
            "cache_ms": self.cache_ms,
            "n_executed": self.n_executed,
            "n_unsupported": self.n_unsupported,
            "n_generic": self.n_generic,
            "generic_ms": self.generic_ms,
            "traffic_mb": self.traffic_mb,
            "warnings": list(self.warnings),
            "generic_share": self.generic_share,
            "removed": list(self.removed),
            "layers": [layer.to_dict() for layer in self.layers],
            "unsupported": [
                {"name": u.name, "type": u.type, "covers": list(u.covers), "reason": u.note} for u in self.unsupported
            ],
        }

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        rows = [layer.to_dict() for layer in self.layers]
        for row in rows:
            row["covers"] = ",".join(row["covers"])
        return pd.DataFrame(rows, columns=list(LayerEstimate.__dataclass_fields__))


def _hardware(hw: HardwareModel | str | Path) -> HardwareModel:
    return hw if isinstance(hw, HardwareModel) else HardwareModel.load(hw)


def estimate(
    model: Any,
    hw: HardwareModel | str | Path,
    *,
    kind: str = "mixed",
    strict: bool = False,
    allow_generic: bool = False,
    batch: int | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    example_inputs: Any = None,
    input_shape: Sequence[int] | None = None,
) -> Estimate:
    """Estimate one network on ``hw``.

    ``model`` is anything :func:`annette.importers.as_graph` takes: a Graph, a spec string or path (``.onnx``,
    graph ``.json``, ``torchvision:NAME``, ``nb201:ARCH``), an ``onnx.ModelProto``, or a ``torch.nn.Module``
    with ``example_inputs`` (a tensor or tuple of tensors) or ``input_shape`` (e.g. ``(1, 3, 224, 224)``).
    ``strict``: fail on layers no layer model covers and, unless ``allow_generic``, on layers only the
    bundle's generic default model covers (guesses).
    """
    from annette.importers import as_graph

    graph = as_graph(model, batch=batch, input_shapes=input_shapes, example_inputs=example_inputs,
                     input_shape=input_shape)
    return _estimate([graph], _hardware(hw), kind=kind, strict=strict, allow_generic=allow_generic, keep_plans=True)[0]


def estimate_many(
    graphs: Sequence[Any],
    hw: HardwareModel | str | Path,
    *,
    kind: str = "mixed",
    strict: bool = False,
    allow_generic: bool = False,
    batch: int | None = None,
) -> list[Estimate]:
    """Estimate many networks: features once per distinct row, one prediction call per layer model.

    ``graphs``: Graphs, spec strings, paths or ``onnx.ModelProto`` (see :func:`estimate`; a torch module needs
    its example input: convert it with :func:`annette.importers.as_graph` first). ``strict`` and
    ``allow_generic`` as in :func:`estimate`."""
    from annette.importers import as_graph

    graphs = tuple(m if isinstance(m, Graph) and batch is None else as_graph(m, batch=batch) for m in graphs)
    return _estimate(graphs, _hardware(hw), kind=kind, strict=strict, allow_generic=allow_generic, keep_plans=False)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a batch is estimated, as it was before. A batch makes tens of
    thousands of short-lived containers per network and frees them by reference counting (500 NAS-Bench-201
    estimates leave 44 objects in cycles), but the allocations trigger full collections that scan every graph the
    caller holds: 3-4 % of estimate_many's time on 500 networks (benchmarks/estimate_speed.py)."""
    if not gc.isenabled():  # the caller's choice
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@_collector_paused()
def _estimate(
    graphs: Sequence[Graph], hw: HardwareModel, *, kind: str, strict: bool, allow_generic: bool, keep_plans: bool
) -> list[Estimate]:
    """:func:`estimate_many` of ``graphs``; ``keep_plans``: keep each graph's plan for its per-layer table (one
    estimate, whose layers are read) rather than mapping the graph again when they are."""
    if kind not in KIND_FALLBACKS:
        raise UnknownNameError(f"unknown estimate kind {kind!r}; valid: {', '.join(KIND_FALLBACKS)}")
    notes = _target_warnings(hw)
    if kind not in hw.kinds:
        logger.warning("hardware model %r has no %r layer models (has %s); falling back per layer", hw.name, kind,
                       ", ".join(hw.kinds) or "none")
    mapper = Mapper(hw.rules)
    distinct = DistinctRows(hw.element_bits)
    row_of: list[int] = []  # executed layer -> its distinct row, over all graphs
    sizes: list[int] = []
    removed: list[tuple[str, ...]] = []
    plans: list[Plan] = []
    for g in graphs:  # one graph at a time: its per-layer objects die with it (unless kept)
        plan = mapper.plan(g)
        row_of.extend(_distinct_rows(plan, distinct))
        sizes.append(len(plan.items))
        removed.append(plan.removed)
        if keep_plans:
            plans.append(plan)
    inverse = np.array(row_of, dtype=np.intp)
    everything = distinct.features()
    X = everything.select(hw.feature_names)
    types = [executed_type(ex) for ex in distinct.layers]
    resolved = {t: hw.resolve(t, kind) for t in set(types)}
    zero_cost = frozenset(
        t for t, r in resolved.items() if r is None and all(op in ZERO_COST_OPS for op in LayerType.parse(t).members)
    )
    generic = frozenset(
        t for t, r in resolved.items() if r is not None and hw.default_type is not None and r.type == hw.default_type
        and t != hw.default_type
    )

    # One prediction call per layer model, over all distinct rows of all graphs it covers.
    node_ms = hw.overhead.per_node_ms - hw.overhead.profiler_node_ms
    rows_of: dict[int, list[int]] = defaultdict(list)
    models: dict[int, Resolved] = {}
    row_times = np.full(len(X), math.nan)
    row_kernel = np.full(len(X), math.nan)
    bounds = np.full(len(X), "-", dtype=object)
    # a fused type's own model predicts only layers within its data; its primary's model the ones beyond
    primary = {t: (r, p) for t, r in resolved.items() if r is not None and r.model.coverage_
               for p in (hw.resolve_primary(t, r),) if p is not None}
    checked: dict[str, list[int]] = defaultdict(list)
    for u, t in enumerate(types):
        r = resolved[t]
        if r is not None:
            if u in X.errors:
                continue
            if t in primary:
                checked[t].append(u)
            else:
                rows_of[id(r.model)].append(u)
                models[id(r.model)] = r
        elif t in zero_cost:
            row_times[u] = max(hw.overhead.per_node_ms, 0.0)
            bounds[u] = "overhead"
    beyond: dict[int, Resolved] = {}  # distinct row -> the model that predicts it instead of its type's
    for t, rows in checked.items():
        own, wider = primary[t]
        inside = own.model.covers(X.take(np.array(rows, dtype=np.intp)))
        for u, ok in zip(rows, inside, strict=True):
            r = own if ok else wider
            rows_of[id(r.model)].append(u)
            models[id(r.model)] = r
            if not ok:
                beyond[u] = r
    for key, rows in rows_of.items():
        idx = np.array(rows, dtype=np.intp)
        sub = X.take(idx)
        # kernel time (scaled onto the calibrated machine; as a profiler reports it, so less the profiler's own
        # per-node cost) + the per-node overhead (older bundles: one negative correction of profiled kernel times)
        scale = 1.0 if hw.calibration is None else hw.calibration.scale(models[key].type)
        row_kernel[idx] = models[key].model.predict(sub) * scale
        row_times[idx] = np.maximum(row_kernel[idx] + node_ms, 0.0)
        bounds[idx] = _bound(hw, models[key], sub)
    times = row_times[inverse]
    ends = np.cumsum(sizes, dtype=np.intp)
    moved = np.concatenate([[0.0], np.cumsum(np.nan_to_num(everything.column("bytes"))[inverse])])
    traffic = (moved[ends] - moved[ends - np.asarray(sizes, dtype=np.intp)]) / 1e6
    if hw.calibration is not None and hw.calibration.size_slope:
        factor = np.repeat([hw.calibration.size_factor(t) for t in traffic], sizes)
        kernel = row_kernel[inverse]
        times = np.where(np.isnan(kernel), times, np.maximum(kernel * factor + node_ms, 0.0))
    extra = None if hw.cache is None else hw.cache.graphs_extra_ms(everything.column("weight_bytes")[inverse], sizes)
    if extra is not None:
        times = times + extra
    table = _Table(graphs, mapper, inverse, X, types, times, bounds, resolved, zero_cost, generic,
                   plans if keep_plans else None, beyond)

    missing = np.isnan(times)
    supported = np.where(missing, 0.0, times)
    cum_missing = np.concatenate([[0], np.cumsum(missing)])
    is_generic = np.array([t in generic for t in types], dtype=bool)[inverse] if len(types) else np.zeros(0, bool)
    cum_generic = np.concatenate([[0], np.cumsum(is_generic)])
    generic_times = np.where(is_generic & ~missing, times, 0.0)
    out: list[Estimate] = []
    start = 0
    for index, (g, size) in enumerate(zip(graphs, sizes, strict=True)):
        stop = start + size
        est = Estimate(
            model=g.name,
            hardware=hw.name,
            target=hw.target.key,
            kind=kind,
            # summed in order over the graph's own layers: the same float whatever else is in the batch
            total_ms=float(np.cumsum(supported[start:stop])[-1] if size else 0.0) + hw.overhead.per_run_ms,
            n_executed=size,
            n_unsupported=int(cum_missing[stop] - cum_missing[start]),
            removed=removed[index],
            run_overhead_ms=hw.overhead.per_run_ms,
            node_overhead_ms=hw.overhead.per_node_ms,
            _table=table,
            _graph=index,
            _start=start,
            cache_ms=0.0 if extra is None else float(extra[start:stop].sum()),
            n_generic=int(cum_generic[stop] - cum_generic[start]),
            generic_ms=float(generic_times[start:stop].sum()),
            traffic_mb=float(traffic[index]),
            warnings=notes,
        )
        if strict and est.n_unsupported:
            bad = est.unsupported
            listed = ", ".join(f"{x.name} ({x.note})" for x in bad[:10])
            raise UnsupportedLayerError(
                f"{g.name}: {len(bad)} executed layer(s) have no layer model in {hw.name!r}: {listed}"
                + (" ..." if len(bad) > 10 else "")
            )
        if strict and not allow_generic and est.n_generic:
            guessed = est.generic
            kinds = sorted({x.type for x in guessed})
            raise UnsupportedLayerError(
                f"{g.name}: {len(guessed)} executed layer(s) ({100 * est.generic_share:.1f} % of "
                f"{est.total_ms:.4g} ms) are costed by the generic default model of {hw.name!r}, not by a model "
                f"of their own type: {', '.join(kinds[:10])}" + (" ..." if len(kinds) > 10 else "")
                + "; allow them with --allow-generic (allow_generic=True)"
            )
        out.append(est)
        start = stop
    return out


_NOTES: weakref.WeakKeyDictionary[HardwareModel, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _target_warnings(hw: HardwareModel) -> tuple[str, ...]:
    """The warnings every estimate with ``hw`` carries (a bundle fitted for another machine than this one); the
    Python warning (:class:`annette.hardware.TargetMismatchWarning`) is issued once per bundle object."""
    if hw in _NOTES:
        return _NOTES[hw]
    mismatch = target_mismatch(hw.target)
    notes = () if mismatch is None else (f"hardware model {hw.name!r} was {mismatch}",)
    _NOTES[hw] = notes
    for note in notes:
        warnings.warn(note, TargetMismatchWarning, stacklevel=4)
    return notes


def _distinct_rows(plan: Plan, distinct: DistinctRows) -> list[int]:
    """The distinct row of each executed layer of ``plan``, building an executed layer only for a new row."""
    out = []
    get, add = distinct.get, distinct.add
    for item in plan.items:
        if isinstance(item, Inserted):
            key = inserted_row_key(item.op_type, item.tensor)
        elif len(members := item.members) == 1:  # plain (the common case: its key without row_key's call)
            key = layer_key(members[0])
        else:  # fused
            key = row_key(members, item.bypassed)
        u = get(key)
        out.append(add(key, item.build()) if u is None else u)
    return out


def _bound(hw: HardwareModel, r: Resolved, rows: Features) -> np.ndarray:
    """compute / memory / overhead from the model's roofs, or the type's roofline where the model has none."""
    model = r.model
    if not hasattr(model, "bound"):
        roofline = hw.layer_models.get(r.type, {}).get("roofline")
        if roofline is None or not hasattr(roofline, "bound"):
            return np.full(len(rows), "-", dtype=object)
        model = roofline
    return np.asarray(model.bound(rows), dtype=object)
