"""Model importers: one entry point, :func:`load_model`, for every way to name a network.

Model specs:
- ``path/to/model.onnx``: an ONNX file (:func:`annette.importers.onnx.graph_from_onnx`);
- ``path/to/graph.json``: an annette graph (``"schema": "annette.graph"``) or a legacy ANNETTE graph;
- ``torchvision:NAME``: a torchvision classification model with random weights (:mod:`annette.importers.zoo`);
- ``nb201:ARCH``: a NAS-Bench-201 cell network (:mod:`annette.spaces.nb201`).

Scheme handlers are an explicit registry of ``"module:function"`` strings resolved on first use, so that
torch is imported only for ``torchvision:`` specs.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from annette.errors import ModelFileError, ShapeError
from annette.graph.ir import Graph
from annette.registry import Registry

log = logging.getLogger(__name__)

# scheme -> "module:function" taking (name, *, batch) and returning a Graph / an onnx.ModelProto
GRAPH_SCHEMES: Registry[str] = Registry("model scheme")
GRAPH_SCHEMES.register("torchvision", "annette.importers.zoo:graph_from_torchvision")
GRAPH_SCHEMES.register("nb201", "annette.spaces.nb201:graph_from_arch")

ONNX_SCHEMES: Registry[str] = Registry("model scheme with an ONNX form")
ONNX_SCHEMES.register("torchvision", "annette.importers.zoo:export_onnx")
ONNX_SCHEMES.register("nb201", "annette.spaces.nb201:onnx_from_arch")

SPEC_HELP = "an .onnx file, a graph .json (annette or legacy ANNETTE), torchvision:NAME or nb201:ARCH"


def _resolve(target: str) -> Callable[..., Any]:
    module, _, func = target.partition(":")
    return cast(Callable[..., Any], getattr(importlib.import_module(module), func))


def split_scheme(spec: str | Path) -> tuple[str, str] | None:
    """``("torchvision", "resnet50")`` for ``"torchvision:resnet50"``; None for a file path."""
    if isinstance(spec, Path) or Path(spec).exists():
        return None
    scheme, sep, rest = spec.partition(":")
    if not sep or not scheme.isidentifier() or len(scheme) < 2:  # "C:\\..." is a path, not a scheme
        return None
    GRAPH_SCHEMES.get(scheme)  # raises UnknownNameError listing the schemes
    if not rest:
        raise ModelFileError(f"model spec {spec!r} names no model after {scheme!r}: expected {scheme}:NAME")
    return scheme, rest


def _no_input_shapes(spec: str | Path, input_shapes: Mapping[str, Sequence[int]] | None) -> None:
    if input_shapes:
        raise ShapeError(f"input shapes can only be set for ONNX files, not for {spec!r}; use --batch")


def load_model(
    spec: str | Path, *, batch: int | None = None, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> Graph:
    """Load any supported model spec (see the module docstring) as a validated annette Graph."""
    scheme = split_scheme(spec)
    if scheme is not None:
        _no_input_shapes(spec, input_shapes)
        graph = _resolve(GRAPH_SCHEMES.get(scheme[0]))(scheme[1], batch=batch or 1)
        return cast(Graph, graph)
    path = Path(spec)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path} (expected {SPEC_HELP})")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from annette.importers.onnx import graph_from_onnx

        return graph_from_onnx(path, batch=batch, input_shapes=input_shapes)
    if suffix == ".json":
        _no_input_shapes(spec, input_shapes)
        return _graph_from_json(path, batch)
    raise ModelFileError(f"{path}: unknown model file type {suffix!r}; expected {SPEC_HELP}")


def _graph_from_json(path: Path, batch: int | None) -> Graph:
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if data.get("schema") == "annette.graph":
        graph = Graph.from_dict(data).validate()
    else:
        legacy = importlib.import_module("annette.importers.legacy")
        if not legacy.is_legacy_graph(data):
            raise ModelFileError(
                f"{path}: neither an annette graph (\"schema\": \"annette.graph\") nor a legacy ANNETTE graph"
            )
        graph = cast(Graph, legacy.graph_from_legacy(path))
    if batch is not None and graph.inputs and graph.inputs[0].shape and graph.inputs[0].shape[0] != batch:
        raise ShapeError(
            f"{path}: a JSON graph has fixed shapes (batch {graph.inputs[0].shape[0]}); it cannot be re-batched "
            f"to {batch}; import the ONNX model instead"
        )
    return graph


def model_to_onnx(spec: str | Path, *, batch: int | None = None) -> Any:
    """The ONNX form (an ``onnx.ModelProto``) of an .onnx file, ``torchvision:NAME`` or ``nb201:ARCH``.

    For an .onnx file, ``batch`` sets the first dimension of every graph input.
    """
    scheme = split_scheme(spec)
    if scheme is not None:
        if scheme[0] not in ONNX_SCHEMES:
            raise ModelFileError(f"model spec {spec!r}: scheme {scheme[0]!r} has no ONNX form")
        return _resolve(ONNX_SCHEMES.get(scheme[0]))(scheme[1], batch=batch or 1)
    path = Path(spec)
    if path.suffix.lower() != ".onnx":
        raise ModelFileError(
            f"{path}: only .onnx files, torchvision:NAME and nb201:ARCH have an ONNX form (got {path.suffix!r})"
        )
    from annette.importers.onnx import load_onnx, with_batch

    model = load_onnx(path)
    return model if batch is None else with_batch(model, batch)


__all__ = ["GRAPH_SCHEMES", "ONNX_SCHEMES", "SPEC_HELP", "load_model", "model_to_onnx", "split_scheme"]
