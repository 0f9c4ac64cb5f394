"""The one feature extractor, shared by fitting and prediction.

Every executed layer (plain, fused or inserted) becomes one row of named columns with units. Counts come
from :mod:`annette.graph.accounting` (summed over the members of a fusion); bytes are the traffic of the
executed node: the activations entering the fused group from outside, the last member's outputs, and all
weights (intermediate tensors of a fusion never reach memory). Geometry (channels, spatial size, kernel,
stride, groups) is the primary member's (the first of the chain, e.g. the Conv of Conv+Relu).

Shape convention for geometry (ONNX, batch first): rank 4 ``N,C,H,W``; rank 3 ``N,C,L`` (h = L, w = 1);
rank 2 ``N,C`` (h = w = 1); rank 5 ``N,C,D,H,W`` (h = D·H, w = W); rank ≤ 1: c = number of elements.

Executed-layer types (:class:`annette.layers.layertype.LayerType`) name what a target runs: the member op
types joined by ``+`` (``Conv+Relu``), with a variant suffix where one op type hides very different kernels:
``Conv[dw]`` (depthwise: group = channels) and ``Conv[grouped]`` (1 < group < channels). An inserted node's
type is its op type (``ReorderInput``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from annette import checks
from annette.errors import AnnetteError, HardwareModelError
from annette.graph.accounting import account
from annette.graph.ir import Layer, TensorSpec
from annette.layers.layertype import LayerType, member_key
from annette.mapping.mapped import ExecutedLayer

# name -> (unit, meaning); the order is the column order.
FEATURES: Mapping[str, tuple[str, str]] = {
    "flops": ("flop", "floating-point operations (2 per MAC; elementwise ops per accounting)"),
    "macs": ("mac", "multiply-accumulates"),
    "input_bytes": ("byte", "activation bytes read from outside the executed layer"),
    "output_bytes": ("byte", "activation bytes written (last member's outputs)"),
    "weight_bytes": ("byte", "constant operand bytes of all members"),
    "bytes": ("byte", "input + output + weight bytes"),
    "intensity": ("flop/byte", "flops / bytes (0 where bytes = 0)"),
    "batch": ("count", "batch size (first dimension of the primary input)"),
    "in_c": ("count", "input channels of the primary member"),
    "in_h": ("px", "input height"),
    "in_w": ("px", "input width"),
    "out_c": ("count", "output channels / features"),
    "out_h": ("px", "output height"),
    "out_w": ("px", "output width"),
    "kernel_h": ("px", "kernel height (1 where not applicable; input height for global pools)"),
    "kernel_w": ("px", "kernel width"),
    "stride_h": ("px", "stride height (1 where not applicable)"),
    "stride_w": ("px", "stride width"),
    "groups": ("count", "convolution groups (1 where not applicable)"),
    "in_c_align": ("count", "largest power of two (up to 64) dividing in_c: blocked kernels need whole blocks"),
    "out_c_align": ("count", "largest power of two (up to 64) dividing out_c"),
    "n_inputs": ("count", "activation inputs entering the executed layer"),
    "n_members": ("count", "graph layers the executed layer covers (0 for inserted nodes)"),
    "group_width": ("count", "input channels per convolution group (in_c where not grouped)"),
    "group_width_align": ("count", "largest power of two (up to 64) dividing group_width"),
}
# columns added after the first feature set (bundles fitted before them do not take them)
LATER_FEATURES = frozenset({"in_c_align", "out_c_align", "group_width", "group_width_align"})
ALL_FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)  # the columns :func:`extract` returns, in order
# The columns of the first feature set: the default of hand-built models and bundles (converted ones keep it).
# Bundles fitted by ``annette fit`` take all columns; every model selects its own by name.
FEATURE_NAMES: tuple[str, ...] = tuple(n for n in FEATURES if n not in LATER_FEATURES)

GENERIC_TYPE = "*"


@dataclass(frozen=True, eq=False)
class Features:
    """A feature matrix: ``values[i, j]`` is column ``names[j]`` of row ``i``.

    ``errors`` maps a row index to the reason it could not be computed (its values are NaN).
    """

    names: tuple[str, ...]
    values: np.ndarray
    errors: Mapping[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def column(self, name: str) -> np.ndarray:
        try:
            return self.values[:, self.names.index(name)]  # type: ignore[no-any-return]
        except ValueError:
            raise HardwareModelError(f"feature {name!r} is not among the columns {list(self.names)}") from None

    def select(self, names: Sequence[str]) -> Features:
        """The columns ``names``, in that order (models fitted on an older, smaller feature set take these)."""
        if tuple(names) == self.names:
            return self
        missing = [n for n in names if n not in self.names]
        if missing:
            raise HardwareModelError(f"features {missing} are not among the columns {list(self.names)}")
        return Features(tuple(names), self.values[:, [self.names.index(n) for n in names]], self.errors)

    def take(self, rows: Sequence[int] | np.ndarray) -> Features:
        idx = np.asarray(rows, dtype=np.intp)
        return Features(self.names, self.values[idx])


def check_names(expected: Sequence[str], got: Sequence[str], where: str) -> None:
    """Refuse a feature matrix whose columns differ from the ones a model was fitted on."""
    if tuple(expected) != tuple(got):
        missing = [n for n in expected if n not in got]
        extra = [n for n in got if n not in expected]
        raise HardwareModelError(
            f"{where}: feature columns differ from the ones it was fitted on "
            f"(expected {len(expected)} columns {list(expected)}, got {list(got)}; "
            f"missing {missing}, unexpected {extra}); refit the model with this version of annette"
        )


# -- executed-layer types ------------------------------------------------------------------------------------
def op_key(layer: Layer) -> str:
    """The op type, with a variant suffix for depthwise and grouped convolutions."""
    if layer.op == "Conv":
        group = layer.attrs.get("group", 1)
        if isinstance(group, int) and group > 1:
            channels = layer.inputs[0].shape[1] if layer.inputs and len(layer.inputs[0].shape) > 1 else 0
            return member_key("Conv", "dw" if group == channels else "grouped")
    return layer.op


def executed_type(ex: ExecutedLayer) -> str:
    if ex.inserted:
        return ex.primary.op
    return str(LayerType(tuple([op_key(m) for m in ex.members])))


def type_fallbacks(type_name: str) -> list[str]:
    """Increasingly generic types to try for ``type_name``: itself, its primary member, that member's base op."""
    return LayerType.parse(type_name).fallbacks()


