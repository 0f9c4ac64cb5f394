"""Per-layer counts and utilisation of the original's layer classes (``annette.estimation.layers``).

Each legacy layer-model entry is estimated by one *class*, chosen by the entry's ``layer_type``; the class
fixes how ``num_ops``/``num_inputs``/``num_outputs``/``num_weights`` are counted from the layer dict
(``compute_nums``) and which dimensions the refined roofline unrolls (``compute_eff``). All counts ignore the
batch dimension (index 0 of every shape).

Where the original silently produced a wrong number (a symbolic template dimension such as ``"filters"``
multiplied as a string, or an unknown ``-1`` dimension), this module raises :class:`LegacyFormatError`
naming the layer, the attribute and the value. Where the original crashed (a missing ``kernel_shape`` on a
convolution), it raises too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from annette.errors import LegacyFormatError

log = logging.getLogger(__name__)

Number = int | float

# layer_type -> estimator class (the original's ``layers.__layer_classes__``); any other type -> "Base".
LAYER_CLASSES: Mapping[str, str] = {
    "Base": "Base",
    "Conv": "Conv",
    "ConvTranspose": "ConvTranspose",
    "ConvTranspose2d": "ConvTranspose",
    "DepthwiseConv": "DepthwiseConv",
    "DepthwiseSepConv": "DepthwiseSepConv",
    "Pool": "Pool",
    "ConvPool": "ConvPool",
    "Add": "Add",
    "DataInput": "Input",
    "FullyConnected": "FullyConnected",
    "MatMul": "FullyConnected",
}

# The mapping model's own (smaller) table, used to compute the counts that fuse conditions can test
# (``Optimizer.layer_classes``); a type not listed here is tested on its raw attributes.
MAPPING_LAYER_CLASSES: Mapping[str, str] = {
    "Pool": "Pool",
    "Conv": "Conv",
    "ConvTranspose": "ConvTranspose",
    "Add": "Add",
    "Base": "Base",
    "Input": "Input",
    "FullyConnected": "FullyConnected",
    "ConvPool": "ConvPool",
    "DepthwiseConv": "DepthwiseConv",
}

def layer_class(layer_type: str) -> str:
    return LAYER_CLASSES.get(layer_type, "Base")


@dataclass(frozen=True)
class Counts:
    """What ``compute_nums`` writes into a layer: element counts, weights, and operations (2 per MAC)."""

    num_ops: Number
    num_inputs: Number
    num_outputs: Number
    num_weights: Number

    def as_dict(self) -> dict[str, Number]:
        return {
            "num_ops": self.num_ops,
            "num_inputs": self.num_inputs,
            "num_outputs": self.num_outputs,
            "num_weights": self.num_weights,
        }


# -- checked access to shapes ---------------------------------------------------------------------------
def _dim(layer: str, key: str, value: Any) -> Number:
    """A dimension used in a count: must be a concrete non-negative number (batch dims are never used)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LegacyFormatError(
            f"layer {layer!r}: {key} holds the symbolic value {value!r} where a number is needed "
            "(a benchmark template: fill its dimensions in before estimating)"
        )
    if value < 0:
        raise LegacyFormatError(
            f"layer {layer!r}: {key} holds the unknown dimension {value!r} where a concrete size is needed"
        )
    return value


def _prod(layer: str, key: str, dims: Sequence[Any]) -> Number:
    """``reduce(mul, dims)`` over checked dimensions (``dims`` must be non-empty)."""
    out: Number = _dim(layer, key, dims[0])
    for d in dims[1:]:
        out = out * _dim(layer, key, d)
    return out


def _attr(layer_name: str, layer: Mapping[str, Any], key: str) -> list[Any]:
    value = layer.get(key)
    if not isinstance(value, list):
        raise LegacyFormatError(
            f"layer {layer_name!r} ({layer.get('type')}): needs a list attribute '{key}', got {value!r}"
        )
    return value


def _item(layer_name: str, layer: Mapping[str, Any], key: str, index: int) -> Number:
    values = _attr(layer_name, layer, key)
    if index >= len(values):
        raise LegacyFormatError(
            f"layer {layer_name!r} ({layer.get('type')}): '{key}' = {values} has no index {index}"
        )
    return _dim(layer_name, f"{key}[{index}]", values[index])


def _flat_count(layer_name: str, layer: Mapping[str, Any], key: str) -> Number:
    """``reduce(mul, layer[key][1:])``; 0 where the original's bare ``except`` yields 0 (missing, too short)."""
    shape = layer.get(key)
    if not isinstance(shape, list) or len(shape) < 2:
        return 0
    if key == "input_shape" and isinstance(shape[0], list):
        # Several input shapes: the original counts 2 x the first one; with more than two, its ``reduce``
        # multiplies lists, raises, and the bare except gives 0.
        first = shape[0]
        if len(shape) != 2 or len(first) < 2:
            return 0
        return 2 * _prod(layer_name, "input_shape[0]", first[1:])
    return _prod(layer_name, key, shape[1:])


# -- compute_nums per class -------------------------------------------------------------------------------
def _base(name: str, layer: Mapping[str, Any]) -> Counts:
    return Counts(0, _flat_count(name, layer, "input_shape"), _flat_count(name, layer, "output_shape"), 0)


def _input(name: str, layer: Mapping[str, Any]) -> Counts:
    base = _base(name, layer)
    return Counts(0, 0, base.num_outputs, 0)


def _conv(name: str, layer: Mapping[str, Any]) -> Counts:
    base = _base(name, layer)
    kernel = _attr(name, layer, "kernel_shape")
    if not kernel:
        raise LegacyFormatError(f"layer {name!r} ({layer['type']}): empty 'kernel_shape'")
    weights = _prod(name, "kernel_shape", kernel)
    ops = weights * _item(name, layer, "output_shape", 1) * _item(name, layer, "output_shape", 2) * 2
    return Counts(ops, base.num_inputs, base.num_outputs, weights)


