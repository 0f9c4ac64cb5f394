"""Exact per-layer accounting: MACs, FLOPs, parameters, and element/byte traffic.

Counting convention (closed form, from the layer's shapes and attributes only):

- **Bytes**: ``input_bytes``/``output_bytes`` are the sums of ``TensorSpec.nbytes`` over the activation
  inputs/outputs, ``weight_bytes`` over the constant operands (``Layer.weights``); dtype-aware. Constants
  folded into attributes (Reshape targets, Slice bounds, Resize scales, ...) are not counted. A gather
  (Gather, GatherElements, GatherND; e.g. an embedding lookup) reads from a constant table only what it
  outputs: each constant operand counts at most the output's element count (params still count it all).
- **Params**: elements of the floating-point ``Layer.weights`` (integer constants are indices, not
  parameters), except BatchNormalization's running mean and variance (statistics, not learned parameters;
  operands 3 and 4 in ONNX order), so that totals match PyTorch's ``sum(p.numel() for p in model.parameters())``.
- **Conv**: ``MACs = out_elems · (C_in / group) · prod(kernel)`` (grouped, depthwise, dilated and strided
  convolutions alike: dilation and stride only change the output size). **ConvTranspose**:
  ``MACs = in_elems · (C_out / group) · prod(kernel)``. **Gemm**: ``MACs = M·N·K``. **MatMul** (with numpy
  broadcasting of batch dimensions, e.g. attention ``Q·Kᵀ``): ``MACs = out_elems · K``. **Einsum**: product of
  the sizes of all indices. For all of these ``FLOPs = 2·MACs`` (bias additions are not counted).
- **Elementwise ops and activations**: ``MACs = 0``, ``FLOPs = out_elems · f`` with the per-op factor ``f``
  in :data:`ELEMENTWISE_FLOPS` (one unit per arithmetic operation, comparison or transcendental call,
  e.g. Relu 1, Sigmoid 4 = neg+exp+add+div, HardSwish 4). Variadic Sum/Max/Min: ``(n_operands − 1)`` per
  element; Mean: ``n_operands`` per element.
- **Normalisations** (inference): ``FLOPs = out_elems · f`` (BatchNormalization 2 = scale and shift;
  Layer/Instance/Group normalisation 8 = mean, variance, normalise, scale and shift). **Softmax**: 5 per
  element (max, subtract, exp, sum, divide). **LRN**: ``size + 3`` per element.
- **Pools**: ``FLOPs = out_elems · prod(kernel)`` (one compare or add per window element); global pools
  ``FLOPs = in_elems``. **Reductions** (ReduceMean, ArgMax, ...): ``FLOPs = in_elems · f``.
- **Resize/Upsample**: nearest 0; linear ``out_elems · 2 · 2^d``; cubic ``out_elems · 2 · 4^d`` for ``d``
  resized axes (a multiply-add per interpolation tap).
- **Data movement** (Concat, Slice, Split, Gather, Transpose, Pad, Expand, Tile, Cast, ...): 0 FLOPs; they
  still run a kernel and move their bytes.
- **Zero-cost ops** (:data:`ZERO_COST_OPS`: Reshape, Flatten, Identity, Dropout, Squeeze, Unsqueeze, Shape,
  ...) are metadata-only: every count is 0 and ``zero_cost`` is True.

Any other op raises :class:`~annette.errors.UnsupportedOperatorError` naming the layer: nothing is dropped
silently.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from annette.errors import ShapeError, UnsupportedOperatorError
from annette.graph.ir import Graph, Layer, TensorSpec

ZERO_COST_OPS: frozenset[str] = frozenset(
    {
        "Reshape",
        "Flatten",
        "Identity",
        "Dropout",
        "Squeeze",
        "Unsqueeze",
        "Shape",
        "Size",
        "Constant",
        "Optional",
        "OptionalGetElement",
    }
)

ELEMENTWISE_FLOPS: Mapping[str, int] = {
    # arithmetic and comparison
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Pow": 1, "Mod": 1, "Neg": 1, "Abs": 1, "Reciprocal": 1,
    "Sqrt": 1, "Exp": 1, "Log": 1, "Erf": 1, "Sin": 1, "Cos": 1, "Tan": 1, "Atan": 1, "Floor": 1, "Ceil": 1,
    "Round": 1, "Sign": 1, "IsNaN": 1, "IsInf": 1, "BitShift": 1,
    "Equal": 1, "Greater": 1, "Less": 1, "GreaterOrEqual": 1, "LessOrEqual": 1,
    "And": 1, "Or": 1, "Xor": 1, "Not": 1, "Where": 1,
    # activations
    "Relu": 1, "ThresholdedRelu": 1, "LeakyRelu": 2, "PRelu": 2, "Clip": 2, "Tanh": 1,
    "Sigmoid": 4, "HardSigmoid": 3, "HardSwish": 4, "Softplus": 3, "Softsign": 3,
    "Elu": 3, "Celu": 3, "Selu": 4, "Gelu": 4, "Mish": 5, "Swish": 5,
}

VARIADIC_FLOPS_OFFSET: Mapping[str, int] = {"Sum": -1, "Max": -1, "Min": -1, "Mean": 0}

NORM_FLOPS: Mapping[str, int] = {
    "BatchNormalization": 2,
    "LayerNormalization": 8,
    "InstanceNormalization": 8,
    "GroupNormalization": 8,
    "MeanVarianceNormalization": 8,
    "LpNormalization": 3,
    "Softmax": 5,
    "LogSoftmax": 5,
    "Hardmax": 1,
}

REDUCE_FLOPS: Mapping[str, int] = {
    "ReduceMean": 1, "ReduceSum": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1, "ReduceL1": 1,
    "ReduceL2": 2, "ReduceSumSquare": 2, "ReduceLogSum": 1, "ReduceLogSumExp": 2,
    "ArgMax": 1, "ArgMin": 1, "CumSum": 1, "TopK": 1,
}

DATA_MOVEMENT_OPS: frozenset[str] = frozenset(
    {
        "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements",
        "Transpose", "Pad", "Tile", "Expand", "Cast", "CastLike", "DepthToSpace", "SpaceToDepth",
        "ConstantOfShape", "Range", "Trilu", "ReverseSequence", "NonZero", "OneHot", "EyeLike",
    }
)

GATHER_OPS: frozenset[str] = frozenset({"Gather", "GatherElements", "GatherND"})
POOL_OPS: frozenset[str] = frozenset({"MaxPool", "AveragePool", "LpPool"})
GLOBAL_POOL_OPS: frozenset[str] = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})


@dataclass(frozen=True)
class LayerCost:
    """What one layer computes and moves (see the module docstring for the convention)."""

    macs: int = 0
    flops: int = 0
    params: int = 0
    input_elems: int = 0
    output_elems: int = 0
    weight_elems: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    weight_bytes: int = 0
    zero_cost: bool = False

    def __add__(self, other: LayerCost) -> LayerCost:
        counts = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name != "zero_cost"}
        return LayerCost(**counts, zero_cost=self.zero_cost and other.zero_cost)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ZERO = LayerCost(zero_cost=True)


@dataclass(frozen=True)
class GraphCost:
    """Per-layer costs of a graph (in layer order) and their totals."""

    name: str
    layers: Mapping[str, LayerCost]
    total: LayerCost

    def __iter__(self) -> Iterator[tuple[str, LayerCost]]:
        return iter(self.layers.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "totals": self.total.to_dict(),
            "layers": {n: c.to_dict() for n, c in self.layers.items()},
        }


def _numel(specs: tuple[TensorSpec, ...]) -> int:
    return sum(t.numel for t in specs)


def _nbytes(specs: tuple[TensorSpec, ...]) -> int:
    return sum(t.nbytes for t in specs)


def _ints(layer: Layer, key: str) -> tuple[int, ...]:
    value = layer.attr(key)
    if value is None:
        return ()
    if not isinstance(value, tuple):
        raise ShapeError(f"layer {layer.name!r} ({layer.op}): attribute {key!r} should be a list, got {value!r}")
    return tuple(int(v) for v in value)


def _int(layer: Layer, key: str, default: int) -> int:
    value = layer.attr(key, default)
    if not isinstance(value, (int, float)):
        raise ShapeError(f"layer {layer.name!r} ({layer.op}): attribute {key!r} should be a number, got {value!r}")
    return int(value)


def _operands(layer: Layer) -> tuple[TensorSpec, ...]:
    return (*layer.inputs, *layer.weights)


def _kernel(layer: Layer, spatial_dims: int) -> tuple[int, ...]:
    kernel = _ints(layer, "kernel_shape")
    if not kernel and layer.op in ("Conv", "ConvTranspose"):
        w = layer.weights[0] if layer.weights else (layer.inputs[1] if len(layer.inputs) > 1 else None)
        if w is None:
            raise ShapeError(f"layer {layer.name!r} ({layer.op}) has no kernel_shape and no weight tensor")
        kernel = tuple(w.shape[2:])
    if len(kernel) != spatial_dims:
        raise ShapeError(
            f"layer {layer.name!r} ({layer.op}): kernel_shape {list(kernel)} does not match "
            f"{spatial_dims} spatial dimensions of input {list(layer.input.shape)}"
        )
    return kernel


# -- MAC counters (return MACs) ------------------------------------------------------------------------------
def _conv_macs(layer: Layer) -> int:
    x, y = layer.input, layer.output
    group = _int(layer, "group", 1)
    kernel = _kernel(layer, len(x.shape) - 2)
    return y.numel * (x.shape[1] // group) * math.prod(kernel)


def _conv_transpose_macs(layer: Layer) -> int:
    x, y = layer.input, layer.output
    group = _int(layer, "group", 1)
    kernel = _kernel(layer, len(x.shape) - 2)
    return x.numel * (y.shape[1] // group) * math.prod(kernel)


def _gemm_macs(layer: Layer) -> int:
    ops = _operands(layer)
    a = ops[0]
    if len(a.shape) != 2 or len(layer.output.shape) != 2:
        raise ShapeError(f"layer {layer.name!r} (Gemm) expects 2-D operands, got A {list(a.shape)}")
    k = a.shape[0] if _int(layer, "transA", 0) else a.shape[1]
    m, n = layer.output.shape
    return m * n * k


def _matmul_k(layer: Layer) -> int:
    """The contracted size of a MatMul, whichever operand (activation or constant) comes first."""
    ops = _operands(layer)
    if len(ops) != 2:
        raise ShapeError(f"layer {layer.name!r} (MatMul) should have 2 operands, got {len(ops)}")
    out = layer.output.shape
    for a, b in ((ops[0].shape, ops[1].shape), (ops[1].shape, ops[0].shape)):
        if len(a) == 1 and len(b) >= 2 and a[0] == b[-2] and (not out or out[-1] == b[-1]):
            return a[0]
        if len(b) == 1 and len(a) >= 2 and a[-1] == b[0] and (not out or out[-1] == a[-2]):
            return b[0]
        if len(a) == 1 and len(b) == 1 and a == b:
            return a[0]
        if len(a) >= 2 and len(b) >= 2 and a[-1] == b[-2] and out[-2:] == (a[-2], b[-1]):
            return a[-1]
    raise ShapeError(
        f"layer {layer.name!r} (MatMul): operand shapes {[list(o.shape) for o in ops]} do not give "
        f"output shape {list(out)}"
    )


def _einsum_macs(layer: Layer) -> int:
    equation = str(layer.attr("equation", "")).replace(" ", "")
    lhs = equation.split("->")[0]
    terms = lhs.split(",")
    ops = _operands(layer)
    if len(terms) != len(ops):
        raise ShapeError(f"layer {layer.name!r} (Einsum): equation {equation!r} does not match {len(ops)} operands")
    sizes: dict[str, int] = {}
    spare = iter(c for c in string.ascii_letters if c not in equation)
    ellipsis_letters: list[str] = []
    for term, spec in zip(terms, ops, strict=True):
        if "..." in term:
            n_ell = len(spec.shape) - (len(term) - 3)
            while len(ellipsis_letters) < n_ell:
                ellipsis_letters.insert(0, next(spare))
            term = term.replace("...", "".join(ellipsis_letters[len(ellipsis_letters) - n_ell :]))
        if len(term) != len(spec.shape):
            raise ShapeError(f"layer {layer.name!r} (Einsum): term {term!r} does not match shape {list(spec.shape)}")
        for c, d in zip(term, spec.shape, strict=True):
            sizes[c] = max(sizes.get(c, 1), d)
    return math.prod(sizes.values())


MAC_COUNTERS: Mapping[str, Callable[[Layer], int]] = {
    "Conv": _conv_macs,
    "ConvTranspose": _conv_transpose_macs,
    "Gemm": _gemm_macs,
    "MatMul": lambda layer: layer.output.numel * _matmul_k(layer),
    "Einsum": _einsum_macs,
}


# -- FLOP counters for non-MAC ops ---------------------------------------------------------------------------
def _resize_flops(layer: Layer) -> int:
    mode = str(layer.attr("mode", "nearest"))
    x, y = layer.input.shape, layer.output.shape
    d = sum(1 for a, b in zip(x, y, strict=False) if a != b)
    if mode == "nearest" or d == 0:
        return 0
    taps = {"linear": 2, "bilinear": 2, "cubic": 4}.get(mode)
    if taps is None:
        raise UnsupportedOperatorError(f"layer {layer.name!r} ({layer.op}): unknown resize mode {mode!r}")
    return layer.output.numel * 2 * taps**d


def _flops(layer: Layer) -> int:
    op = layer.op
    if op in ELEMENTWISE_FLOPS:
        return layer.output.numel * ELEMENTWISE_FLOPS[op]
    if op in VARIADIC_FLOPS_OFFSET:
        return layer.output.numel * max(0, len(_operands(layer)) + VARIADIC_FLOPS_OFFSET[op])
    if op in NORM_FLOPS:
        return layer.output.numel * NORM_FLOPS[op]
    if op == "LRN":
        return layer.output.numel * (_int(layer, "size", 1) + 3)
    if op in POOL_OPS:
        return layer.output.numel * math.prod(_kernel(layer, len(layer.input.shape) - 2))
    if op in GLOBAL_POOL_OPS:
        return layer.input.numel
    if op in REDUCE_FLOPS:
        return layer.input.numel * REDUCE_FLOPS[op]
    if op in ("Resize", "Upsample"):
        return _resize_flops(layer)
    if op in DATA_MOVEMENT_OPS:
        return 0
    raise UnsupportedOperatorError(
        f"layer {layer.name!r}: operator {op!r} is not supported by the accounting "
        "(neither costed nor declared zero-cost in annette.graph.accounting)"
    )


def supported_ops() -> frozenset[str]:
    """Every op that :func:`account` knows (costed or zero-cost)."""
    return frozenset(
        {*ZERO_COST_OPS, *MAC_COUNTERS, *ELEMENTWISE_FLOPS, *VARIADIC_FLOPS_OFFSET, *NORM_FLOPS, *REDUCE_FLOPS,
         *DATA_MOVEMENT_OPS, *POOL_OPS, *GLOBAL_POOL_OPS, "LRN", "Resize", "Upsample"}
    )


FLOAT_DTYPES = frozenset({"float64", "float32", "float16", "bfloat16"})


def _weight_traffic(layer: Layer) -> tuple[int, int]:
    """(elements, bytes) of the constant operands the layer reads (see the module docstring)."""
    if layer.op not in GATHER_OPS or not layer.outputs:
        return _numel(layer.weights), _nbytes(layer.weights)
    out = layer.outputs[0].numel
    elems = nbytes = 0
    for w in layer.weights:
        read = min(w.numel, out)
        elems += read
        nbytes += w.nbytes * read // w.numel if w.numel else 0
    return elems, nbytes


def _params(layer: Layer) -> int:
    weights = layer.weights
    if layer.op == "BatchNormalization":
        weights = weights[:2]
    return sum(w.numel for w in weights if w.dtype in FLOAT_DTYPES)


def account(layer: Layer) -> LayerCost:
    """Count the MACs, FLOPs, parameters and traffic of one layer; raises UnsupportedOperatorError."""
    if layer.op in ZERO_COST_OPS:
        return ZERO
    if layer.op in MAC_COUNTERS:
        macs = MAC_COUNTERS[layer.op](layer)
        flops = 2 * macs
    else:
        macs, flops = 0, _flops(layer)
    weight_elems, weight_bytes = _weight_traffic(layer)
    return LayerCost(
        macs=macs,
        flops=flops,
        params=_params(layer),
        input_elems=_numel(layer.inputs),
        output_elems=_numel(layer.outputs),
        weight_elems=weight_elems,
        input_bytes=_nbytes(layer.inputs),
        output_bytes=_nbytes(layer.outputs),
        weight_bytes=weight_bytes,
        zero_cost=False,
    )


def account_graph(graph: Graph) -> GraphCost:
    """Account every layer of ``graph``; raises UnsupportedOperatorError on the first unknown op."""
    layers = {layer.name: account(layer) for layer in graph.layers}
    total = LayerCost(zero_cost=True)
    for cost in layers.values():
        total = total + cost
    return GraphCost(name=graph.name, layers=layers, total=total)
