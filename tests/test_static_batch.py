"""``--batch N`` on a static-batch export (issue 14, item 3): every edge is checked after the override; a
constant that holds the exported batch (a Reshape target) is an error asking for a dynamic-batch export,
never an inconsistent graph estimated behind a warning."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from annette.errors import ShapeError
from annette.importers.onnx import _check_edges, graph_from_onnx
from conftest import build_onnx


def static_reshape_model() -> object:
    """(1, 8, 4) -> Linear -> Reshape to the constant (1, 8, 2, 2): the exported batch lives in the target."""
    return build_onnx(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="linear"),
         helper.make_node("Reshape", ["h", "shape"], ["y"], name="view")],
        [("x", [1, 8, 4])], ["y"],
        {"w": np.ones((4, 4), np.float32), "shape": np.array([1, 8, 2, 2], np.int64)},
        name="static",
    )


def test_static_reshape_target_cannot_be_rebatched() -> None:
    model = static_reshape_model()
    g = graph_from_onnx(model)
    assert g.by_name["view"].outputs[0].shape == (1, 8, 2, 2)
    with pytest.raises(ShapeError, match=r"'view' \(Reshape\) turns \(8, 8, 4\).*static batch of 1.*dynamic batch"):
        graph_from_onnx(model, batch=8)


def test_rebatching_a_consistent_static_export_still_works() -> None:
    model = build_onnx(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Flatten", ["r"], ["y"], name="flat", axis=1)],
        [("x", [1, 3, 4, 4])], ["y"],
    )
    g = graph_from_onnx(model, batch=8)
    assert g.by_name["flat"].outputs[0].shape == (8, 48)


@pytest.mark.slow
def test_seq_first_transformer_export_is_refused_at_another_batch() -> None:
    torch = pytest.importorskip("torch")
    from annette.importers.torch import onnx_from_module

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    enc = torch.nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
    proto = onnx_from_module(enc, (torch.zeros(1, 8, 32),), name="enc")
    assert graph_from_onnx(proto).inputs[0].shape == (1, 8, 32)
    with pytest.raises(ShapeError, match="static batch of 1.*cannot be re-batched to 4"):
        graph_from_onnx(proto, batch=4)


@pytest.mark.parametrize(
    ("op", "ins", "out", "message"),
    [
        ("Add", [(2, 3), (1, 3)], (1, 3), "broadcasts"),
        ("Add", [(2, 3), (4, 3)], (4, 3), "cannot broadcast"),
        ("Concat", [(1, 2, 5), (8, 3, 5)], (8, 5, 5), "concatenates"),
        ("MatMul", [(2, 3), (4, 5)], (2, 5), "multiplies"),
        ("Transpose", [(2, 3)], (3, 3), "elements"),
    ],
)
def test_edge_check_names_the_node(op: str, ins: list[tuple[int, ...]], out: tuple[int, ...], message: str) -> None:
    names = [f"i{k}" for k in range(len(ins))]
    attrs = {"axis": 1} if op == "Concat" else {}
    model = helper.make_model(helper.make_graph([helper.make_node(op, names, ["o"], name="n", **attrs)], "g", [], []))
    static = {n: (s, 1) for n, s in zip(names, ins, strict=True)} | {"o": (out, 1)}
    with pytest.raises(ShapeError, match=f"'n' \\({op}\\).*{message}"):
        _check_edges(model, static)
    ok = {n: (s, 1) for n, s in zip(names, ins, strict=True)} | {"o": (tuple(np.zeros(ins[0]).T.shape), 1)}
    if op == "Transpose":
        _check_edges(model, ok)  # a real transpose passes


def test_onnx_form_for_measuring_is_checked_too() -> None:
    from annette.importers.onnx import with_batch

    with pytest.raises(ShapeError, match="static batch of 1.*cannot be re-batched to 8"):
        with_batch(static_reshape_model(), 8)  # type: ignore[arg-type]
    rebatched = with_batch(static_reshape_model(), 1)  # type: ignore[arg-type]
    assert rebatched.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
