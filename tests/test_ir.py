"""Graph IR invariants: validation names the failing layer, topological order, JSON round trip."""

from __future__ import annotations

import pytest

from annette.errors import GraphValidationError, ModelFileError, ShapeError
from annette.graph.ir import Graph, Layer, TensorSpec


def _t(name: str, shape: tuple[int, ...] = (1, 8, 4, 4)) -> TensorSpec:
    return TensorSpec(name, shape)


def _chain() -> Graph:
    conv = Layer(
        "conv",
        "Conv",
        (_t("x", (1, 3, 4, 4)),),
        (_t("a"),),
        weights=(TensorSpec("w", (8, 3, 3, 3)),),
        attrs={"kernel_shape": (3, 3), "pads": (1, 1, 1, 1), "group": 1},
    )
    relu = Layer("relu", "Relu", (_t("a"),), (_t("b"),))
    add = Layer("add", "Add", (_t("a"), _t("b")), (_t("y"),))
    # deliberately out of order: add before relu
    return Graph("g", (_t("x", (1, 3, 4, 4)),), (conv, add, relu), ("y",))


def test_validate_sorts_topologically_and_keeps_stable_order() -> None:
    g = _chain().validate()
    assert [layer.name for layer in g.layers] == ["conv", "relu", "add"]
    assert g.predecessors("add") == ["conv", "relu"]
    assert g.successors("conv") == ["relu", "add"]
    assert g.consumers["a"] == ("relu", "add")


def test_json_round_trip_is_exact(tmp_path) -> None:
    g = _chain().validate()
    path = tmp_path / "g.json"
    g.to_json(path)
    back = Graph.from_json(path)
    assert back == g
    assert back.layer("conv").attr("kernel_shape") == (3, 3)
    assert back.layer("conv").weights[0].nbytes == 8 * 3 * 3 * 3 * 4


def test_duplicate_layer_name_is_named() -> None:
    g = _chain()
    dup = Graph(g.name, g.inputs, (*g.layers, Layer("relu", "Relu", (_t("y"),), (_t("z"),))), ("z",))
    with pytest.raises(GraphValidationError, match="duplicate layer name 'relu'"):
        dup.validate()


def test_dangling_edge_names_layer_and_tensor() -> None:
    bad = Graph("g", (_t("x"),), (Layer("r", "Relu", (_t("nowhere"),), (_t("y"),)),), ("y",))
    with pytest.raises(GraphValidationError, match="layer 'r'.*'nowhere'.*dangling"):
        bad.validate()


def test_cycle_is_detected_and_named() -> None:
    a = Layer("a", "Relu", (_t("y2"),), (_t("y1"),))
    b = Layer("b", "Relu", (_t("y1"),), (_t("y2"),))
    with pytest.raises(GraphValidationError, match=r"cycle through layers \['a', 'b'\]"):
        Graph("g", (_t("x"),), (a, b), ("y2",)).validate()


def test_symbolic_shape_is_a_shape_error() -> None:
    sym = TensorSpec("x", (1, "height", 4, 4))  # type: ignore[arg-type]
    g = Graph("g", (sym,), (Layer("r", "Relu", (sym,), (_t("y"),)),), ("y",))
    with pytest.raises(ShapeError, match="'x'.*non-concrete shape"):
        g.validate()


def test_foreign_json_is_refused(tmp_path) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"layers": {}}')
    with pytest.raises(ModelFileError, match="not an annette graph"):
        Graph.from_json(p)
    p.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        Graph.from_json(p)
