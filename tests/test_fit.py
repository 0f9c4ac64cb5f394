"""Fitting a hardware model from benchmark records of a known synthetic target."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

import hwsynth
from annette.errors import BenchStoreError, HardwareModelError
from annette.estimate import estimate, estimate_many
from annette.fit import fit_cache, fit_overhead, fit_records, fit_store
from annette.graph.ir import Layer
from annette.hardware import CacheModel, HardwareModel
from annette.records import Measurement

KINDS = ("roofline", "refined", "mixed")


@pytest.fixture(scope="module")
def records():  # type: ignore[no-untyped-def]
    return hwsynth.campaign(n_conv=40)


@pytest.fixture(scope="module")
def fitted(records):  # type: ignore[no-untyped-def]
    return fit_records(records, kinds=KINDS, seed=1)


def test_overheads_are_recovered(records) -> None:  # type: ignore[no-untyped-def]
    o = fit_overhead(records)
    assert o.per_node_ms == pytest.approx(hwsynth.NODE_MS, rel=1e-9)
    assert o.per_run_ms == pytest.approx(hwsynth.RUN_MS, rel=1e-9)
    assert o.n_records == len(records)


@pytest.mark.slow  # shares one ~5 s fit of three kinds
def test_fit_recovers_the_latency_law(fitted) -> None:  # type: ignore[no-untyped-def]
    hw, report = fitted
    assert set(hw.kinds) == set(KINDS)
    q = {(x.type, x.kind): x for x in report.quality}
    # the refined roofline is the true law of the synthetic convolutions
    assert q[("Conv", "refined")].mape < 1e-4 and q[("Conv", "refined")].n_test > 0
    assert q[("Conv", "roofline")].mape > 10 * q[("Conv", "refined")].mape
    assert q[("ReorderInput", "roofline")].mape < 1e-4
    e2e = report.end_to_end
    # end to end on held-out chains, where small fused types (8-16 samples) have only rough models
    assert e2e["refined"]["n"] > 0 and e2e["refined"]["mape"] < 0.03
    assert e2e["refined"]["mape"] < e2e["roofline"]["mape"]
    assert report.records_used == {"micro": sum(1 for r in hwsynth.campaign(n_conv=40) if r.kind == "micro"),
                                   "multi": 112}


@pytest.mark.slow  # shares one ~5 s fit of three kinds
def test_estimates_match_unseen_networks(fitted) -> None:  # type: ignore[no-untyped-def]
    hw, _ = fitted
    rng = np.random.default_rng(11)
    graphs, measured = [], []
    for i in range(5):
        b = hwsynth.Builder(f"net{i}", (1, 8, 32, 32))
        x = b.relu(b.bn(b.conv(b.input, 16)))
        x = b.relu(b.add(b.conv(x, 16), x))
        x = b.maxpool(b.relu(b.conv(x, 32, 3, 2)))
        g = b.graph(b.relu(b.gemm(b.flatten(x), 10)))
        graphs.append(g)
        m = hwsynth.record(g, "network", "net", rng).measurement
        assert m is not None
        measured.append(m.label_ms)
    est = np.array([e.total_ms for e in estimate_many(graphs, hw, kind="refined")])
    assert np.max(np.abs(est / np.array(measured) - 1)) < 0.02


@pytest.mark.slow  # shares one ~5 s fit of three kinds
def test_small_types_fall_back_and_kinds_need_data(fitted) -> None:  # type: ignore[no-untyped-def]
    hw, report = fitted
    # 8 Conv+MaxPool samples alone would give only a roofline: the Conv model pooled over all fused variants
    # (this target runs them with one law) serves them with every kind
    assert "Conv+MaxPool" in report.pooled["Conv"] and "Conv+MaxPool" not in hw.layer_models
    r = hw.resolve("Conv+MaxPool", "mixed")
    assert r is not None and (r.type, r.kind) == ("Conv", "mixed") and "type Conv+MaxPool→Conv" in r.note
    assert set(hw.layer_models["*"]) == {"roofline"}
    assert report.n_samples["Conv"] >= 40
    # 20 samples: enough for a roofline and a refined roofline, too few for mixed
    small, _ = fit_records([r for r in hwsynth.campaign(n_conv=0) if r.family == "gemm"][:20], kinds=KINDS)
    assert set(small.layer_models["Gemm"]) == {"roofline", "refined"}
    r = small.resolve("Gemm", "mixed")
    assert r is not None and r.kind == "refined" and "kind mixed→refined" in r.note


@pytest.mark.slow  # shares one ~5 s fit of three kinds
def test_bundle_round_trip_keeps_estimates(fitted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    hw, _ = fitted
    path = hw.save(tmp_path / "hw.json")
    again = HardwareModel.load(path)
    b = hwsynth.Builder("n", (1, 4, 16, 16))
    g = b.graph(b.maxpool(b.relu(b.conv(b.input, 8))))
    for kind in KINDS:
        assert estimate_many([g], again, kind=kind)[0].total_ms == estimate_many([g], hw, kind=kind)[0].total_ms
    assert again.provenance["records_used"]["multi"] == 112 and again.quality.fit is not None and again.quality.fit.layer_quality


def test_robust_to_failed_flagged_and_foreign_records(records) -> None:  # type: ignore[no-untyped-def]
    base = records[:80]
    broken = [
        replace(base[0], config_id="f1", status="failed", graph=None, measurement=None, error="boom"),
        replace(base[1], config_id="f2", graph=None),
        replace(base[2], config_id="f3", measurement=replace(base[2].measurement, flags=("high_cv",))),
        replace(base[3], config_id="f4", measurement=Measurement((), 1, float("nan"), 0.0, 0.0)),
        replace(base[4], config_id="f5", profile=()),  # a micro record without profile still counts
    ]
    hw, report = fit_records([*base, *broken], kinds=("roofline",), exclude_flags=("high_cv",))
    assert report.skipped == {"failed": 1, "no graph": 1, "excluded flag": 1, "no valid measurement": 1}
    assert sum(report.records_used.values()) == 81
    other = replace(base[0], config_id="o1", target=replace(base[0].target, threads=4))
    with pytest.raises(HardwareModelError, match="2 targets"):
        fit_records([*base, other], kinds=("roofline",))
    hw2, rep2 = fit_records([*base, other], kinds=("roofline",), target_key=base[0].target.key)
    assert rep2.skipped == {"other target": 1}
    # a pattern pools targets that differ in batch (external tables): batch 0 marks the pooled model
    batch8 = [replace(r, config_id=r.config_id + "b8", target=replace(r.target, batch=8)) for r in base[:20]]
    hw3, rep3 = fit_records([*base, *batch8], kinds=("roofline",), target_key="simulated/cpu/fp32/b*/t1")
    assert hw3.target.batch == 0 and sum(rep3.records_used.values()) == 100
    assert hw3.target.extra["pooled_targets"] == "simulated/cpu/fp32/b1/t1,simulated/cpu/fp32/b8/t1"
    with pytest.raises(HardwareModelError, match="no usable"):
        fit_records([broken[0]])


def test_fit_store_reads_a_benchmark_store(records, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from annette.bench.store import BenchStore

    store = BenchStore(tmp_path / "store")
    for r in records[:60]:
        store.add(r)
    hw, report = fit_store(tmp_path / "store", kinds=("roofline",))
    assert hw.provenance["store"] == str((tmp_path / "store").resolve())
    assert sum(report.records_used.values()) == 60
    # several stores pool their records (a campaign and a targeted one)
    extra = BenchStore(tmp_path / "extra")
    for r in records[60:90]:
        extra.add(r)
    hw, report = fit_store([tmp_path / "store", tmp_path / "extra"], kinds=("roofline",))
    assert hw.provenance["store"] == [str((tmp_path / d).resolve()) for d in ("store", "extra")]
    assert sum(report.records_used.values()) == 90
    with pytest.raises(BenchStoreError, match="no benchmark store"):
        fit_store([tmp_path / "store", tmp_path / "missing"], kinds=("roofline",))


def test_cli_fit_writes_a_loadable_bundle(records, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from annette.bench.store import BenchStore
    from annette.cli.main import app

    store = BenchStore(tmp_path / "store")
    for r in records[:60]:
        store.add(r)
    out = tmp_path / "hw.json"
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "store"), "-o", str(out), "--kinds", "roofline", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["out"] == str(out) and doc["layer_quality"] and doc["overhead"]["per_node_ms"] > 0
    assert HardwareModel.load(out).kinds == ("roofline",)
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "store"), "-o", str(out), "--kinds", "cubic"])
    assert res.exit_code == 1 and "cubic" in res.output


def _relu_chains(rng: np.random.Generator) -> list:  # type: ignore[type-arg]
    out = []
    for n in (1, 2, 4, 8, 16, 32, 64):
        b = hwsynth.Builder(f"chain{n}", (1, 16, 8, 8))
        y = b.input
        for _ in range(n):
            y = b.relu(y)
        out.append(replace(hwsynth.record(b.graph(y), "multi", "node_chain", rng), family="node_chain"))
    return out


def test_inflated_profiles_give_physical_overheads_that_still_correct_them(records) -> None:  # type: ignore[no-untyped-def]
    # A profiler that adds 6 µs to every node (the label is unprofiled): the gap says per node 4 − 6 = −2 µs.
    inflated = [
        replace(r, profile=tuple(replace(p, time_ms=p.time_ms + 0.006) for p in r.profile)) for r in records
    ]
    o = fit_overhead(inflated)
    # without node chains: no negative cost; the profiler's share is what the gap shows
    assert o.per_node_ms == 0.0 and o.profiler_node_ms == pytest.approx(0.002, abs=1e-9)
    assert o.per_run_ms == pytest.approx(hwsynth.RUN_MS, abs=1e-9)
    # with node chains the unprofiled per-node cost is seen (dispatch 4 µs + a relu kernel of ~1 µs), and the
    # profiler's own cost is what separates it from the gap: ~6 µs
    chains = _relu_chains(np.random.default_rng(1))
    with_chains = inflated + [
        replace(r, profile=tuple(replace(p, time_ms=p.time_ms + 0.006) for p in r.profile)) for r in chains
    ]
    o = fit_overhead(with_chains)
    relu_kernel = hwsynth.node_time(hwsynth.execute(chains[0].graph)[0])
    assert o.per_node_ms == pytest.approx(hwsynth.NODE_MS + relu_kernel, rel=1e-6)
    assert o.profiler_node_ms == pytest.approx(0.006 + relu_kernel, rel=1e-3)
    assert o.per_node_ms - o.profiler_node_ms == pytest.approx(-0.002, abs=1e-6)
    hw, _ = fit_records(with_chains, kinds=("refined",), holdout=0.0)
    assert hw.overhead.per_node_ms >= 0 and hw.overhead.per_run_ms >= 0
    b = hwsynth.Builder("net", (1, 8, 32, 32))
    g = b.graph(b.maxpool(b.relu(b.conv(b.relu(b.conv(b.input, 16)), 32))))
    measured = hwsynth.record(g, "network", "net", np.random.default_rng(0)).measurement
    assert measured is not None
    assert estimate_many([g], hw, kind="refined")[0].total_ms == pytest.approx(measured.label_ms, rel=0.02)


@pytest.mark.slow  # shares one ~5 s fit of three kinds
def test_types_without_benchmarks_use_the_generic_default_and_say_so(fitted, records) -> None:  # type: ignore[no-untyped-def]
    hw, _ = fitted
    assert hw.default_type == "*"
    r = hw.resolve("ReduceL2", "mixed")  # never benchmarked
    assert r is not None and r.type == "*" and "default for types without a model" in r.note
    strict_hw, _ = fit_records(records, kinds=("roofline",), seed=1, generic_default=False)
    assert strict_hw.default_type is None and strict_hw.resolve("ReduceL2", "roofline") is None


def test_a_recipe_adds_rules_models_redirects_and_widths(records) -> None:  # type: ignore[no-untyped-def]
    from annette.fit import Recipe
    from annette.layers.features import ElementBits
    from annette.mapping.rules import MappingRules, RemovalRule

    base, base_report = fit_records(records[:120], kinds=("roofline",), holdout=0.0)
    extra = base.layer_models["Conv"]["roofline"]
    recipe = Recipe(rules=MappingRules(removals=(RemovalRule("Softmax"),), settings={"eager": "yes"}),
                    models={"Special": {"roofline": extra}}, fallbacks={"MatMul": "Gemm", "Einsum": "Nope"},
                    default_type="Special", element_bits=ElementBits(16, 16))
    hw, report = fit_records(records[:120], kinds=("roofline",), holdout=0.0, recipe=recipe)
    assert [r.op for r in hw.rules.removals] == [*(r.op for r in base.rules.removals), "Softmax"]
    assert hw.rules.settings is not None and hw.rules.settings["eager"] == "yes"
    assert report.rules == base_report.rules  # the report lists what was learned
    assert hw.layer_models["Special"]["roofline"] is extra and hw.default_type == "Special"
    assert hw.fallbacks["MatMul"] == "Gemm" and "Einsum" not in hw.fallbacks  # no models of type Nope
    assert hw.element_bits == ElementBits(16, 16) and base.element_bits is None
    # no record has a Softmax: what the records teach is the same
    assert {t: {k: m.to_dict() for k, m in ms.items()} for t, ms in hw.layer_models.items() if t != "Special"} == {
        t: {k: m.to_dict() for k, m in ms.items()} for t, ms in base.layer_models.items()}
    r = hw.resolve("ReduceL2", "roofline")
    assert r is not None and r.type == "Special"


# -- the cache model -----------------------------------------------------------------------------------------
MB = 2**20


def layer_weight_bytes(layer: Layer) -> float:
    return float(sum(t.nbytes for t in layer.weights))


def _chain(c: int, n: int, name: str):  # type: ignore[no-untyped-def]
    """n 3x3 convolutions of c channels at 4x4: 36·c² bytes of fp32 weights (+ bias) each."""
    b = hwsynth.Builder(name, (1, c, 4, 4))
    y = b.input
    for _ in range(n):
        y = b.conv(y, c)
    return b.graph(y)


def test_cache_model_charges_only_layers_that_fit_in_graphs_that_do_not() -> None:
    cache = CacheModel(capacity_bytes=32 * MB, bandwidth_bytes_per_s=10e9)
    assert cache.extra_ms(8 * MB, 16 * MB) == 0.0  # the whole graph stays cached
    assert cache.extra_ms(8 * MB, 64 * MB) == pytest.approx(1e3 * 8 * MB / 10e9, rel=1e-12)
    assert cache.extra_ms(40 * MB, 64 * MB) == 0.0  # its own benchmark fetched it too
    with pytest.raises(ValueError, match="positive"):
        CacheModel.from_dict({"capacity_bytes": 0, "bandwidth_bytes_per_s": 1e9})


def test_fit_cache_recovers_capacity_and_bandwidth_and_estimate_applies_it(fitted) -> None:  # type: ignore[no-untyped-def]
    hw, _ = fitted
    truth = CacheModel(capacity_bytes=32 * MB, bandwidth_bytes_per_s=12e9)
    # totals from 1.2 MB to 302 MB, with some on either side of the capacity (26 MB, 38 MB)
    graphs = [_chain(c, n, f"chain{c}x{n}") for c in (128, 256, 512) for n in (2, 4, 8, 11, 16, 32)]
    warm = [e.total_ms for e in estimate_many(graphs, hw)]
    records = []
    for g, t in zip(graphs, warm, strict=True):
        total = sum(layer_weight_bytes(layer) for layer in g.layers)
        label = t + float(sum(truth.extra_ms(layer_weight_bytes(layer), total) for layer in g.layers))
        rec = hwsynth.record(g, "multi", "cache_conv", np.random.default_rng(0), profile=False)
        samples = (label,) * 5
        records.append(replace(rec, measurement=replace(rec.measurement, samples_ms=samples, label_ms=label,
                                                         median_ms=label, min_ms=label)))
    cache = fit_cache(records, hw)
    assert cache is not None and cache.capacity_bytes == 32 * MB
    assert cache.bandwidth_bytes_per_s == pytest.approx(12e9, rel=1e-6)
    with_cache = replace(hw, cache=cache)
    again = HardwareModel.from_dict(json.loads(json.dumps(with_cache.to_dict())))
    assert again.cache == cache
    big = graphs[-1]  # 32 x 512-channel convolutions: 302 MB of weights, each 9.4 MB
    extra = float(sum(cache.extra_ms(layer_weight_bytes(layer), math.inf) for layer in big.layers))
    est = estimate(big, again)
    assert est.total_ms - estimate(big, hw).total_ms == pytest.approx(extra, rel=1e-9)
    assert est.cache_ms == pytest.approx(extra, rel=1e-9)
    small = graphs[0]  # 2 x 128 channels: 1.2 MB, cached
    assert estimate(small, again).total_ms == estimate(small, hw).total_ms
    # no cache effect in the data: no model
    plain = [replace(r, measurement=replace(r.measurement, label_ms=t, samples_ms=(t,) * 5, median_ms=t, min_ms=t))
             for r, t in zip(records, warm, strict=True)]
    assert fit_cache(plain, hw) is None
