"""Fitting a hardware model from benchmark records of a known synthetic target."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import hwsynth
from annette.bench.records import Measurement
from annette.errors import BenchStoreError, HardwareModelError
from annette.estimate import estimate_many
from annette.fit import fit_overhead, fit_records, fit_store
from annette.hardware import HardwareModel

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
    assert again.provenance["records_used"]["multi"] == 112 and again.quality["layer_quality"]


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


def test_inflated_profiles_give_a_negative_node_overhead_that_corrects_them(records) -> None:  # type: ignore[no-untyped-def]
    # A profiler that adds 6 µs to every node (the label is unprofiled): per node 4 − 6 = −2 µs.
    inflated = [
        replace(r, profile=tuple(replace(p, time_ms=p.time_ms + 0.006) for p in r.profile)) for r in records
    ]
    o = fit_overhead(inflated)
    assert o.per_node_ms == pytest.approx(hwsynth.NODE_MS - 0.006, abs=1e-9)
    assert o.per_run_ms == pytest.approx(hwsynth.RUN_MS, abs=1e-9)
    hw, _ = fit_records(inflated, kinds=("refined",), holdout=0.0)
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