# -- rows ----------------------------------------------------------------------------------------------------
def _geometry(shape: tuple[int, ...]) -> tuple[int, int, int]:
    rank = len(shape)
    if rank >= 4:
        return shape[1], math.prod(shape[2:-1]), shape[-1]
    if rank == 3:
        return shape[1], shape[2], 1
    if rank == 2:
        return shape[1], 1, 1
    return math.prod(shape), 1, 1


def _pair(values: object, default: int) -> tuple[int, int]:
    if isinstance(values, tuple) and values and all(isinstance(v, (int, float)) for v in values):
        ints = [int(v) for v in values]  # type: ignore[call-overload]
        return (ints[0], ints[1]) if len(ints) >= 2 else (ints[0], default)
    return default, default


def _kernel(layer: Layer, in_h: int, in_w: int) -> tuple[int, int]:
    if layer.op.startswith("Global"):
        return in_h, in_w
    kernel = layer.attrs.get("kernel_shape")
    if kernel is None and layer.op in ("Conv", "ConvTranspose") and layer.weights:
        kernel = tuple(layer.weights[0].shape[2:])
    return _pair(kernel, 1)


@dataclass(frozen=True)
class ElementBits:
    """Bits per element a target stores, whatever the graph's dtypes (an int8 accelerator running an fp32 graph
    moves 1 byte per element). Where a hardware model sets it, byte features count elements at these widths."""

    activations: float
    weights: float

    def to_dict(self) -> dict[str, float]:
        return {"activations": self.activations, "weights": self.weights}

    @staticmethod
    def from_dict(d: Mapping[str, object]) -> ElementBits:
        return ElementBits(  # at most 64 bits: a larger width is no element type (1e308 made every time inf)
            checks.number(d["activations"], "element_bits.activations", positive=True, high=64.0),
            checks.number(d["weights"], "element_bits.weights", positive=True, high=64.0),
        )


