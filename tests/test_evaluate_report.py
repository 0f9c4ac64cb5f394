"""Study bookkeeping and reports on hand-made results (no runtime needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from annette.errors import AnnetteError
from annette.evaluate import metrics as M
from annette.evaluate.report import (
    ERROR_AXIS_CLIP_PCT,
    FUSED_BY_RUNTIME,
    best_kind,
    markdown_table,
    plot_error_by_type,
    target_warnings,
    write_report,
)
from annette.evaluate.study import (
    UNPROFILED,
    MeasurementLog,
    NetworkResult,
    RoundRecord,
    StudyResult,
    StudySettings,
    display_name,
    profiled_by_type,
    summarize,
    type_errors,
)
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.records import BenchRecord, Measurement, NodeProfile, Target

KINDS = ("roofline", "mixed")


def t(name: str, shape: tuple[int, ...] = (1, 4, 8, 8)) -> TensorSpec:
    return TensorSpec(name, shape)


def small_graph() -> Graph:
    return Graph(
        name="g",
        inputs=(t("x"),),
        layers=(
            Layer("conv", "Conv", (t("x"),), (t("c"),), (t("w", (4, 4, 3, 3)),)),
            Layer("relu", "Relu", (t("c"),), (t("r"),)),
            Layer("add", "Add", (t("r"), t("x")), (t("y"),)),
        ),
        outputs=("y",),
    ).validate()


def test_profiled_by_type_uses_first_covered_layer_and_marks_inserted() -> None:
    profile = (
        NodeProfile("fused", "FusedConv", 0.5, covers=("relu", "conv")),
        NodeProfile("add", "Add", 0.2, covers=("add",)),
        NodeProfile("reorder1", "ReorderInput", 0.05),
        NodeProfile("reorder2", "ReorderInput", 0.03),
    )
    got = profiled_by_type(profile, small_graph())
    assert got == pytest.approx({"Conv": 0.5, "Add": 0.2, "ReorderInput (inserted)": 0.08})


def net(
    name: str, measured: float, rounds: tuple[float, float], est: dict[str, float], **kw: object
) -> NetworkResult:
    return NetworkResult(
        name=name,
        spec=f"file:{name}",
        measured_ms=measured,
        rounds_ms=rounds,
        estimated_ms=est,
        unsupported={k: 0 for k in est},
        estimated_by_type=kw.get("est_types", {}),  # type: ignore[arg-type]
        profiled_by_type=kw.get("prof_types", {}),  # type: ignore[arg-type]
    )


def make_result() -> StudyResult:
    networks = (
        net(
            "a",
            1.0,
            (1.0, 1.1),
            {"roofline": 0.5, "mixed": 1.05},
            est_types={"roofline": {"Conv": 0.4, "Add": 0.1}, "mixed": {"Conv": 0.9, "Add": 0.15}},
            prof_types={"Conv": 0.8, "Add": 0.1, UNPROFILED: 0.1},
        ),
        net(
            "b",
            2.0,
            (2.0, 2.0),
            {"roofline": 1.0, "mixed": 1.9},
            est_types={"roofline": {"Conv": 1.0}, "mixed": {"Conv": 1.9}},
            prof_types={"Conv": 1.6, UNPROFILED: 0.4},
        ),
        net("c", 4.0, (4.0, 4.4), {"roofline": 2.0, "mixed": 4.4}),
    )
    overall, floor = summarize(networks, KINDS, rounds=2)
    return StudyResult(
        title="hand-made study",
        hw="test-hw",
        hw_target="simulated/cpu/fp32/b1/t1",
        measured_target={"runtime": "simulated", "runtime_version": "0"},
        label_statistic="min",
        settings=StudySettings(backend="simulated", rounds=2),
        kinds=KINDS,
        networks=networks,
        overall=overall,
        noise_floor=floor,
        by_type={k: type_errors(networks, k) for k in KINDS},
        failed={"file:broken": "BackendError: could not run"},
        metadata={"date": "2026-01-01T00:00:00+00:00", "cpu": "test CPU", "host": "h"},
    )


def test_summarize_and_type_errors_closed_form() -> None:
    r = make_result()
    # roofline estimates exactly half of every measurement.
    assert r.overall["roofline"].mape_pct == pytest.approx(50.0)
    assert r.overall["roofline"].spearman == pytest.approx(1.0)
    # mixed: +5 %, -5 %, +10 %.
    assert r.overall["mixed"].mape_pct == pytest.approx((5 + 5 + 10) / 3)
    assert r.overall["mixed"].within5_pct == pytest.approx(200 / 3)
    # Noise floor: round 1 (1, 2, 4) vs round 2 (1.1, 2, 4.4) -> errors 10 %, 0, 10 %.
    assert r.noise_floor is not None
    assert r.noise_floor.mape_pct == pytest.approx(20 / 3)
    assert best_kind(r) == "mixed"
    conv = r.by_type["mixed"]["Conv"]
    assert conv["estimated_ms"] == pytest.approx(2.8) and conv["profiled_ms"] == pytest.approx(2.4)
    assert conv["error_pct"] == pytest.approx(0.4 / 2.4 * 100)
    assert conv["mape_pct"] == pytest.approx((0.1 / 0.8 + 0.3 / 1.6) / 2 * 100)
    assert conv["networks"] == 2
    assert UNPROFILED not in r.by_type["mixed"]  # overhead is not a layer type


def test_write_report_files_and_numbers(tmp_path: Path) -> None:
    r = make_result()
    files = write_report(r, tmp_path / "rep")
    data = json.loads(files.results.read_text())
    assert data["schema"] == "annette.evaluate.results"
    assert data["overall"]["mixed"]["mape_pct"] == pytest.approx(r.overall["mixed"].mape_pct)
    assert data["networks"][0]["error_pct"]["roofline"] == pytest.approx(-50.0)
    assert data["failed"] == {"file:broken": "BackendError: could not run"}
    assert {p.name for p in files.plots} == {  # no ranking plot of 3 networks
        "estimated_vs_measured.png",
        "layer_breakdown.png",
        "error_by_type.png",
    }
    for p in files.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files.html.read_text()
    assert page.count("data:image/png;base64,") == 3 and "hand-made study" in page
    summary = files.summary.read_text()
    assert markdown_table(r) in summary and "file:broken" in summary
    assert "| mixed | 3 | 6.67 |" in markdown_table(r)
    assert "| noise floor (round 1 vs 2) | 3 | 6.67 |" in markdown_table(r)


def test_report_with_undefined_correlation_is_strict_json(tmp_path: Path) -> None:
    networks = (net("only", 1.0, (1.0, 1.0), {"roofline": 1.2}),)
    overall, floor = summarize(networks, ("roofline",), rounds=2)
    assert math.isnan(overall["roofline"].spearman)
    r = StudyResult(
        "one", "hw", "k", {}, "min", StudySettings(rounds=2), ("roofline",), networks, overall, floor, {}, {}
    )
    files = write_report(r, tmp_path)
    assert json.loads(files.results.read_text())["overall"]["roofline"]["spearman"] is None
    assert "n/a" in files.summary.read_text()


def record(config: str, label: float) -> BenchRecord:
    target = Target("simulated", "cpu", "test", "simulated", "0", "sim", 1, "fp32")
    m = Measurement((label, label * 1.1), 1, label, label * 1.05, label)
    return BenchRecord(config, "network", "f", {}, target, "ok", measurement=m)


def test_measurement_log_resume_filters_settings_and_survives_truncation(tmp_path: Path) -> None:
    log = MeasurementLog(tmp_path / "m.jsonl")
    assert log.load("k1") == {}
    log.append(RoundRecord("a", 0, "k1", record("ca", 1.0)))
    log.append(RoundRecord("a", 1, "k1", record("ca", 1.2)))
    log.append(RoundRecord("a", 0, "k2", record("ca", 9.0)))
    got = log.load("k1")
    assert set(got) == {("a", 0), ("a", 1)}
    assert got[("a", 1)].record.measurement is not None
    assert got[("a", 1)].record.measurement.label_ms == 1.2
    with log.path.open("a") as fh:
        fh.write('{"spec": "a", "round": 2, "sett')  # interrupted write
    assert set(log.load("k1")) == {("a", 0), ("a", 1)}
    log.append(RoundRecord("a", 2, "k1", record("ca", 1.3)))  # starts on a fresh line
    assert set(log.load("k1")) == {("a", 0), ("a", 1), ("a", 2)}
    with log.path.open("a") as fh:
        fh.write(json.dumps({"spec": "b"}) + "\n")
    with pytest.raises(AnnetteError, match="m.jsonl:6"):
        log.load("k1")


def test_settings_key_and_display_names() -> None:
    assert StudySettings(rounds=1).key == StudySettings(rounds=5, seed=3).key  # rounds don't change a sample
    assert StudySettings(threads=1).key != StudySettings(threads=2).key
    assert display_name("torchvision:resnet18") == "resnet18"
    assert display_name("models/net.onnx") == "net"
    assert display_name("nb201:|none~0|+|none~0|none~1|+|none~0|none~1|none~2|") == "nb201-00000"
    assert M.compute_metrics([1.0], [1.0]).n == 1


# -- issue 14, item 8: the report leads with the answer and explains itself ----------------------------------
def _with(r: StudyResult, **changes: object) -> StudyResult:
    import dataclasses

    return dataclasses.replace(r, **changes)  # type: ignore[arg-type]


def test_summary_leads_with_networks_and_explains_flags(tmp_path: Path) -> None:
    r = make_result()
    flagged = (dataclasses_replace(r.networks[0], flags=("outliers", "slow_first_run")), *r.networks[1:])
    files = write_report(_with(r, networks=flagged), tmp_path)
    summary = files.summary.read_text()
    assert summary.index("## Per network") < summary.index("## Overall")
    assert "| a | 1.000 | 1.000 / 1.100 | 0.500 (-50.0 %) | 1.050 (+5.0 %) | 0 | outliers, slow_first_run |" in summary
    assert "outliers: some samples lie far from the others" in summary
    assert "slow_first_run: the first warm-up call" in summary
    page = files.html.read_text()
    assert page.index("Per network") < page.index("<h2>Overall</h2>") and "modified z-score" in page


def dataclasses_replace(obj: object, **changes: object) -> NetworkResult:
    import dataclasses

    return dataclasses.replace(obj, **changes)  # type: ignore[type-var, return-value]


def test_types_the_runtime_fused_are_named_not_na(tmp_path: Path) -> None:
    r = make_result()  # Add is estimated in "a" and profiled there; add one only the estimate has
    nets = (dataclasses_replace(r.networks[0], estimated_by_type={
        k: {**v, "BatchNormalization": 0.05} for k, v in r.networks[0].estimated_by_type.items()}), *r.networks[1:])
    r = _with(r, networks=nets, by_type={k: type_errors(nets, k) for k in KINDS})
    assert r.by_type["mixed"]["BatchNormalization"]["profiled_ms"] == 0
    summary = write_report(r, tmp_path).summary.read_text()
    line = next(x for x in summary.splitlines() if x.startswith("| BatchNormalization |"))
    assert FUSED_BY_RUNTIME in line and "n/a" not in line


def test_error_axis_is_clipped_with_the_value_printed() -> None:
    r = make_result()
    by_type = {k: {**v, "Add": {**v["Add"], "error_pct": 900.0}} for k, v in r.by_type.items()}
    fig = plot_error_by_type(_with(r, by_type=by_type))
    assert fig is not None
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert hi < 200 and lo > -200  # the other types stay readable
    assert any(t.get_text() == "+900 %" for t in ax.texts)
    assert "clipped at ±150 %" in ax.get_xlabel()
    assert max(abs(p.get_width()) for p in ax.patches) <= ERROR_AXIS_CLIP_PCT


def test_ranking_plot_only_from_five_networks(tmp_path: Path) -> None:
    r = make_result()
    nets = tuple(
        net(f"n{i}", 1.0 + i, (1.0 + i, 1.0 + i), {"roofline": 0.5 + i, "mixed": 1.1 + i}) for i in range(5)
    )
    overall, floor = summarize(nets, KINDS, rounds=2)
    files = write_report(_with(r, networks=nets, overall=overall, noise_floor=floor), tmp_path)
    assert "ranking.png" in {p.name for p in files.plots}


def test_hardware_model_target_beside_the_measured_one_with_warnings(tmp_path: Path) -> None:
    hw = {"device_model": "Intel Xeon", "runtime": "onnxruntime", "runtime_version": "1.32.0", "threads": 1,
          "precision": "fp32", "extra": {"isa": "avx2,avx512f"}}
    same = _with(make_result(), hw_target_info=hw, measured_target=dict(hw),
                 metadata={"loadavg": [0.2, 0.2, 0.2], "cpu_count": 2})
    assert target_warnings(same) == []
    other = _with(same, measured_target={**hw, "device_model": "AMD EPYC", "extra": {"isa": "avx2"}},
                  metadata={"loadavg": [3.5, 2.0, 1.0], "cpu_count": 2})
    warnings = target_warnings(other)
    assert any("CPU Intel Xeon" in w and "AMD EPYC" in w for w in warnings)
    assert any("ISA avx2,avx512f" in w for w in warnings)
    assert any("load average was 3.50 on 2" in w for w in warnings)
    summary = write_report(other, tmp_path).summary.read_text()
    assert "| ISA | avx2,avx512f | avx2 |" in summary and summary.count("**Warning:**") == 3
