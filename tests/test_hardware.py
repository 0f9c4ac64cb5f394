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
    ],
)
def test_load_errors_name_what_is_wrong(
    bundle: dict[str, Any], tmp_path: Path, path: tuple[str, ...], value: Any, delete: bool, message: str
) -> None:
    with pytest.raises(HardwareModelError, match=message):
        HardwareModel.load(write(tmp_path, broken(bundle, path, value, delete)))


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
