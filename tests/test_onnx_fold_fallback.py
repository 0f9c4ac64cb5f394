"""Constant folding falls back: onnx's reference evaluator, then ONNX Runtime, then the node stays unfolded.

The GatherElements case is the one BertModel exports hit (``torch.gather`` of the buffered token-type ids
with the position ids): onnx's reference evaluator fails on a (1, 512) table gathered with (1, 128) indices.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper

from annette.importers import onnx as onnx_importer
from annette.importers.onnx import graph_from_onnx

MakeOnnx = Callable[..., onnx.ModelProto]
TABLE = np.arange(512, dtype=np.float32).reshape(1, 512) * 0.5
INDEX = (np.arange(128, dtype=np.int64) * 3 % 512).reshape(1, 128)


def _gather_model(make_onnx: MakeOnnx) -> onnx.ModelProto:
    """y = x + GatherElements(TABLE, INDEX, axis=1): the gather has constant inputs only."""
    nodes = [
        helper.make_node("GatherElements", ["table", "index"], ["g"], name="gather", axis=1),
        helper.make_node("Add", ["x", "g"], ["y"], name="add"),
    ]
    return make_onnx(nodes, [("x", [1, 128])], [("y", [1, 128])], {"table": TABLE, "index": INDEX})


def test_reference_evaluator_really_fails_on_this_gather() -> None:
    """The premise: without the fallback this node could not be folded."""
    from onnx.reference import ReferenceEvaluator

    node = helper.make_node("GatherElements", ["t", "i"], ["o"], axis=1)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("t", 1, [1, 512]), helper.make_tensor_value_info("i", 7, [1, 128])],
        [onnx.ValueInfoProto(name="o")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError):
        ReferenceEvaluator(model).run(None, {"t": TABLE, "i": INDEX})


def test_failed_reference_fold_is_evaluated_by_onnxruntime(make_onnx: MakeOnnx) -> None:
    graph = graph_from_onnx(_gather_model(make_onnx))
    assert [layer.op for layer in graph.layers] == ["Add"]
    add = graph.layers[0]
    assert add.weights and add.weights[0].shape == (1, 128)  # the folded gather is the Add's constant operand


def test_fold_that_no_evaluator_can_do_leaves_the_node(make_onnx: MakeOnnx, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> list[np.ndarray]:
        raise RuntimeError("no kernel")

    tries: list[int] = []
    original = onnx_importer._eval_node

    def counting(*args: object, **kwargs: object) -> list[np.ndarray] | None:
        tries.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_importer, "_eval_with_onnxruntime", fail)
    monkeypatch.setattr(onnx_importer, "_eval_node", counting)
    graph = graph_from_onnx(_gather_model(make_onnx))
    assert [layer.op for layer in graph.layers] == ["GatherElements", "Add"]
    gather = graph.layers[0]
    assert [w.shape for w in gather.weights] == [(1, 512), (1, 128)]  # its constant operands are kept
    assert gather.output.shape == (1, 128)
    assert graph.layers[1].inputs[1].name == gather.output.name
    assert len(tries) == 1  # an unfoldable node is not tried again in later folding rounds
