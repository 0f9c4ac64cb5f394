"""Every shipped bundle of foreign origin loads, is listed by ``annette hw list`` and estimates a small CNN
(with the ops torchvision networks use) completely, with a finite positive total."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper
from typer.testing import CliRunner

from annette.cli.main import app
from annette.estimate import estimate
from annette.graph.ir import Graph
from annette.hardware import SHIPPED, HardwareModel
from annette.importers.onnx import graph_from_onnx

BUNDLES = ("annette-dnndk", "annette-ncs2", "h200-torch-eager-fp16", "h200-torch-eager-fp32")


def _w(*shape: int) -> np.ndarray:
    return np.full(shape, 0.1, dtype=np.float32)


def small_cnn(make_onnx: Callable[..., onnx.ModelProto]) -> Graph:
    """Conv-BN-Relu-MaxPool, depthwise Conv-Clip, 1x1 Conv, residual Add, x·sigmoid(x), Concat, global pool,
    Flatten, Gemm, Softmax, Reshape: the op mix of torchvision CNNs."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c1", "s", "b", "m", "v"], ["bn1"], name="bn1"),
        n("Relu", ["bn1"], ["r1"], name="relu1"),
        n("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "wdw"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=8),
        n("Clip", ["c2", "lo", "hi"], ["r2"], name="relu6"),
        n("Conv", ["r2", "w3", "b3"], ["c3"], name="pw"),
        n("Add", ["c3", "p1"], ["a"], name="add"),
        n("Sigmoid", ["a"], ["sg"], name="sigmoid"),
        n("Mul", ["a", "sg"], ["silu"], name="mul"),
        n("Concat", ["silu", "a"], ["cat"], name="concat", axis=1),
        n("GlobalAveragePool", ["cat"], ["gp"], name="gap"),
        n("Flatten", ["gp"], ["f"], name="flatten", axis=1),
        n("Gemm", ["f", "wfc", "bfc"], ["fc"], name="fc", transB=1),
        n("Softmax", ["fc"], ["sm"], name="softmax", axis=1),
        n("Reshape", ["sm", "shape"], ["y"], name="reshape"),
    ]
    init = {
        "w1": _w(8, 3, 3, 3), "s": _w(8), "b": _w(8), "m": _w(8), "v": _w(8) + 1,
        "wdw": _w(8, 1, 3, 3), "lo": np.float32(0.0), "hi": np.float32(6.0), "w3": _w(8, 8, 1, 1), "b3": _w(8),
        "wfc": _w(10, 16), "bfc": _w(10), "shape": np.array([1, 10, 1], dtype=np.int64),
    }  # fmt: skip
    return graph_from_onnx(make_onnx(nodes, [("x", [1, 3, 32, 32])], ["y"], init, name="small_cnn"))


@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_loads_and_estimates_small_cnn(name: str, make_onnx: Callable[..., onnx.ModelProto]) -> None:
    assert name in SHIPPED
    hw = HardwareModel.load(name)
    assert hw.name == name and hw.default_type is not None and hw.element_bits is not None
    assert hw.provenance, "a shipped bundle records where it comes from"
    graph = small_cnn(make_onnx)
    for kind in hw.kinds:
        est = estimate(graph, hw, kind=kind, strict=True, allow_generic=True)  # guesses counted, not refused
        assert est.n_unsupported == 0
        assert math.isfinite(est.total_ms) and est.total_ms > 0
        assert all(layer.time_ms is not None and layer.time_ms > 0 for layer in est.layers)
        assert math.isclose(sum(layer.time_ms or 0.0 for layer in est.layers), est.total_ms, rel_tol=1e-9)


def test_hw_list_shows_the_shipped_bundles() -> None:
    result = CliRunner().invoke(app, ["hw", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    for name in BUNDLES:
        assert name in rows
        assert rows[name]["n_types"] > 5
    assert rows["annette-dnndk"]["kinds"] == ["roofline", "refined"]
    assert rows["h200-torch-eager-fp16"]["kinds"] == ["roofline", "refined", "statistical", "mixed"]
