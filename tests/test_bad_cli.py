"""The CLI on bad input: exit 1 and one line on stderr naming the problem, never a traceback; --json output is
strict JSON; error lines are not wrapped when stderr is not a terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwsynth

NB201 = "nb201:|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def annette(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "annette.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout[-500:], res.stderr[-2000:])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    out: dict[str, Path] = {}
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "H", 8])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "m", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    out["onnx"] = d / "m.onnx"
    out["onnx"].write_bytes(model.SerializeToString())
    w = numpy_helper.from_array(np.ones((1,), np.float32), "w")
    bad_name = helper.make_model(
        helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"], name="n")], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w]),
        opset_imports=[helper.make_opsetid("", 17)])
    data = bad_name.SerializeToString().replace(b"\x1a\x01n", b"\x1a\x01\xff")  # node name: an invalid UTF-8 byte
    out["latin_node"] = d / "latin.onnx"
    out["latin_node"].write_bytes(data)
    b = hwsynth.Builder("net", (1, 4, 8, 8))
    doc = b.graph(b.relu(b.conv(b.input, 4))).to_dict()
    doc["layers"][0]["attrs"]["group"] = 0
    out["group0"] = d / "group0.json"
    out["group0"].write_text(json.dumps(doc))
    out["deep"] = d / "deep.json"
    out["deep"].write_text("[" * 200_000 + "]" * 200_000)
    out["latin_csv"] = d / "latin.csv"
    out["latin_csv"].write_bytes(b"kind,batch\n\xe9\xff\n")
    legacy = {"name": "leg", "layers": {
        "data": {"type": "DataInput", "parents": [], "children": ["fc"], "output_shape": [1, 16]},
        "fc": {"type": "FullyConnected", "parents": ["data"], "children": ["t"], "output_shape": [1, 8]},
        "t": {"type": "Transpose", "parents": ["fc"], "children": [], "output_shape": [1, 8], "perm": [0, 5]}}}
    out["legacy"] = d / "legacy.json"
    out["legacy"].write_text(json.dumps(legacy))
    out["file"] = d / "a_file"
    out["file"].write_text("x")
    out["dir"] = d / "a_dir"
    out["dir"].mkdir()
    return out


CASES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "input dim too large": (lambda f: ["info", str(f["onnx"]), "--input-shape", "x=1,3,99999999999999999999,8"],
                            ("ShapeError", "up to 2147483647")),
    "nb201 batch -1": (lambda f: ["info", NB201, "--batch", "-1"], ("ShapeError", "batch must be a positive")),
    "nb201 batch 0": (lambda f: ["info", NB201, "--batch", "0"], ("ShapeError", "got 0")),
    "conv group 0": (lambda f: ["info", str(f["group0"])], ("group must be a positive integer", "group0.json")),
    "deep model json": (lambda f: ["info", str(f["deep"])], ("nested too deeply",)),
    "deep hw json": (lambda f: ["estimate", NB201, "--hw", str(f["deep"])], ("HardwareModelError", "nested too deeply")),
    "legacy perm": (lambda f: ["info", str(f["legacy"])], ("legacy.json",)),
    "non-UTF-8 csv": (lambda f: ["bench", "import", str(f["latin_csv"]), "--out", str(f["dir"].parent / "s1")],
                      ("not a UTF-8 CSV table",)),
    "non-UTF-8 node name": (lambda f: ["info", str(f["latin_node"])], ("latin.onnx",)),
    "-o a directory": (lambda f: ["import", NB201, "-o", str(f["dir"])], ("a_dir",)),
    "-o under a file": (lambda f: ["import", NB201, "-o", str(f["file"] / "g.json")], ("a_file",)),
    "-o a full disk": (lambda f: ["import", NB201, "-o", "/dev/full"], ("No space left on device",)),
    "measure --opt bogus": (lambda f: ["measure", NB201, "--backend", "onnxruntime", "--opt", "bogus=1"],
                            ("has no option(s) bogus",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line(files: dict[str, Path], case: str) -> None:
    args, needles = CASES[case]
    if case == "-o a full disk" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    one_line_error(annette(*args(files)), *needles)


def test_error_lines_are_not_wrapped_when_piped(tmp_path: Path) -> None:
    """Before: the stderr console had no width, so rich wrapped error lines at 80 columns in logs and CI."""
    deep = tmp_path / ("a_rather_long_folder_name_" * 6)
    line = one_line_error(annette("info", str(deep / "model_with_a_long_name.onnx")))
    assert str(deep / "model_with_a_long_name.onnx") in line and len(line) > 160


def test_json_output_is_strict_json(tmp_path: Path) -> None:
    """A layer whose ops cannot be counted has NaN flops/bytes: --json writes null and says why in the row."""
    g = {"schema": "annette.graph", "schema_version": 1, "name": "fft", "metadata": {}, "outputs": ["y"],
         "inputs": [{"name": "x", "shape": [1, 8, 2], "dtype": "float32"}],
         "layers": [{"name": "fourier", "op": "DFT", "inputs": [{"name": "x", "shape": [1, 8, 2], "dtype": "float32"}],
                     "outputs": [{"name": "y", "shape": [1, 8, 2], "dtype": "float32"}], "weights": [], "attrs": {}}]}
    path = tmp_path / "fft.json"
    path.write_text(json.dumps(g))
    res = annette("estimate", str(path), "--hw", "annette-dnndk", "--kind", "roofline", "--json")
    assert res.returncode == 0, res.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} in --json output")

    doc = json.loads(res.stdout, parse_constant=refuse)
    row = doc["layers"][0]
    assert row["flops"] is None and "null_reasons" in row and "cannot account" in row["null_reasons"]["flops"]


def test_finite_json_unit() -> None:
    from annette.cli.common import finite_json

    out = finite_json({"a": float("nan"), "b": [1.0, float("inf")], "c": {"note": "why", "t": float("-inf")}})
    assert out == {"a": None, "null_reasons": {"a": "nan is not a JSON number"}, "b": [1.0, None],
                   "c": {"note": "why", "t": None, "null_reasons": {"t": "-inf is not a JSON number: why"}}}
