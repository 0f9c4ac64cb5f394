"""``annette info/import/export`` through typer's CliRunner, and torch-free import of ONNX files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from typer.testing import CliRunner

from annette.cli.commands_graph import parse_input_shapes
from annette.cli.main import app
from annette.errors import ShapeError
from annette.graph.ir import Graph
from annette.importers import load_model, model_to_onnx

MakeOnnx = Callable[..., onnx.ModelProto]
runner = CliRunner()


@pytest.fixture
def cnn_file(make_onnx: MakeOnnx, tmp_path: Path) -> Path:
    w = np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["y"], name="flat"),
    ]
    path = tmp_path / "cnn.onnx"
    onnx.save(make_onnx(nodes, [("x", ["N", 3, "H", "W"])], [("y", ["N", 8])], {"w": w}), str(path))
    return path


def test_info_json_has_totals_and_layers(cnn_file: Path) -> None:
    result = runner.invoke(app, ["info", str(cnn_file), "--input-shape", "x=2,3,16,16", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["name"] == "test" and doc["n_layers"] == 4 and doc["n_zero_cost"] == 1
    assert [row["name"] for row in doc["layers"]] == ["conv", "relu", "gap", "flat"]
    assert doc["layers"][0]["output_shape"] == [2, 8, 16, 16]
    assert doc["totals"]["macs"] == 2 * 8 * 256 * 27
    assert doc["totals"]["params"] == 8 * 27
    assert doc["layers"][3]["zero_cost"] is True


def test_info_table_lists_layers_and_totals(cnn_file: Path) -> None:
    result = runner.invoke(app, ["info", str(cnn_file), "--input-shape", "x=1,3,8,8"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in ("conv", "GlobalAveragePool", "total", "MACs 13,824", "params 216"):
        assert text in result.stdout


def test_info_errors_are_one_line(cnn_file: Path, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["info", str(tmp_path / "none.onnx")])
    assert missing.exit_code == 1 and "ModelFileError" in missing.stderr and "Traceback" not in missing.stderr
    symbolic = runner.invoke(app, ["info", str(cnn_file)])
    assert symbolic.exit_code == 1 and "--input-shape" in symbolic.stderr
    bad = runner.invoke(app, ["info", str(cnn_file), "--input-shape", "x:1,2"])
    assert bad.exit_code == 1 and "NAME=D0,D1" in bad.stderr
    unknown = runner.invoke(app, ["info", "zoo:resnet"])
    assert unknown.exit_code == 1 and "torchvision" in unknown.stderr  # lists the valid schemes


def test_parse_input_shapes() -> None:
    assert parse_input_shapes(["x=1,3,224,224", "mask=1x5"]) == {"x": (1, 3, 224, 224), "mask": (1, 5)}
    assert parse_input_shapes(None) is None
    with pytest.raises(ShapeError):
        parse_input_shapes(["x=a,b"])


def test_import_writes_an_annette_graph(cnn_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "g.json"
    result = runner.invoke(app, ["import", str(cnn_file), "-o", str(out), "--input-shape", "x=1,3,8,8"])
    assert result.exit_code == 0, result.output
    graph = Graph.from_json(out)
    assert graph == load_model(cnn_file, input_shapes={"x": (1, 3, 8, 8)})
    assert load_model(out) == graph  # the JSON loads back through load_model as well


def test_export_sets_the_batch(cnn_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "b4.onnx"
    result = runner.invoke(app, ["export", str(cnn_file), "-o", str(out), "--batch", "4", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_nodes"] == 4
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4 and dims[2].dim_param == "H"
    assert model_to_onnx(cnn_file).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    no_onnx = runner.invoke(app, ["export", str(tmp_path / "sub.json"), "-o", str(out)])
    assert no_onnx.exit_code == 1


def test_nb201_spec_round_trip(tmp_path: Path) -> None:
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    graph = load_model(f"nb201:{arch}")
    out = tmp_path / "nb.onnx"
    assert runner.invoke(app, ["export", f"nb201:{arch}", "-o", str(out)]).exit_code == 0
    assert load_model(out, batch=1).layers == graph.layers


def test_onnx_import_and_accounting_do_not_import_torch(cnn_file: Path) -> None:
    code = (
        "import sys\n"
        "from annette.importers import load_model\n"
        "from annette.graph.accounting import account_graph\n"
        f"g = load_model({str(cnn_file)!r}, input_shapes={{'x': (1, 3, 8, 8)}})\n"
        "assert account_graph(g).total.macs > 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
