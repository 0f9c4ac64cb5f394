"""The one-command build (annette build), its family registry, the adaptive stage, calibration onto another
machine (annette calibrate, from benchmarks here or from timings measured elsewhere) and the target-mismatch
warning. The simulated backend with a known scale change stands in for a second machine."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from annette.bench.blocks import FAMILIES, build_model, sample_params
from annette.bench.campaign import measure_configs
from annette.bench.store import BenchStore
from annette.bench.sweeps import BenchConfig, make_config
from annette.build import STAGE_SHARES, _refine_round, run_build, stack_stage, stage_plan, validation_networks
from annette.calibrate import calibrate_here, calibrate_measured
from annette.cli.main import app
from annette.estimate import estimate_many
from annette.fit import fit_records
from annette.hardware import HardwareModel, TargetMismatchWarning, target_mismatch
from annette.importers.onnx import graph_from_onnx
from annette.records import BenchRecord, Target

SIM = "simulated"


@pytest.mark.parametrize("family", FAMILIES.names())
def test_every_family_rebuilds_from_its_stored_record(family: str) -> None:
    fam = FAMILIES.get(family)
    cost = float("inf") if fam.stage == "cache" else 5e8
    params = sample_params(family, np.random.default_rng(3), max_cost=cost)
    cfg = make_config(family, params, "t")
    stored = BenchConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # what a store record keeps
    assert stored == cfg
    a = build_model(cfg.family, cfg.params, name=cfg.model_name)
    b = build_model(stored.family, stored.params, name=stored.model_name)
    assert a.SerializeToString() == b.SerializeToString()  # weights seeded by family and parameters
    if fam.stage != "cache":  # cache blocks hold up to 1.5 GB of weights: checked by building only
        onnx.checker.check_model(a)
        graph = graph_from_onnx(a)
        assert graph.layers and all(layer.name for layer in graph.layers)


def test_every_build_stage_has_families_and_plans_are_seeded() -> None:
    for stage in ("core", "context", "cache", "overhead"):
        assert any(FAMILIES.get(n).stage == stage for n in FAMILIES.names()), stage
    a = stage_plan("context", "k", seed=1, size=30)
    assert a == stage_plan("context", "k", seed=1, size=30) and a != stage_plan("context", "k", seed=2, size=30)
    assert {c.family for c in a} <= {n for n in FAMILIES.names() if FAMILIES.get(n).stage == "context"}
    assert sum(STAGE_SHARES.values()) < 1.0  # the rest is for refinement, the fit and the validation


def test_validation_networks_are_none_a_stage_draws() -> None:
    nets = validation_networks(6)
    families = [name.split(":", 1)[0] for name, _ in nets]
    assert len(nets) == 6 and families.count("nb201") == 2
    assert sum(FAMILIES.get(f).stage == "context" for f in families if f != "nb201") == 2
    assert sum(FAMILIES.get(f).stage == "network" for f in families if f != "nb201") == 2
    drawn = {c.config_id for c in stage_plan("context", "validation", seed=0, size=200)}
    assert not {name.split(":", 1)[1] for name, _ in nets if not name.startswith("nb201:")} & drawn


@pytest.mark.parametrize("family", ["net_cnn", "net_vit"])
def test_whole_generated_networks_run_and_are_of_mainstream_size(family: str) -> None:
    """Each draw of a whole-network family is a valid network ONNX Runtime runs, classifying a batch into 1000
    classes, with a MAC count (the graph's own accounting) near the sampler's rough one, within the stage's cap."""
    import onnxruntime as ort

    from annette.bench.networks import NET_MAX_MACS
    from annette.graph.accounting import account_graph

    rng = np.random.default_rng(3)
    for _ in range(3):
        p = sample_params(family, rng, max_cost=NET_MAX_MACS)
        model = build_model(family, p)
        macs = account_graph(graph_from_onnx(model)).total.macs
        assert 0.5 < macs / FAMILIES.get(family).cost(p) < 2.0, (p, macs)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        x = np.zeros([p["batch"], 3, p["size"], p["size"]], dtype=np.float32)
        (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
        assert y.shape == (p["batch"], 1000)


@pytest.fixture(scope="module")
def sim_records(tmp_path_factory: pytest.TempPathFactory) -> list[BenchRecord]:
    """A small simulated campaign: conv micro-kernels and conv-bn-relu blocks, measured by the real worker."""
    from annette.backends import get_backend

    store_dir = tmp_path_factory.mktemp("sim")
    target = get_backend(SIM).describe()
    rng = np.random.default_rng(0)
    configs = [make_config(f, sample_params(f, rng), target.key) for f in ["conv"] * 80 + ["relu"] * 30 + ["conv_bn_relu"] * 40]
    with BenchStore(store_dir) as store:
        measure_configs(store, configs, backend=SIM, backend_options={}, target=target, profile_runs=1)
        return list(store.records())


def test_refine_round_draws_around_the_worst_held_out_records(sim_records: list[BenchRecord]) -> None:
    key = sim_records[0].target.key
    new, summary = _refine_round(sim_records, key, seed=0)
    assert new and "held-out MAPE" in summary
    stored = {r.config_id for r in sim_records}
    assert all(c.config_id not in stored and c.source == "refine" for c in new)
    assert {c.family for c in new} <= {r.family for r in sim_records}


def test_calibrate_here_recovers_a_known_scale_change(sim_records: list[BenchRecord], tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, _ = fit_records(sim_records, kinds=("roofline", "statistical"), holdout=0.0)
    new, report = calibrate_here(base, minutes=20, max_configs=70, backend=SIM, backend_options={"scale": 1.6},
                                 store_dir=tmp_path / "cal", kind="statistical")
    assert new.calibration is not None and new.calibration.base == base.name
    assert report.default_scale == pytest.approx(1.6, rel=0.15)
    assert report.after is not None and report.before is not None
    assert report.after.mape_pct < report.before.mape_pct
    # estimates of unseen graphs follow the second machine
    graphs = [graph_from_onnx(m) for _, m in validation_networks(4)]
    old = np.array([e.total_ms for e in estimate_many(graphs, base, kind="statistical")])
    cal = np.array([e.total_ms for e in estimate_many(graphs, new, kind="statistical")])
    assert float(cal.sum() / old.sum()) == pytest.approx(1.6, rel=0.15)  # the large ones: kernels 1.6x slower
    assert np.all(cal / old > 1.15)  # the smallest too, where a (partly scaled) per-run cost weighs in
    again = HardwareModel.from_dict(json.loads(json.dumps(new.to_dict())))
    assert [e.total_ms for e in estimate_many(graphs, again, kind="statistical")] == list(cal)


def test_the_network_stage_keeps_a_correction_only_where_it_beats_leave_one_out(sim_records: list[BenchRecord]) -> None:
    from annette.spaces.nb201 import graph_from_arch, sample_archs

    base, _ = fit_records(sim_records, kinds=("roofline", "statistical"), holdout=0.0)
    graphs = {a: graph_from_arch(a) for a in sample_archs(24, seed=11)}
    est = {a: e.total_ms for a, e in zip(graphs, estimate_many(list(graphs.values()), base, kind="statistical"), strict=True)}
    # whole networks that run 30 % faster than their layers' sum (their convolutions) on this "machine"
    conv = {a: sum(x.time_ms or 0.0 for x in e.layers if x.type.startswith("Conv"))
            for a, e in zip(graphs, estimate_many(list(graphs.values()), base, kind="statistical"), strict=True)}
    faster = {a: [est[a] - 0.3 * conv[a]] for a in graphs}
    hw, note = stack_stage(base, graphs, faster)
    assert hw.calibration is not None and "kept" in note and "not kept" not in note
    assert hw.target == base.target and hw.name == base.name  # still the build's own machine and bundle
    new = {a: e.total_ms for a, e in zip(graphs, estimate_many(list(graphs.values()), hw, kind="statistical"), strict=True)}
    err_before = np.mean([abs(est[a] / faster[a][0] - 1) for a in graphs])
    err_after = np.mean([abs(new[a] / faster[a][0] - 1) for a in graphs])
    assert err_after < 0.5 * err_before
    # networks that run exactly as estimated: nothing to correct, the bundle is kept as fitted
    same, note = stack_stage(base, graphs, {a: [est[a]] for a in graphs})
    assert same is base and "not kept" in note
    assert "too few" in stack_stage(base, dict(list(graphs.items())[:2]), faster)[1]


def test_calibrate_measured_from_ten_timings_recovers_a_slower_device(sim_records: list[BenchRecord]) -> None:
    from annette.spaces.nb201 import graph_from_arch, sample_archs

    base, _ = fit_records(sim_records, kinds=("roofline", "statistical"), holdout=0.0)
    graphs = [graph_from_arch(a) for a in sample_archs(30, seed=5)]
    bare = replace(base, overhead=replace(base.overhead, per_node_ms=0.0, per_run_ms=0.0))
    kernels = np.array([e.total_ms for e in estimate_many(graphs, bare, kind="statistical")])
    nodes = np.array([e.n_executed for e in estimate_many(graphs, base, kind="statistical")])
    # a device whose kernels all run 2.5x slower and whose nodes cost 3 µs each
    truth = 2.5 * kernels + 0.003 * nodes + base.overhead.per_run_ms
    rows = [(g.name, g, float(t)) for g, t in zip(graphs, truth, strict=True)]
    new, report = calibrate_measured(base, rows[:10], kind="statistical", device="sim x2.5")
    assert new.target.backend == "external" and new.target.device_model == "sim x2.5"
    assert report.default_scale == pytest.approx(2.5, rel=0.05)
    assert report.after is not None and report.after.mape_pct < 3.0  # leave-one-out
    est = np.array([e.total_ms for e in estimate_many(graphs[10:], new, kind="statistical")])
    assert np.mean(np.abs(est / truth[10:] - 1)) < 0.03  # the 20 networks not used
    many, _ = calibrate_measured(base, rows[:25], kind="statistical")  # per-group factors from 20 on
    assert many.calibration is not None and "group" in many.calibration.method
    assert np.mean(np.abs(np.array([e.total_ms for e in estimate_many(graphs[25:], many, kind="statistical")])
                          / truth[25:] - 1)) < 0.03
    with pytest.raises(Exception, match="at least 3"):
        calibrate_measured(base, rows[:2])


def test_calibration_learns_how_kernel_time_grows_with_the_bytes_a_network_moves(sim_records: list[BenchRecord]) -> None:
    """Networks whose kernels run (MB moved / 10 MB) ** 0.05 times their estimate (colder caches the more data a
    network moves): from 24 timings spanning 30x in traffic the slope is recovered and the other networks are
    estimated within 1 %."""
    from annette.spaces.nb201 import graph_from_arch, sample_archs

    base, _ = fit_records(sim_records, kinds=("roofline", "statistical"), holdout=0.0)
    graphs = [graph_from_arch(a, batch=b) for a, b in zip(sample_archs(32, seed=7), [1, 2, 4, 8, 16, 32] * 6, strict=False)]
    bare = replace(base, overhead=replace(base.overhead, per_node_ms=0.0, per_run_ms=0.0))
    ests = estimate_many(graphs, bare, kind="statistical")
    traffic = np.array([e.traffic_mb for e in ests])
    assert traffic.max() / traffic.min() > 10
    nodes = np.array([e.n_executed for e in ests])
    truth = np.array([e.total_ms for e in ests]) * (traffic / 10.0) ** 0.05 + 0.002 * nodes + base.overhead.per_run_ms
    rows = [(g.name, g, float(t)) for g, t in zip(graphs, truth, strict=True)]
    new, report = calibrate_measured(base, rows[:24], kind="statistical")
    assert report.size_slope == pytest.approx(0.05, abs=0.0051)
    assert new.calibration is not None and new.calibration.size_slope == report.size_slope
    est = np.array([e.total_ms for e in estimate_many(graphs[24:], new, kind="statistical")])
    assert np.mean(np.abs(est / truth[24:] - 1)) < 0.01
    again = HardwareModel.from_dict(json.loads(json.dumps(new.to_dict())))  # the slope survives the bundle file
    assert [e.total_ms for e in estimate_many(graphs[24:], again, kind="statistical")] == list(est)
    flat, flat_report = calibrate_measured(base, rows[:24:6], kind="statistical")  # 4 timings: no slope
    assert flat_report.size_slope == 0.0 and flat.calibration is not None


def test_cli_calibrate_from_a_csv(sim_records: list[BenchRecord], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from annette.spaces.nb201 import sample_archs

    base, _ = fit_records(sim_records, kinds=("roofline",), holdout=0.0)
    base.save(tmp_path / "base.json")
    est = estimate_many([f"nb201:{a}" for a in sample_archs(6, seed=1)], base, kind="roofline")
    lines = ["model,latency_ms"] + [f"nb201:{a},{3 * e.total_ms}" for a, e in zip(sample_archs(6, seed=1), est, strict=True)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(app, ["calibrate", "--hw", str(tmp_path / "base.json"), "--measured", str(tmp_path / "t.csv"),
                                   "-o", str(tmp_path / "new.json"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["default_scale"] == pytest.approx(3.0, rel=0.1) and doc["after"]["mape_pct"] < doc["before"]["mape_pct"]
    (tmp_path / "bad.csv").write_text("model,latency_ms\nnb201:x,-1\n")
    res = CliRunner().invoke(app, ["calibrate", "--hw", str(tmp_path / "base.json"), "--measured", str(tmp_path / "bad.csv"),
                                   "-o", str(tmp_path / "x.json")])
    assert res.exit_code == 1 and "latency_ms" in res.output


def test_a_bundle_for_another_cpu_warns_once_and_says_so_in_json(sim_records: list[BenchRecord], tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, _ = fit_records(sim_records, kinds=("roofline",), holdout=0.0)
    other = Target("onnxruntime", "cpu", "Some Other CPU 9000", "onnxruntime", "0.0.1", "CPUExecutionProvider", 1, "fp32",
                   extra={"isa": "neon"})
    hw = replace(base, target=other)
    msg = target_mismatch(other)
    assert msg is not None and "Some Other CPU 9000" in msg and "neon" in msg and "0.0.1" in msg
    assert target_mismatch(replace(other, backend="external")) is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = estimate_many(["nb201:|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"], hw)
        estimate_many(["nb201:|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"], hw)
    assert sum(issubclass(w.category, TargetMismatchWarning) for w in caught) == 1
    assert first[0].warnings and first[0].to_dict()["warnings"] == list(first[0].warnings)
    hw.save(tmp_path / "other.json")
    res = CliRunner().invoke(app, ["estimate", "nb201:|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                                   "--hw", str(tmp_path / "other.json"), "--json"])
    assert res.exit_code == 0, res.output
    assert "Some Other CPU 9000" in json.loads(res.stdout)["warnings"][0]


@pytest.mark.slow
def test_build_end_to_end_on_the_simulated_backend(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "b"
    result = run_build(out, backend=SIM, budget_min=0.6, validate_n=4, networks_n=6)
    names = [s.name for s in result.stages]
    assert names == ["core", "context", "overhead", "cache", "refine", "fit", "networks", "validate"]
    hw = HardwareModel.load(result.bundle)
    assert hw.overhead.per_node_ms >= 0 and hw.overhead.per_run_ms >= 0
    v = hw.quality.validation
    assert v is not None and v.metrics.n == 4 and v.noise_floor.n == 4
    assert hw.provenance["build"]["command"].startswith("annette build --backend simulated")
    with pytest.raises(Exception, match="--resume"):
        run_build(out, backend=SIM, budget_min=0.2)


def test_hw_check_measures_the_validation_networks_again_and_finds_a_slower_machine(sim_records: list[BenchRecord], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from annette.build import validate
    from annette.drift import check_bundle
    from annette.errors import HardwareModelError

    base, _ = fit_records(sim_records, kinds=("roofline", "statistical"), holdout=0.0)
    with pytest.raises(HardwareModelError, match="no build validation"):
        check_bundle(base)
    record = validate(base, backend=SIM, backend_options={}, n=6, kind="statistical")
    assert record.drawn == 6 and record.measured_at and record.n >= 4
    hw = replace(base, quality=replace(base.quality, validation=record))
    hw = HardwareModel.from_dict(json.loads(json.dumps(hw.to_dict())))  # drawn and measured_at survive JSON
    assert hw.quality.validation == record
    same = check_bundle(hw)
    assert same.n == record.n and same.ratio == pytest.approx(1.0, abs=0.05) and same.same_speed
    assert same.now.mape_pct == pytest.approx(record.metrics.mape_pct, abs=2.0)
    assert "holds on this machine" in same.verdict()
    rows = [dict(r) for r in record.networks]
    rows[0]["measured_ms"], rows[1]["measured_ms"] = "12 ms", float("nan")  # a corrupt record: those rows skipped
    corrupt = replace(hw, quality=replace(hw.quality, validation=replace(record, networks=tuple(rows))))
    assert check_bundle(corrupt, rounds=1).n == record.n - 2
    slow = check_bundle(hw, backend_options={"scale": 1.6})  # the same CPU, 1.6x slower
    assert slow.ratio == pytest.approx(1.6, rel=0.05) and not slow.same_speed
    assert slow.ratio_q1 <= slow.ratio <= slow.ratio_q3
    assert slow.now.mean_signed_pct < -25  # estimates read low by about 1 - 1 / 1.6
    assert "runs slower" in slow.verdict() and "annette calibrate" in slow.verdict()
    path = tmp_path / "hw.json"
    hw.save(path)
    res = CliRunner().invoke(app, ["hw", "check", str(path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["holds"] and doc["same_speed"] and doc["n"] == record.n and len(doc["networks"]) == record.n
    base.save(tmp_path / "base.json")
    res = CliRunner().invoke(app, ["hw", "check", str(tmp_path / "base.json")])
    assert res.exit_code != 0 and "no build validation" in res.output and "Traceback" not in res.output
