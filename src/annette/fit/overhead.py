"""Per-node and per-run overheads (both >= 0) from records with per-node profiles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from annette.hardware import Overhead
from annette.records import BenchRecord

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


def describe(overhead: Overhead) -> str:
    """One line for the fit's progress."""
    o = overhead
    return (f"overhead: {o.per_node_ms * 1e3:.2f} µs per node, {o.per_run_ms * 1e3:.2f} µs per run; the profiler adds "
            f"{o.profiler_node_ms * 1e3:.2f} µs per node ({o.n_records} profiled records)")
