"""Regression: a fixed set of synthetic records, fitted at a fixed seed, gives the stored bundle.

The records (``hwsynth``'s noisy campaign, some micro records without their profile, a type too rare for a
model of its own, cache-pressure chains) and the fits' options are fixed; ``tests/data/fit_regression.json``
holds what the fits gave when it was written: the layer-model types (in the bundle's order) and kinds,
fallbacks, pooled types, mapping rules, overheads, held-out quality, the cache model, and every kind's estimate
of a few unseen networks (one with an op no benchmark covers, one with the rare type). Three fits cover the
three outcomes of pooling a primary type over its fused variants (pooled, per-type models kept, pooled with
some variants keeping their own). A change to the fit that moves any of these fails here; regenerate the file
only for an intended change:

    PYTHONPATH=src .venv/bin/python tests/test_fit_regression.py --write
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hwsynth
from annette.estimate import estimate_many
from annette.fit import fit_cache, fit_records
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.hardware import CacheModel, HardwareModel
from annette.layers import KINDS
from annette.records import BenchRecord

DATA = Path(__file__).parent / "data" / "fit_regression.json"
SEED = 3
REL = 1e-9  # the same machine gives the same bits; the margin is for BLAS and libm elsewhere


def campaign(seed: int = SEED, noise: float = 0.04) -> list[BenchRecord]:
    """The noisy synthetic campaign, every 7th micro record without its profile (the unprofiled sample path), and
    4 Sigmoid records (too few for a model: the type falls back to the generic one)."""
    records = hwsynth.campaign(seed=seed, n_conv=40, noise=noise)
    rng = np.random.default_rng(seed)
    for c in (3, 8, 16, 32):
        b = hwsynth.Builder(f"sigmoid{c}", (1, c, 16, 16))
        records.append(hwsynth.record(b.graph(_op(b, "Sigmoid", b.input)), "micro", "sigmoid", rng, noise))
    return [replace(r, profile=()) if r.kind == "micro" and i % 7 == 0 else r for i, r in enumerate(records)]


def _op(b: hwsynth.Builder, op: str, x: TensorSpec, **attrs: Any) -> TensorSpec:
    """A shape-preserving layer of ``op`` (the builder's own methods cover the target's usual ops)."""
    y = TensorSpec(f"{op.lower()}_{len(b.layers)}_out", x.shape)
    b.layers.append(Layer(f"{op.lower()}_{len(b.layers)}", op, (x,), (y,), (), attrs))
    return y


def cache_records(hw: HardwareModel) -> list[BenchRecord]:
    """Chains of convolutions whose weights add up to 1-300 MB, timed as a 24 MB cache would make them."""
    truth = CacheModel(capacity_bytes=24 * 2**20, bandwidth_bytes_per_s=9e9)
    graphs = []
    for c in (128, 256, 512):
        for n in (2, 4, 8, 11, 16, 32):
            b = hwsynth.Builder(f"chain{c}x{n}", (1, c, 4, 4))
            y = b.input
            for _ in range(n):
                y = b.conv(y, c)
            graphs.append(b.graph(y))
    out = []
    rng = np.random.default_rng(SEED)
    for g, est in zip(graphs, estimate_many(graphs, hw), strict=True):
        w = [float(sum(t.nbytes for t in layer.weights)) for layer in g.layers]
        label = est.total_ms * (1 + 0.02 * rng.standard_normal()) + float(sum(truth.extra_ms(w, sum(w))))
        rec = hwsynth.record(g, "cache", "cache_conv", rng, profile=False)
        assert rec.measurement is not None
        out.append(replace(rec, measurement=replace(rec.measurement, samples_ms=(label,) * 5, label_ms=label,
                                                    median_ms=label, min_ms=label)))
    return out


def networks() -> list[Graph]:
    """Unseen networks: CNNs of the benchmarked ops, one with a Softmax (no benchmark: the generic default model)
    and one with a Sigmoid (too few benchmarks: redirected to the generic model)."""
    out = []
    for i, (c, f) in enumerate(((8, 16), (3, 24), (16, 40))):
        b = hwsynth.Builder(f"net{i}", (1, c, 32, 32))
        x = b.relu(b.bn(b.conv(b.input, f)))
        x = b.relu(b.add(b.conv(x, f), x))
        x = b.maxpool(b.relu(b.conv(x, 2 * f, 3, 2)))
        out.append(b.graph(b.relu(b.gemm(b.flatten(x), 10))))
    for op in ("Softmax", "Sigmoid"):
        b = hwsynth.Builder(f"{op.lower()}_head", (1, 8, 16, 16))
        out.append(b.graph(_op(b, op, b.gemm(b.flatten(b.maxpool(b.relu(b.conv(b.input, 16)))), 10), axis=1)))
    return out


def fit_summary(seed: int, noise: float, kinds: tuple[str, ...]) -> tuple[HardwareModel, dict[str, Any]]:
    """One fit's bundle, and what the regression compares of it: structure, figures, estimates."""
    hw, report = fit_records(campaign(seed, noise), kinds=kinds, seed=seed, holdout=0.2)
    graphs = networks()
    return hw, {
        "layer_models": {t: sorted(m) for t, m in sorted(hw.layer_models.items())},
        "layer_model_order": list(hw.layer_models),
        "fallbacks": dict(hw.fallbacks),
        "default_type": hw.default_type,
        "pooled": report.pooled,
        "rules": report.rules,
        "n_samples": report.n_samples,
        "records_used": report.records_used,
        "skipped": report.skipped,
        "overhead": hw.overhead.to_dict(),
        "layer_quality": [q.to_dict() for q in report.quality],
        "end_to_end": report.end_to_end,
        "estimates": {kind: {e.model: e.total_ms for e in estimate_many(graphs, hw, kind=kind)} for kind in kinds},
    }


