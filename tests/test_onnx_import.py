"""ONNX import of hand-built models: folding, attributes, shapes, overrides, opsets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from annette.errors import ShapeError
from annette.graph.accounting import account_graph
from annette.importers.onnx import graph_from_onnx

MakeOnnx = Callable[..., onnx.ModelProto]
rng = np.random.default_rng(0)


def f32(*shape: int) -> np.ndarray:
    return rng.normal(size=shape).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def small_cnn(make_onnx: MakeOnnx, opset: int, batch: int | str = 1) -> onnx.ModelProto:
    """conv -> relu -> maxpool -> flatten (via Shape/Gather/Concat/Reshape) -> gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["nu"], name="unsq")
        if opset >= 13 else helper.make_node("Unsqueeze", ["n"], ["nu"], name="unsq", axes=[0]),
        helper.make_node("Concat", ["nu", "m1"], ["tgt"], name="concat", axis=0),
        helper.make_node("Reshape", ["p", "tgt"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    init = {"w": f32(8, 3, 3, 3), "b": f32(8), "zero": np.array(0, np.int64), "m1": i64(-1),
            "fw": f32(10, 8 * 4 * 4), "fb": f32(10)}
    if opset >= 13:
        init["ax0"] = i64(0)
    return make_onnx(nodes, [("x", [batch, 3, 8, 8])], [("y", [batch, 10])], init, opset=opset)


@pytest.mark.parametrize("opset", [11, 13, 17, 20])
def test_small_cnn_imports_with_folding_and_names(make_onnx: MakeOnnx, opset: int) -> None:
    g = graph_from_onnx(small_cnn(make_onnx, opset))
    assert [layer.name for layer in g.layers] == ["conv1", "relu1", "pool1", "flatten", "fc"]
    conv = g.layer("conv1")
    assert conv.input.shape == (1, 3, 8, 8) and conv.output.shape == (1, 8, 8, 8)
    assert [w.shape for w in conv.weights] == [(8, 3, 3, 3), (8,)]
    assert dict(conv.attrs) == {"pads": (1, 1, 1, 1), "kernel_shape": (3, 3), "strides": (1, 1),
                                "dilations": (1, 1), "group": 1}
    assert g.layer("flatten").attr("shape") == (1, -1) and not g.layer("flatten").weights
    assert g.layer("fc").output.shape == (1, 10)
    assert g.metadata["opset"] == str(opset)
    total = account_graph(g).total
    assert total.macs == 8 * 64 * 27 + 10 * 128
    assert total.params == 8 * 27 + 8 + 1280 + 10


def test_dynamic_batch_defaults_to_one_and_batch_overrides(make_onnx: MakeOnnx) -> None:
    model = small_cnn(make_onnx, 17, batch="N")
    assert graph_from_onnx(model).inputs[0].shape == (1, 3, 8, 8)
    g4 = graph_from_onnx(model, batch=4)
    assert g4.inputs[0].shape == (4, 3, 8, 8)
    assert g4.layer("flatten").attr("shape") == (4, -1)
    assert g4.layer("fc").output.shape == (4, 10)
    assert account_graph(g4).total.macs == 4 * (8 * 64 * 27 + 10 * 128)


def test_input_shapes_override_symbolic_spatial_dims(make_onnx: MakeOnnx) -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c", strides=[2, 2])]
    model = make_onnx(nodes, [("x", ["N", 3, "H", "W"])], ["y"], {"w": f32(4, 3, 1, 1)})
    g = graph_from_onnx(model, input_shapes={"x": (2, 3, 10, 6)})
    assert g.layer("c").output.shape == (2, 4, 5, 3)
    with pytest.raises(ShapeError, match=r"'x'.*--input-shape"):
        graph_from_onnx(model)


@pytest.mark.parametrize(
    ("auto_pad", "pads"), [("SAME_UPPER", (0, 0, 1, 1)), ("SAME_LOWER", (1, 1, 0, 0)), ("VALID", (0, 0, 0, 0))]
)
def test_auto_pad_resolved_to_explicit_pads(make_onnx: MakeOnnx, auto_pad: str, pads: tuple[int, ...]) -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad=auto_pad, strides=[2, 2]),
             helper.make_node("MaxPool", ["y"], ["z"], name="p", auto_pad=auto_pad, kernel_shape=[3, 3], strides=[2, 2])]
    g = graph_from_onnx(make_onnx(nodes, [("x", [1, 2, 8, 8])], ["z"], {"w": f32(4, 2, 3, 3)}))
    conv = g.layer("c")
    assert "auto_pad" not in conv.attrs and conv.attr("pads") == pads
    assert conv.output.shape == ((1, 4, 3, 3) if auto_pad == "VALID" else (1, 4, 4, 4))
    assert "auto_pad" not in g.layer("p").attrs and len(g.layer("p").attr("pads")) == 4  # type: ignore[arg-type]


