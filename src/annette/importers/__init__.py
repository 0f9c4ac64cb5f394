"""Model importers: one entry point, :func:`load_model`, for every way to name a network.

Model specs:
- ``path/to/model.onnx``: an ONNX file (:func:`annette.importers.onnx.graph_from_onnx`);
- ``path/to/graph.json``: an annette graph (``"schema": "annette.graph"``) or a legacy ANNETTE graph;
- ``torchvision:NAME``: a torchvision classification model with random weights (:mod:`annette.importers.zoo`);
- ``nb201:ARCH``: a NAS-Bench-201 cell network (:mod:`annette.spaces.nb201`);
- ``hf:NAME`` or ``hf:NAME?seq=N&layers=L``: a HuggingFace ``transformers`` architecture built offline from
  its config with random weights (:mod:`annette.importers.hf`).

Scheme handlers are an explicit registry of ``"module:function"`` strings resolved on first use, so that
torch is imported only for ``torchvision:`` and ``hf:`` specs.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from annette.checks import MAX_DIM, read_json_object
from annette.errors import GraphValidationError, ModelFileError, ShapeError
from annette.graph.ir import Graph
from annette.registry import Registry

log = logging.getLogger(__name__)

# scheme -> "module:function" taking (name, *, batch) and returning a Graph / an onnx.ModelProto
GRAPH_SCHEMES: Registry[str] = Registry("model scheme")
GRAPH_SCHEMES.register("torchvision", "annette.importers.zoo:graph_from_torchvision")
GRAPH_SCHEMES.register("nb201", "annette.spaces.nb201:graph_from_arch")
GRAPH_SCHEMES.register("hf", "annette.importers.hf:graph_from_hf")

ONNX_SCHEMES: Registry[str] = Registry("model scheme with an ONNX form")
ONNX_SCHEMES.register("torchvision", "annette.importers.zoo:export_onnx")
ONNX_SCHEMES.register("nb201", "annette.spaces.nb201:onnx_from_arch")
ONNX_SCHEMES.register("hf", "annette.importers.hf:export_onnx")

SPEC_HELP = "an .onnx file, a graph .json (annette or legacy ANNETTE), torchvision:NAME, nb201:ARCH or hf:NAME"


def _resolve(target: str) -> Callable[..., Any]:
    module, _, func = target.partition(":")
    return cast(Callable[..., Any], getattr(importlib.import_module(module), func))


def split_scheme(spec: str | Path) -> tuple[str, str] | None:
    """``("torchvision", "resnet50")`` for ``"torchvision:resnet50"``; None for a file path."""
    if isinstance(spec, Path):
        return None
    try:
        if Path(spec).exists():
            return None
    except OSError:  # e.g. "File name too long": not a file, so possibly a scheme
        pass
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
    _check_batch(batch)
    scheme = split_scheme(spec)
    if scheme is not None:
        _no_input_shapes(spec, input_shapes)
        graph = _resolve(GRAPH_SCHEMES.get(scheme[0]))(scheme[1], batch=1 if batch is None else batch)
        return cast(Graph, graph)
    path = Path(spec)
    try:
        is_file = path.is_file()
    except OSError as exc:  # e.g. "File name too long"
        raise ModelFileError(f"not a model file name: {str(path)[:80]}... ({exc.strerror}; expected {SPEC_HELP})") from None
    if not is_file:
        raise ModelFileError(f"model file not found: {path} (expected {SPEC_HELP})")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from annette.importers.onnx import graph_from_onnx

        return graph_from_onnx(path, batch=batch, input_shapes=input_shapes)
    if suffix == ".json":
        _no_input_shapes(spec, input_shapes)
        return _graph_from_json(path, batch)
    raise ModelFileError(f"{path}: unknown model file type {suffix!r}; expected {SPEC_HELP}")


def _is_torch_module(obj: object) -> bool:
    """True for a ``torch.nn.Module`` (checked without importing torch where it is not imported yet)."""
    return any(f"{c.__module__}.{c.__qualname__}" == "torch.nn.modules.module.Module" for c in type(obj).__mro__)


def as_graph(
    model: Any,
    *,
    batch: int | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    example_inputs: Any = None,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
) -> Graph:
    """Whatever a user holds as a validated annette Graph:

    - a :class:`~annette.graph.ir.Graph` (returned as is; ``batch`` must then match its batch);
    - a spec string or path (see :func:`load_model`: ``.onnx``, graph ``.json``, ``torchvision:NAME``, ...);
    - an ``onnx.ModelProto`` (``batch`` and ``input_shapes`` apply as for an ONNX file);
    - a ``torch.nn.Module``, exported through ONNX (:func:`annette.importers.torch.graph_from_module`) with
      ``example_inputs`` (a tensor or a tuple of tensors) or ``input_shape`` (one input of zeros of that
      shape, e.g. ``(1, 3, 224, 224)``).
    """
    if isinstance(model, Graph):
        if batch is not None and model.inputs and model.inputs[0].shape[:1] != (batch,):
            raise ShapeError(
                f"graph {model.name!r} has batch {model.inputs[0].shape[:1]}, not {batch}: "
                "re-import the model with that batch instead of passing a built graph"
            )
        return model
    if isinstance(model, (str, Path)):
        return load_model(model, batch=batch, input_shapes=input_shapes)
    import onnx

    if isinstance(model, onnx.ModelProto):
        from annette.importers.onnx import graph_from_onnx

        return graph_from_onnx(model, name=name, batch=batch, input_shapes=input_shapes)
    if _is_torch_module(model):
        import torch

        from annette.importers.torch import graph_from_module

        if example_inputs is None:
            if input_shape is None:
                raise ModelFileError(
                    f"a torch.nn.Module ({type(model).__name__}) needs example_inputs=(tensor, ...) or "
                    "input_shape=(1, 3, 224, 224) to be exported"
                )
            example_inputs = (torch.zeros(*(int(d) for d in input_shape)),)
        elif isinstance(example_inputs, torch.Tensor):
            example_inputs = (example_inputs,)
        if batch is not None:
            raise ShapeError("batch cannot be set for a torch.nn.Module: give example inputs of that batch")
        return graph_from_module(model, tuple(example_inputs), name=name or type(model).__name__)
    raise ModelFileError(
        f"cannot estimate a {type(model).__name__}: expected a Graph, a model spec or path ({SPEC_HELP}), "
        "an onnx.ModelProto or a torch.nn.Module"
    )


def _check_batch(batch: int | None) -> None:
    """One check of ``batch`` for every kind of model spec (``--batch 0`` used to mean 1 for schemes)."""
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_DIM):
        raise ShapeError(f"batch must be a positive integer (at most {MAX_DIM}), got {batch!r}")


def _graph_from_json(path: Path, batch: int | None) -> Graph:
    try:
        data = read_json_object(path)
    except ValueError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    if data.get("schema") == "annette.graph":
        try:
            graph = Graph.from_dict(data).validate()
        except (ModelFileError, GraphValidationError) as exc:  # ShapeError included: the file named, same type
            raise type(exc)(f"{path}: {exc}") from exc
    else:
        legacy = importlib.import_module("annette.importers.legacy")
        if not (legacy.is_legacy_graph(data) or isinstance(data.get("layers"), dict)):
            raise ModelFileError(
                f"{path}: neither an annette graph (\"schema\": \"annette.graph\") nor a legacy ANNETTE graph"
            )
        try:  # the legacy loader names the layer at fault (e.g. one without a 'type')
            graph = cast(Graph, legacy.graph_from_legacy(path))
        except GraphValidationError as exc:
            raise type(exc)(f"{path}: {exc}") from exc
    if batch is not None and graph.inputs and graph.inputs[0].shape and graph.inputs[0].shape[0] != batch:
        raise ShapeError(
            f"{path}: a JSON graph has fixed shapes (batch {graph.inputs[0].shape[0]}); it cannot be re-batched "
            f"to {batch}; import the ONNX model instead"
        )
    return graph


def model_to_onnx(spec: str | Path, *, batch: int | None = None) -> Any:
    """The ONNX form (an ``onnx.ModelProto``) of an .onnx file, ``torchvision:NAME``, ``nb201:ARCH`` or ``hf:NAME``.

    For an .onnx file, ``batch`` sets the first dimension of every graph input.
    """
    _check_batch(batch)
    scheme = split_scheme(spec)
    if scheme is not None:
        if scheme[0] not in ONNX_SCHEMES:
            raise ModelFileError(f"model spec {spec!r}: scheme {scheme[0]!r} has no ONNX form")
        model = _resolve(ONNX_SCHEMES.get(scheme[0]))(scheme[1], batch=1 if batch is None else batch)
        return _within_proto_limit(spec, model)
    path = Path(spec)
    if path.suffix.lower() != ".onnx":
        raise ModelFileError(
            f"{path}: only .onnx files, torchvision:NAME, nb201:ARCH and hf:NAME have an ONNX form (got {path.suffix!r})"
        )
    from annette.importers.onnx import load_onnx, with_batch

    model = load_onnx(path)
    return model if batch is None else with_batch(model, batch)


# protobuf serializes one message of at most 2 GiB: a bigger ONNX form cannot be handed to a runtime in memory
PROTO_LIMIT_BYTES = 2**31 - 1


def _within_proto_limit(spec: str | Path, model: Any) -> Any:
    """``model``, or a one-line error where it is too big to serialize (e.g. torchvision's ViT-H/14: 2.5 GB)."""
    from google.protobuf.message import EncodeError

    try:
        size = model.ByteSize()
    except EncodeError:  # newer protobuf refuses to size a message over its limit at all (RegNet-Y-128GF: 2.6 GB)
        size = max(PROTO_LIMIT_BYTES + 1, sum(len(t.raw_data) for t in model.graph.initializer))
    if size > PROTO_LIMIT_BYTES:
        raise ModelFileError(
            f"model spec {spec!r}: its ONNX form is {size / 2**30:.2f} GiB, over protobuf's 2 GiB limit for one "
            "serialized model; annette measures models below it (estimating it works: annette estimate)"
        )
    return model


__all__ = ["GRAPH_SCHEMES", "ONNX_SCHEMES", "SPEC_HELP", "as_graph", "load_model", "model_to_onnx", "split_scheme"]
