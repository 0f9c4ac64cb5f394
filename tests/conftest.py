"""Shared test fixtures (keep small): a builder for hand-made ONNX models."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def build_onnx(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[tuple[str, Sequence[Any]]],
    outputs: Sequence[str | tuple[str, Sequence[Any]]],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    name: str = "test",
) -> onnx.ModelProto:
    """A float32 model: ``inputs`` are (name, dims) with ints or symbolic strings; outputs are (name, dims) or
    names whose shapes are then inferred (the ONNX checker requires output shapes)."""
    graph = helper.make_graph(
        list(nodes),
        name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(d)) for n, d in inputs],
        [
            helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
            if isinstance(o, str)
            else helper.make_tensor_value_info(o[0], TensorProto.FLOAT, list(o[1]))
            for o in outputs
        ],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    try:
        g = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except onnx.shape_inference.InferenceError:  # deliberately broken models
        return model
    inferred = {vi.name: vi for vi in (*g.value_info, *g.output) if vi.type.tensor_type.HasField("shape")}
    for out in model.graph.output:  # the checker wants output shapes: take them from inference
        if not out.type.tensor_type.HasField("shape") and out.name in inferred:
            out.CopyFrom(inferred[out.name])
    return model


@pytest.fixture
def make_onnx() -> Callable[..., onnx.ModelProto]:
    return build_onnx


@pytest.fixture(scope="session", autouse=True)
def _temporary_annette_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests keep annette's caches (the torchvision exports, gigabytes for the zoo) in a temporary folder, not
    in ~/.cache/annette: ANNETTE_CACHE_DIR is set for the session (subprocesses inherit it). Set
    ANNETTE_TEST_CACHE_DIR to keep the exports between sessions in a folder of your choice."""
    chosen = os.environ.get("ANNETTE_TEST_CACHE_DIR")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("annette-cache")
    before = os.environ.get("ANNETTE_CACHE_DIR")
    os.environ["ANNETTE_CACHE_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("ANNETTE_CACHE_DIR", None)
    else:
        os.environ["ANNETTE_CACHE_DIR"] = before