def _align(n: int) -> int:
    """The largest power of two up to 64 that divides ``n`` (1 for n ≤ 0)."""
    return min(n & -n, 64) if n > 0 else 1


def _nbytes(tensors: Sequence[TensorSpec], bits: float | None = None) -> float:
    if bits is None:
        return sum(t.nbytes for t in tensors)
    return sum(t.numel for t in tensors) * bits / 8


def _row(ex: ExecutedLayer, element_bits: ElementBits | None = None) -> list[float]:
    primary = ex.primary
    weight_bytes: float
    if ex.inserted:
        flops = macs = weight_bytes = 0
        inputs: list[TensorSpec] = list(primary.inputs)
    else:
        flops = macs = weight_bytes = 0
        produced = {t.name for m in ex.members for t in m.outputs} | set(ex.bypassed)
        inputs = []
        for m in ex.members:
            cost = account(m)
            flops += cost.flops
            macs += cost.macs
            weight_bytes += cost.weight_bytes if element_bits is None else cost.weight_elems * element_bits.weights / 8
            inputs.extend(t for t in m.inputs if t.name not in produced)
    act_bits = None if element_bits is None else element_bits.activations
    in_bytes = _nbytes(inputs, act_bits)
    out_bytes = _nbytes(ex.members[-1].outputs, act_bits)
    total = in_bytes + out_bytes + weight_bytes
    x = primary.inputs[0].shape if primary.inputs else ()
    y = primary.outputs[0].shape if primary.outputs else ()
    if primary.op == "MatMul" and len(x) >= 3 and primary.weights and len(primary.weights[0].shape) == 2:
        # a linear layer on a (..., K) tensor is one (rows, K) x (K, N) product whatever the leading dimensions:
        # (S, 1, K) from a sequence-first export and (1, S, K) get the same row
        x, y = (1, math.prod(x[:-1]), x[-1]), (1, math.prod(y[:-1]), y[-1])
    in_c, in_h, in_w = _geometry(x)
    out_c, out_h, out_w = _geometry(y)
    kh, kw = _kernel(primary, in_h, in_w)
    sh, sw = _pair(primary.attrs.get("strides"), 1)
    group = primary.attrs.get("group", 1)
    group = group if isinstance(group, int) and group > 0 else 1
    width = in_c // group if in_c >= group else in_c
    return [
        flops, macs, in_bytes, out_bytes, weight_bytes, total, flops / total if total else 0.0,
        x[0] if x else 1, in_c, in_h, in_w, out_c, out_h, out_w, kh, kw, sh, sw,
        group, _align(in_c), _align(out_c), len(inputs), 0 if ex.inserted else len(ex.members),
        width, _align(width),
    ]


# Row keys (what :class:`DistinctRows` memoises on) come in forms that never compare equal: a plain layer's is its
# member key (an op string, then ints), a fusion's a pair (member keys, wiring), an inserted node's a triple (op
# type, shape, dtype), and :func:`_key` of any other inserted layer a pair (True, member keys).
def layer_key(m: Layer) -> tuple[object, ...]:
    """Op, tensor counts, shapes and dtypes, attribute names and values, flat (built by appending: the fastest);
    the row key of a plain executed layer of this one layer."""
    key: list[object] = [m.op, len(m.inputs), len(m.outputs), len(m.weights)]
    append = key.append  # three flat loops and a bound append: 10 % faster than a loop over the three groups
    for t in m.inputs:
        append(t.shape)
        append(t.dtype)
    for t in m.outputs:
        append(t.shape)
        append(t.dtype)
    for t in m.weights:
        append(t.shape)
        append(t.dtype)
    attrs = m.attrs
    if attrs:
        key.extend(attrs.keys())
        key.extend(attrs.values())
    return tuple(key)