def test_unnamed_nodes_get_op_index_names_and_constants_become_attrs(make_onnx: MakeOnnx) -> None:
    nodes = [
        helper.make_node("Constant", [], ["lo"], value=helper.make_tensor("v", TensorProto.FLOAT, [], [0.0])),
        helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
        helper.make_node("Slice", ["c", "st", "en", "ax"], ["s"]),
        helper.make_node("Resize", ["s", "", "sc"], ["r"], mode="linear"),
        helper.make_node("Squeeze", ["r", "ax0"], ["y"]),
    ]
    init = {"hi": np.array(6.0, np.float32), "st": i64(1), "en": i64(3), "ax": i64(1),
            "sc": np.array([1, 1, 2, 2], np.float32), "ax0": i64(0)}
    g = graph_from_onnx(make_onnx(nodes, [("x", [1, 4, 5, 5])], ["y"], init))
    assert [layer.name for layer in g.layers] == ["Clip_1", "Slice_2", "Resize_3", "Squeeze_4"]
    clip, sl, rs, sq = g.layers
    assert clip.attr("min") == 0.0 and clip.attr("max") == 6.0 and not clip.weights
    assert (sl.attr("starts"), sl.attr("ends"), sl.attr("axes")) == ((1,), (3,), (1,))
    assert sl.output.shape == (1, 2, 5, 5)
    assert rs.attr("scales") == (1.0, 1.0, 2.0, 2.0) and rs.output.shape == (1, 2, 10, 10)
    assert sq.attr("axes") == (0,) and sq.output.shape == (2, 10, 10)
    assert account_graph(g).total.flops == 2 * 100 + 200 * 2 * 4  # clip on 4*25 + bilinear resize


def test_constant_subgraph_becomes_weight(make_onnx: MakeOnnx) -> None:
    nodes = [
        helper.make_node("Transpose", ["wt"], ["w"], name="tw", perm=[1, 0]),
        helper.make_node("Mul", ["w", "two"], ["w2"], name="scale"),
        helper.make_node("MatMul", ["x", "w2"], ["y"], name="mm"),
    ]
    g = graph_from_onnx(make_onnx(nodes, [("x", [3, 5])], ["y"], {"wt": f32(7, 5), "two": np.float32(2)}))
    assert [layer.name for layer in g.layers] == ["mm"]
    assert [w.shape for w in g.layer("mm").weights] == [(5, 7)]
    assert account_graph(g).total.macs == 3 * 7 * 5


def test_unused_optional_outputs_are_dropped(make_onnx: MakeOnnx) -> None:
    nodes = [helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop"),
             helper.make_node("Relu", ["y"], ["z"], name="relu")]
    g = graph_from_onnx(make_onnx(nodes, [("x", [2, 3])], ["z"]))
    assert [t.name for t in g.layer("drop").outputs] == ["y"]


def test_shapes_fall_back_to_onnxruntime(make_onnx: MakeOnnx) -> None:
    # NonZero's output size depends on the data: inference leaves it symbolic, a zero-input run fixes it
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="nz"),
             helper.make_node("Cast", ["nz"], ["y"], name="cast", to=TensorProto.FLOAT)]
    g = graph_from_onnx(make_onnx(nodes, [("x", [2, 3])], ["y"]))
    assert g.layer("nz").output.shape == (2, 0) and g.layer("nz").output.dtype == "int64"
    assert g.layer("cast").output.shape == (2, 0)


def test_bytes_path_and_json_round_trip(make_onnx: MakeOnnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = small_cnn(make_onnx, 17)
    path = tmp_path / "cnn.onnx"
    onnx.save(model, str(path))
    from_path = graph_from_onnx(path)
    from_bytes = graph_from_onnx(model.SerializeToString(), name="test")
    assert from_path.to_dict()["layers"] == from_bytes.to_dict()["layers"]
    assert from_path.name == "test"  # the ONNX graph name wins over the file stem
    again = type(from_path).from_json(from_path.to_json(tmp_path / "g.json") and tmp_path / "g.json")
    assert again == from_path


def test_old_opset_is_converted(make_onnx: MakeOnnx) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    g = graph_from_onnx(make_onnx(nodes, [("x", [1, 4])], ["y"], opset=9))
    assert int(g.metadata["opset"]) >= 11 and g.layer("relu").output.shape == (1, 4)


def test_local_functions_are_inlined(make_onnx: MakeOnnx) -> None:
    fn = helper.make_function(
        "custom", "ScaledRelu", ["a"], ["b"],
        [helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Mul", ["r", "r"], ["b"])],
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model = make_onnx([helper.make_node("ScaledRelu", ["x"], ["y"], name="block", domain="custom")],
                      [("x", [1, 4])], [("y", [1, 4])])
    model.opset_import.append(helper.make_opsetid("custom", 1))
    model.functions.append(fn)
    g = graph_from_onnx(model)
    assert [layer.op for layer in g.layers] == ["Relu", "Mul"]
    assert g.layers[-1].output.name == "y"


def test_constant_graph_output_stays_a_layer(make_onnx: MakeOnnx) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu"),
             helper.make_node("Add", ["c", "c"], ["k"], name="const_add")]
    g = graph_from_onnx(make_onnx(nodes, [("x", [1, 2])], ["y", ("k", [2])], {"c": np.ones(2, np.float32)}))
    assert g.outputs == ("y", "k") and g.layer("const_add").output.shape == (2,)
