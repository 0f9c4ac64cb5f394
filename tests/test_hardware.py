"""The hardware-model bundle: JSON round trip, load errors that name what is wrong, shipped registry, CLI."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import hwsynth
from annette.errors import HardwareModelError
from annette.fit import fit_records
from annette.hardware import SHIPPED, HardwareModel
from annette.quality import Accuracy, BundleQuality, MeasuredStudy


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    hw, _ = fit_records(hwsynth.campaign(n_conv=20), kinds=("roofline", "statistical"), holdout=0.0)
    return hw.to_dict()


def write(tmp_path: Path, doc: Any, name: str = "hw.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return p


def test_round_trip_is_exact(bundle: dict[str, Any], tmp_path: Path) -> None:
    hw = HardwareModel.load(write(tmp_path, bundle))
    assert hw.to_dict() == json.loads(json.dumps(bundle))
    assert hw.kinds == ("roofline", "statistical") and "Conv" in hw.types
    assert hw.target.key == hwsynth.TARGET.key and hw.overhead.per_node_ms == pytest.approx(hwsynth.NODE_MS)


def broken(bundle: dict[str, Any], path: tuple[str, ...], value: Any = None, delete: bool = False) -> dict[str, Any]:
    doc = copy.deepcopy(bundle)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "delete", "message"),
    [
        (("schema",), "annette.graph", False, "not a hardware model"),
        (("schema_version",), 99, False, "schema version 99 is not supported"),
        (("mapping",), None, True, "lacks mapping"),
        (("layer_models",), None, True, "lacks layer_models"),
        (("target", "runtime"), None, True, "target.runtime"),
        (("features", "names"), ["flops", "warp_occupancy"], False, "does not extract.*warp_occupancy"),
        (("features", "names"), ["flops"], False, "other feature names"),
        (("layer_models", "Conv", "roofline", "kind"), "cubic", False, "Conv/roofline"),
        (("layer_models", "Conv", "roofline", "learned"), {}, False, "Conv/roofline"),
        (("layer_models", "Conv", "statistical", "learned", "lightgbm_model"), "import os", False, "LightGBM"),
        (("layer_models", "Conv", "roofline", "feature_names"), ["flops"], False, "other feature names|roof columns"),
        (("fallbacks",), {"Softmax": "Nope"}, False, "Softmax"),
        (("mapping", "schema_version"), 7, False, "mapping rules schema version 7"),
        (("quality", "layer_quality", 0, "n_test"), "many", False, r"quality.layer_quality\[0\].n_test"),
        (("quality", "overhead"), None, True, "quality lacks the fit's overhead"),
        (("quality", "measured"), {"zoo": {"title": "t"}}, False, "quality.measured.zoo.date"),
    ],
)
def test_load_errors_name_what_is_wrong(
    bundle: dict[str, Any], tmp_path: Path, path: tuple[str, ...], value: Any, delete: bool, message: str
) -> None:
    with pytest.raises(HardwareModelError, match=message):
        HardwareModel.load(write(tmp_path, broken(bundle, path, value, delete)))


@pytest.mark.parametrize("name", SHIPPED.names())
def test_shipped_quality_reads_and_writes_the_same_json(name: str) -> None:
    doc = json.loads(SHIPPED.get(name).read_text(encoding="utf-8"))
    quality = BundleQuality.from_dict(doc["quality"])
    assert json.dumps(quality.to_dict()) == json.dumps(doc["quality"])  # keys, order, ints and floats alike
    assert quality.fit is not None or quality.note
    if quality.fit is not None:
        assert quality.fit.layer_quality and set(quality.end_to_end) <= {"roofline", "refined", "statistical", "mixed"}


def test_quality_keeps_what_it_does_not_know_and_records_studies(bundle: dict[str, Any]) -> None:
    doc = {**bundle["quality"], "reviewed_by": {"who": "x"}}
    quality = BundleQuality.from_dict(doc)
    assert quality.to_dict() == doc and quality.extra == {"reviewed_by": {"who": "x"}}
    metrics = {"n": 3, "mape_pct": 12.5, "rmspe_pct": 14.0, "max_ape_pct": 20.0, "within5_pct": 0.0,
               "within10_pct": 33.3, "mean_signed_pct": 1.0, "spearman": None, "kendall": 1}
    results = {"title": "zoo", "metadata": {"date": "2026-01-02T03:04:05", "cpu": "c", "loadavg": [0.5, 1, 2]},
               "settings": {"rounds": 3}, "label_statistic": "min", "overall": {"mixed": metrics},
               "noise_floor": metrics}
    study = MeasuredStudy.from_results(results)
    assert study.kinds["mixed"].to_dict() == {"n": 3, "mape_pct": 12.5, "within10_pct": 33.3, "spearman": None,
                                              "kendall": 1}
    again = BundleQuality.from_dict(quality.with_study("zoo", study).to_dict())
    assert again.measured["zoo"] == study and again.fit == quality.fit
    assert Accuracy.from_dict(metrics).to_dict() == metrics  # all nine figures where a record has them


def test_unreadable_files_and_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(HardwareModelError, match="not valid|cannot read"):
        HardwareModel.load(write(tmp_path, "{not json"))
    with pytest.raises(HardwareModelError, match="expected a JSON object"):
        HardwareModel.load(write(tmp_path, [1, 2]))
    with pytest.raises(HardwareModelError, match="neither a file nor a shipped model; shipped:"):
        HardwareModel.load("no-such-target")


def test_runtime_version_mismatch_is_named(bundle: dict[str, Any], tmp_path: Path) -> None:
    from annette.hardware import target_mismatch

    doc = broken(bundle, ("target", "runtime"), "numpy")  # an installed package, surely not at version "1.0"
    hw = HardwareModel.load(write(tmp_path, doc))
    local = replace(hw.target, backend="onnxruntime", device="cpu")
    assert "numpy 1.0 (installed: " in str(target_mismatch(local))


def test_shipped_registry_points_at_bundled_files() -> None:
    for name in SHIPPED.names():
        path = SHIPPED.get(name)
        assert path.suffix == ".json" and path.parent.name == "hw" and path.is_file()


def test_cli_estimate_and_hw_list(bundle: dict[str, Any], tmp_path: Path) -> None:
    from annette.cli.main import app

    hw_path = write(tmp_path, bundle)
    b = hwsynth.Builder("cli_net", (1, 8, 16, 16))
    graph_path = tmp_path / "net.json"
    b.graph(b.relu(b.gemm(b.flatten(b.maxpool(b.relu(b.conv(b.input, 16)))), 10))).to_json(graph_path)
    runner = CliRunner()
    res = runner.invoke(app, ["estimate", str(graph_path), "--hw", str(hw_path), "--kind", "statistical", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "statistical" and doc["total_ms"] > 0 and doc["unsupported"] == []
    assert [x["type"] for x in doc["layers"]][:3] == ["ReorderInput", "Conv+Relu", "ReorderOutput"]
    assert doc["removed"] == ["flatten_3"]
    res = runner.invoke(app, ["estimate", str(graph_path), "--hw", str(hw_path)])
    assert res.exit_code == 0 and "total" in res.stdout
    res = runner.invoke(app, ["estimate", str(graph_path), "--hw", str(tmp_path / "missing.json")])
    assert res.exit_code == 1 and "HardwareModelError" in res.output
    res = runner.invoke(app, ["hw", "list", "--json"])
    assert res.exit_code == 0 and [r["name"] for r in json.loads(res.stdout)] == SHIPPED.names()


def test_another_cpu_under_the_same_model_name_is_named(bundle: dict[str, Any], tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """VMs name CPUs of different generations alike ("AMD EPYC"): the recorded identity tells them apart."""
    from annette.backends import base
    from annette.hardware import target_mismatch

    monkeypatch.setattr(base, "cpu_model", lambda: "AMD EPYC")
    monkeypatch.setattr(base, "cpu_isa", lambda: "avx2")
    monkeypatch.setattr(base, "cpu_id", lambda: "AuthenticAMD 25/17/1 1024 KB")
    hw = HardwareModel.load(write(tmp_path, bundle))
    import onnxruntime

    same = replace(hw.target, backend="onnxruntime", device="cpu", device_model="AMD EPYC", runtime="onnxruntime",
                   runtime_version=onnxruntime.__version__, threads=1,
                   extra={"isa": "avx2", "cpu_id": "AuthenticAMD 25/17/1 1024 KB"})
    assert target_mismatch(same) is None
    other = replace(same, extra={"isa": "avx2", "cpu_id": "AuthenticAMD 26/2/0 1024 KB"})
    assert "CPU 'AuthenticAMD 26/2/0 1024 KB' (this machine: 'AuthenticAMD 25/17/1 1024 KB')" in str(target_mismatch(other))
    unrecorded = replace(same, extra={"isa": "avx2"})
    assert "unrecorded identity" in str(target_mismatch(unrecorded))
