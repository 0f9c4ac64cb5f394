"""PyTorch modules to annette graphs, through an in-memory ONNX export.

The exporter is ``torch.onnx.export(..., dynamo=True, optimize=False)`` (torch 2.9+; the TorchScript exporter
is deprecated and folds BatchNormalization into the preceding Conv in eval mode, which would hide a layer
that the mapping model must see). Instead of onnxscript's optimizer (which also fuses Conv+BatchNorm) the
result is cleaned with constant folding and dead-node removal only; then the zero Conv biases that the
exporter synthesises for ``bias=False`` convolutions are removed again (only those that are not module
parameters), so parameter counts match ``sum(p.numel() for p in module.parameters())`` up to constants that
the export materialises (e.g. expanded relative-position-bias tables).

torch is imported inside the functions only: importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from annette.errors import BackendError, ModelFileError
from annette.graph.ir import Graph

log = logging.getLogger(__name__)

EXPORT_OPSET = 20  # LayerNormalization (17+) and Gelu (20+) stay single ops


def onnx_from_module(module: Any, example_inputs: Sequence[Any], *, name: str = "module") -> onnx.ModelProto:
    """Export ``module`` (in eval mode, without gradients) to an ONNX ModelProto in memory."""
    import torch
    from onnxscript import ir
    from onnxscript import optimizer as onnxscript_optimizer
    from onnxscript.ir.passes.common import RemoveUnusedNodesPass

    if not isinstance(module, torch.nn.Module):
        raise ModelFileError(f"expected a torch.nn.Module, got {type(module).__name__}")
    was_training = module.training
    parameter_names = {n for n, _ in module.named_parameters()} | {n for n, _ in module.named_buffers()}
    chatter = io.StringIO()
    try:
        module.eval()
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, tuple(example_inputs), dynamo=True, optimize=False, verbose=False,
                opset_version=EXPORT_OPSET, external_data=False,
            )
    except Exception as exc:  # the exporter raises many types (torch._dynamo errors, onnxscript errors, ...)
        raise BackendError(f"torch.onnx.export of {name!r} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        module.train(was_training)
    if chatter.getvalue():
        log.debug("torch.onnx.export said: %s", chatter.getvalue().strip())
    if program is None:
        raise BackendError(f"torch.onnx.export of {name!r} returned no program")
    model = program.model
    onnxscript_optimizer.fold_constants(model)
    RemoveUnusedNodesPass()(model)
    proto = ir.to_proto(model)
    proto.graph.name = name
    _drop_synthetic_zero_biases(proto, parameter_names)
    return proto


def _drop_synthetic_zero_biases(proto: onnx.ModelProto, parameter_names: set[str]) -> None:
    inits = {t.name: t for t in proto.graph.initializer}
    dropped = set()
    for node in proto.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) == 3:
            bias = node.input[2]
            if bias in inits and bias not in parameter_names and not np.any(numpy_helper.to_array(inits[bias])):
                del node.input[2]
                dropped.add(bias)
    still_used = {t for node in proto.graph.node for t in node.input}
    unused = [t for t in proto.graph.initializer if t.name in dropped and t.name not in still_used]
    for t in unused:
        proto.graph.initializer.remove(t)


def graph_from_module(module: Any, example_inputs: Sequence[Any], *, name: str = "module") -> Graph:
    """Import a PyTorch module as a validated annette Graph (shapes from ``example_inputs``)."""
    from annette.importers.onnx import graph_from_onnx

    return graph_from_onnx(onnx_from_module(module, example_inputs, name=name), name=name)
