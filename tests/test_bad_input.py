"""Every kind of bad input gets its own, named error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from annette.errors import (
    AnnetteError,
    DuplicateNameError,
    GraphValidationError,
    InsufficientDataError,
    InvalidOptionError,
    ModelFileError,
    ShapeError,
    UnknownNameError,
    UnsupportedOperatorError,
)
from annette.graph.accounting import account_graph
from annette.importers.onnx import graph_from_onnx

MakeOnnx = Callable[..., onnx.ModelProto]


def conv_model(make_onnx: MakeOnnx) -> onnx.ModelProto:
    w = np.random.default_rng(0).normal(size=(16, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return make_onnx(nodes, [("x", [1, 3, 8, 8])], ["y"], {"w": w})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        graph_from_onnx(tmp_path / "nope.onnx")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(make_onnx: MakeOnnx, tmp_path: Path, fraction: float) -> None:
    data = conv_model(make_onnx).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFileError, match="cut.onnx"):
        graph_from_onnx(path)


def test_random_bytes_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFileError):
        graph_from_onnx(path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        graph_from_onnx(empty)
    with pytest.raises(ModelFileError):
        graph_from_onnx(b"\x00\xff" * 100)


def test_unknown_operator_names_node_and_op(make_onnx: MakeOnnx) -> None:
    nodes = [helper.make_node("FrobnicateAll", ["x"], ["y"], name="weird_node")]
    with pytest.raises(UnsupportedOperatorError, match=r"weird_node.*FrobnicateAll"):
        graph_from_onnx(make_onnx(nodes, [("x", [1, 4])], [("y", [1, 4])]))


def test_foreign_domain_and_op_newer_than_opset(make_onnx: MakeOnnx) -> None:
    custom = [helper.make_node("FusedGemm", ["x"], ["y"], name="ms_node", domain="com.microsoft")]
    model = make_onnx(custom, [("x", [1, 4])], [("y", [1, 4])])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOperatorError, match=r"ms_node.*com.microsoft"):
        graph_from_onnx(model)
    gelu = [helper.make_node("Gelu", ["x"], ["y"], name="gelu")]
    with pytest.raises(UnsupportedOperatorError, match=r"gelu.*opset 17"):
        graph_from_onnx(make_onnx(gelu, [("x", [1, 4])], [("y", [1, 4])], opset=17))


def test_cycle_names_layers(make_onnx: MakeOnnx) -> None:
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="first"),
        helper.make_node("Relu", ["a"], ["b"], name="second"),
        helper.make_node("Relu", ["a"], ["y"], name="out"),
    ]
    with pytest.raises(GraphValidationError, match=r"cycle.*first.*second"):
        graph_from_onnx(make_onnx(nodes, [("x", [1, 4])], [("y", [1, 4])]))


def test_dangling_edge_names_node_and_tensor(make_onnx: MakeOnnx) -> None:
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")]
    with pytest.raises(GraphValidationError, match=r"adder.*ghost.*dangling"):
        graph_from_onnx(make_onnx(nodes, [("x", [1, 4])], [("y", [1, 4])]))


def test_missing_shapes_and_bad_overrides(make_onnx: MakeOnnx) -> None:
    model = make_onnx([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", [1, "C"])], [("y", [1, "C"])])
    with pytest.raises(ShapeError, match=r"'x'.*--input-shape"):
        graph_from_onnx(model)
    with pytest.raises(UnknownNameError, match=r"'nope'.*inputs: x"):
        graph_from_onnx(model, input_shapes={"nope": (1, 2)})
    with pytest.raises(ShapeError, match="positive"):
        graph_from_onnx(model, input_shapes={"x": (1, 0)})
    with pytest.raises(ShapeError, match="batch"):
        graph_from_onnx(model, batch=0)
    no_shape = make_onnx([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", [1, 2])], [("y", [1, 2])])
    no_shape.graph.input[0].type.tensor_type.ClearField("shape")
    no_shape.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    with pytest.raises((ShapeError, ModelFileError)):
        graph_from_onnx(no_shape)


def test_shape_inference_conflict_is_a_shape_error(make_onnx: MakeOnnx) -> None:
    w = np.zeros((4, 5), np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    with pytest.raises(ShapeError):
        graph_from_onnx(make_onnx(nodes, [("x", [2, 3])], [("y", [2, 5])], {"w": w}))


def test_unaccountable_op_is_reported_not_dropped(make_onnx: MakeOnnx) -> None:
    nodes = [helper.make_node("DFT", ["x"], ["y"], name="fourier")]
    g = graph_from_onnx(make_onnx(nodes, [("x", [1, 8, 1])], ["y"]))
    with pytest.raises(UnsupportedOperatorError, match=r"fourier.*DFT"):
        account_graph(g)


def test_bad_arguments_get_concrete_errors_that_keep_their_bases() -> None:
    from annette.evaluate.metrics import accuracy_within, mape
    from annette.registry import Registry
    from annette.stats import percentile

    registry: Registry[int] = Registry("thing")
    registry.register("a", 1)
    with pytest.raises(DuplicateNameError, match="thing 'a' is already registered"):
        registry.register("a", 2)
    # what raised ValueError before still is one (callers catching it keep working), and an annette error now
    with pytest.raises(InvalidOptionError, match="differ in length: 2 vs 1") as bad:
        mape([1.0, 2.0], [1.0])
    assert isinstance(bad.value, ValueError) and isinstance(bad.value, AnnetteError)
    with pytest.raises(InvalidOptionError, match="tolerance must be >= 0"):
        accuracy_within([1.0], [1.0], -0.1)
    with pytest.raises(InsufficientDataError, match="percentile of no samples") as few:
        percentile([], 50)
    assert isinstance(few.value, ValueError)
