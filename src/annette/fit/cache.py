"""The cache model (see :class:`annette.hardware.CacheModel`) from cache-pressure records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from annette.graph.ir import Graph
from annette.hardware import CacheModel, HardwareModel
from annette.layers.features import extract
from annette.mapping.apply import Mapper
from annette.records import BenchRecord

CACHE_CANDIDATES_MB = tuple(2 ** (k / 2) for k in range(4, 23))  # 4 MB ... 2 GB in steps of sqrt(2)


def weight_bytes(graphs: Sequence[Graph], hw: HardwareModel) -> tuple[np.ndarray, list[int]]:
    """The weight bytes of every executed layer of ``graphs`` under ``hw``'s mapping and element widths, as its
    estimates count them (graph after graph), and the number of executed layers per graph."""
    mapper = Mapper(hw.rules)
    executed = [mapper.map(g).executed for g in graphs]
    layers = [ex for layers in executed for ex in layers]
    return extract(layers, element_bits=hw.element_bits).column("weight_bytes"), [len(e) for e in executed]


def fit_cache(records: Iterable[BenchRecord], hw: HardwareModel, *, kind: str = "mixed") -> CacheModel | None:
    """The cache model from cache-pressure records: blocks whose weights add up to more or less than the cache
    holds, measured end to end.

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
    layer_bytes, sizes = weight_bytes(graphs, hw)
    bounds = np.cumsum([0, *sizes])

    def charged(capacity: float) -> np.ndarray:
        """Bytes the cache model charges per graph (at 1e3 B/s its extra ms are bytes), summed as estimates do."""
        extra = CacheModel(capacity, 1e3).graphs_extra_ms(layer_bytes, sizes)
        return np.array([float(extra[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])

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