def summary() -> dict[str, Any]:
    """The three fits (every kind; the roofline alone, where Conv keeps its per-type models; roofline and
    refined on noisier records, where some fused variants keep theirs), and the cache model of the first."""
    hw, full = fit_summary(SEED, 0.04, KINDS)
    cache = fit_cache(cache_records(hw), hw)
    with_cache = {e.model: e.total_ms for e in estimate_many(networks(), replace(hw, cache=cache))}
    return {
        "full": {**full, "cache": None if cache is None else cache.to_dict(), "estimates_with_cache": with_cache},
        "roofline": fit_summary(5, 0.04, ("roofline",))[1],
        "partial": fit_summary(5, 0.1, ("roofline", "refined"))[1],
    }


def _close(got: Any, want: Any, where: str) -> list[str]:
    """Where ``got`` differs from ``want`` (floats within REL), as messages."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}: keys {sorted(got)} != {sorted(want)}"] if set(got) != set(want) else []
        return out + [m for k in want if k in got for m in _close(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: {len(got)} items, stored {len(want)}"]
        return [m for i, (g, w) in enumerate(zip(got, want, strict=True)) for m in _close(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if got == pytest.approx(want, rel=REL, abs=1e-15) else [f"{where}: {got!r} != stored {want!r}"]
    return [] if got == want else [f"{where}: {got!r} != stored {want!r}"]


@pytest.mark.slow  # three fits on ~340 records (~15 s)
def test_the_fit_gives_the_stored_bundle() -> None:
    stored = json.loads(DATA.read_text(encoding="utf-8"))
    got = json.loads(json.dumps(summary()))  # JSON's view (tuples as lists, keys as strings)
    diffs = _close(got, stored, "fit")
    assert not diffs, f"{len(diffs)} differences from {DATA.name}:\n" + "\n".join(diffs[:30])


def test_the_comparison_sees_changes() -> None:
    want = {"a": [1.0, {"b": "x"}], "c": 2}
    assert not _close(json.loads(json.dumps(want)), want, "w")
    assert _close({"a": [1.0 + 1e-6, {"b": "x"}], "c": 2}, want, "w") == ["w.a[0]: 1.000001 != stored 1.0"]
    assert _close({"a": [1.0], "c": 2}, want, "w") and _close({"a": [1.0, {"b": "y"}], "c": 2}, want, "w")
    assert _close({"a": [1.0, {"b": "x"}]}, want, "w")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {sys.argv[0]} --write   (regenerates {DATA})")
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps(summary(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {DATA}")