def row_key(members: tuple[Layer, ...], bypassed: tuple[str, ...] = ()) -> tuple[object, ...]:
    """Everything the row of a plain or fused executed layer depends on: ops, tensor shapes and dtypes,
    attributes, and a fusion's internal wiring (which inputs come from other members or ``bypassed`` tensors)."""
    if len(members) == 1:
        return layer_key(members[0])
    produced = {t.name for m in members for t in m.outputs} | set(bypassed)
    wiring = tuple([tuple([t.name in produced for t in m.inputs]) for m in members])
    return (tuple([layer_key(m) for m in members]), wiring)


def inserted_row_key(op_type: str, tensor: TensorSpec) -> tuple[object, ...]:
    """Everything the row of a node made by :func:`annette.mapping.mapped.inserted_layer` depends on."""
    return (op_type, tensor.shape, tensor.dtype)


def _key(ex: ExecutedLayer) -> tuple[object, ...]:
    if ex.inserted:  # any inserted layer, however it was made
        return (True, tuple([layer_key(m) for m in ex.members]))
    return row_key(ex.members, ex.bypassed)


class DistinctRows:
    """Feature rows computed once per distinct key (repeated cells, the same block in many networks).

    A key (:func:`row_key`, :func:`inserted_row_key`) holds everything a row depends on; :meth:`get` finds the row
    of a key seen before, :meth:`add` computes a new one from its executed layer. Rows that cannot be computed
    are NaN, with their reason in :attr:`errors`.
    """

    def __init__(self, element_bits: ElementBits | None = None) -> None:
        self.element_bits = element_bits
        self.rows: list[list[float]] = []
        self.layers: list[ExecutedLayer] = []  # the first executed layer of each row
        self.errors: dict[int, str] = {}
        self._memo: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: Hashable) -> int | None:
        try:
            return self._memo.get(key)
        except TypeError:  # an unhashable attribute value: never memoised
            return None

    def add(self, key: Hashable, layer: ExecutedLayer) -> int:
        u = len(self.rows)
        try:
            self.rows.append(_row(layer, self.element_bits))
        except AnnetteError as exc:
            self.errors[u] = str(exc)
            self.rows.append([math.nan] * len(ALL_FEATURE_NAMES))
        self.layers.append(layer)
        try:
            self._memo[key] = u
        except TypeError:
            pass
        return u

    def features(self) -> Features:
        values = np.array(self.rows, dtype=np.float64).reshape(len(self.rows), len(ALL_FEATURE_NAMES))
        return Features(ALL_FEATURE_NAMES, values, dict(self.errors))


def extract(layers: Sequence[ExecutedLayer], *, element_bits: ElementBits | None = None) -> Features:
    """Features of many executed layers at once; rows that cannot be computed are NaN and listed in ``errors``.

    ``element_bits`` counts bytes at the target's element widths instead of the graph's dtypes.

    Layers with identical shapes, attributes and wiring (repeated cells, the same block in many networks) are
    computed once per call.
    """
    distinct = DistinctRows(element_bits)
    inverse = []
    for ex in layers:
        key = _key(ex)
        u = distinct.get(key)
        inverse.append(distinct.add(key, ex) if u is None else u)
    rows = distinct.features()
    idx = np.array(inverse, dtype=np.intp)
    errors = {i: rows.errors[u] for i, u in enumerate(inverse) if u in rows.errors} if rows.errors else {}
    return Features(rows.names, rows.values[idx].reshape(len(idx), len(rows.names)), errors)