def _fully_connected(name: str, layer: Mapping[str, Any]) -> Counts:
    base = _base(name, layer)
    weights = base.num_inputs * base.num_outputs
    return Counts(weights * 2, base.num_inputs, base.num_outputs, weights)


def _pool(name: str, layer: Mapping[str, Any]) -> Counts:
    base = _base(name, layer)
    kernel = _attr(name, layer, "kernel_shape")
    if len(kernel) < 2:
        raise LegacyFormatError(f"layer {name!r} (Pool): 'kernel_shape' {kernel} should be [1, kh, kw, 1]")
    ops = base.num_outputs * _prod(name, "kernel_shape", kernel[1:]) * 2
    return Counts(ops, base.num_inputs, base.num_outputs, 0)


def _add(name: str, layer: Mapping[str, Any]) -> Counts:
    base = _base(name, layer)
    return Counts(base.num_outputs, base.num_inputs * 2, base.num_outputs, 0)


def _conv_pool(name: str, layer: Mapping[str, Any]) -> Counts:
    kernel = _attr(name, layer, "kernel_shape")
    if len(kernel) < 3:
        raise LegacyFormatError(f"layer {name!r} (ConvPool): 'kernel_shape' {kernel} should be [kh, kw, c, f]")
    weights = _prod(name, "kernel_shape", kernel)
    pool = layer.get("Pool")
    if not isinstance(pool, dict):
        raise LegacyFormatError(f"layer {name!r} (ConvPool): has no fused 'Pool' layer to take its outputs from")
    pool_out = _attr(name, pool, "output_shape")
    if len(pool_out) < 2:
        raise LegacyFormatError(f"layer {name!r} (ConvPool): fused pool 'output_shape' {pool_out} is too short")
    outputs = _prod(name, "Pool.output_shape", pool_out[1:])
    h, w = _item(name, layer, "output_shape", 1), _item(name, layer, "output_shape", 2)
    strides = _attr(name, layer, "strides")
    if len(strides) < 2:
        raise LegacyFormatError(f"layer {name!r} (ConvPool): 'strides' {strides} should be [1, sh, sw, 1]")
    inputs = h * w * _dim(name, "kernel_shape[2]", kernel[2]) * _prod(name, "strides", strides[1:])
    return Counts(weights * h * w * 2, inputs, outputs, weights)


COUNTERS: Mapping[str, Callable[[str, Mapping[str, Any]], Counts]] = {
    "Base": _base,
    "Input": _input,
    "Conv": _conv,
    "ConvTranspose": _conv,
    "DepthwiseConv": _conv,
    "DepthwiseSepConv": _conv,
    "FullyConnected": _fully_connected,
    "Pool": _pool,
    "Add": _add,
    "ConvPool": _conv_pool,
}


def compute_counts(cls: str, name: str, layer: Mapping[str, Any]) -> Counts:
    """``compute_nums`` of estimator class ``cls`` for layer ``name``."""
    return COUNTERS[cls](name, layer)


# -- compute_eff: unrolled dimensions per class ------------------------------------------------------------
_CONV_DIMS = (("h", "output_shape", 2), ("w", "output_shape", 1), ("c", "kernel_shape", 2), ("f", "kernel_shape", 3))

# class -> ((dimension, attribute, index), ...), replication; classes without an entry have no compute_eff.
# ConvPoolLayer's own code takes h from output_shape[1] and w from [2] (ConvLayer: [2] and [1]) and does not
# replicate under-filled dimensions.
EFFICIENCY_DIMS: Mapping[str, tuple[tuple[tuple[str, str, int], ...], bool]] = {
    "Conv": (_CONV_DIMS, True),
    "ConvTranspose": (_CONV_DIMS, True),
    "DepthwiseConv": (_CONV_DIMS, True),
    "DepthwiseSepConv": (_CONV_DIMS, True),
    "Pool": ((("h", "output_shape", 2), ("w", "output_shape", 1), ("c", "input_shape", 3), ("f", "output_shape", 3)), True),
    "FullyConnected": ((("c", "input_shape", 1), ("f", "output_shape", 1)), True),
    "ConvPool": ((("h", "output_shape", 1), ("w", "output_shape", 2), ("c", "kernel_shape", 2), ("f", "kernel_shape", 3)), False),
}


def unrolled_dims(cls: str, name: str, layer: Mapping[str, Any]) -> tuple[tuple[str, Number], ...]:
    """``(dimension, size)`` pairs that class ``cls`` unrolls for layer ``name``, in the original's order."""
    return tuple((d, _item(name, layer, key, i)) for d, key, i in EFFICIENCY_DIMS[cls][0])


def dim_efficiency(unrolled: Number, par: Number | None, alpha: Number | None, replication: bool, where: str) -> float:
    """``BaseLayer.compute_efficiency`` for one dimension.

    ``eff = x / (ceil(x / par) * par)`` (paper eq. 3; 1 when ``x < par`` and replication is on, 1 when par < 1),
    then blended ``1 / ((1 - alpha) + 1/eff * alpha)`` when alpha is given. No ``par`` -> 1 (alpha ignored).
    """
    if par is None:
        return 1.0
    eff: float = 1.0
    if par >= 1 and not (unrolled < par and replication):
        if unrolled == 0:
            raise LegacyFormatError(f"{where}: unrolled dimension is 0, the utilisation 0/0 is undefined")
        eff = unrolled / (math.ceil(unrolled / par) * par)
    if alpha is not None:
        eff = 1 / ((1 - alpha) + 1 / eff * alpha)
    return eff
