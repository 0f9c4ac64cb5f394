"""Bounds on what importing an ONNX model may cost: nothing is allocated to learn a shape.

A small file can describe huge tensors: ``ConstantOfShape`` (or ``Range``, ``Expand``, ``Tile``) of a constant
``[N]``, then any op that propagates its values, costs ~145 bytes per element in onnx's shape inference with
data propagation (a 144-byte file exhausted 16 GB); an initializer can declare more elements than it holds
(large ones are hidden from the checker, which would notice); the ONNX Runtime fallback runs the model on zero
inputs of the declared shapes. The importer (:mod:`annette.importers.onnx`) calls these checks:

- :func:`check_initializers`: every initializer holds exactly the data its dims declare;
- :func:`check_io_shapes`: graph inputs and outputs declare shapes (naming the tensor, before the checker
  does without naming it), dimensions are at most :data:`~annette.checks.MAX_DIM`;
- :func:`data_prop_risk`: why data propagation would be unsafe on a model (then shape inference runs
  without it, and constant folding resolves the shape computations);
- :func:`check_fold_size`: a node folded on constant inputs may not create more than :data:`MAX_FOLD_ELEMS`
  elements (more than 4x its inputs), checked before it is evaluated;
- :func:`check_run_bytes`: the ONNX Runtime fallback's inputs and known tensors stay within
  :data:`MAX_RUN_BYTES`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from annette.checks import MAX_DIM
from annette.errors import ModelFileError, ShapeError

MAX_FOLD_ELEMS = 2**24  # a folded constant above this (and above 4x its inputs) is refused
MAX_PROPAGATED_ELEMS = 2**20  # integer elements shape inference may propagate as data
MAX_RUN_BYTES = 2**28  # bytes of inputs (and of any known tensor) the ONNX Runtime fallback may allocate
INT_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})
# Ops whose output size depends on their input values, not only on their input shapes.
VALUE_SIZED_OPS = frozenset(
    {"ConstantOfShape", "Range", "Expand", "Tile", "OneHot", "Resize", "Upsample", "Pad", "Reshape"}
)

_TYPED_FIELD = {
    onnx.TensorProto.FLOAT: "float_data", onnx.TensorProto.DOUBLE: "double_data",
    onnx.TensorProto.INT64: "int64_data", onnx.TensorProto.UINT64: "uint64_data",
    onnx.TensorProto.UINT32: "uint64_data", onnx.TensorProto.STRING: "string_data",
    onnx.TensorProto.COMPLEX64: "float_data", onnx.TensorProto.COMPLEX128: "double_data",
}  # fmt: skip
_KNOWN_TYPES = frozenset(v for v in onnx.TensorProto.DataType.values() if v != onnx.TensorProto.UNDEFINED)
_PER_ELEMENT = {onnx.TensorProto.COMPLEX64: 2, onnx.TensorProto.COMPLEX128: 2}


def _itemsize(data_type: int) -> int | None:
    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return None


def _bits(data_type: int) -> int | None:
    name = onnx.TensorProto.DataType.Name(data_type) if data_type in onnx.TensorProto.DataType.values() else ""
    if name in ("INT4", "UINT4", "FLOAT4E2M1"):
        return 4
    if name.startswith(("FLOAT8", "INT8", "UINT8")) or name == "BOOL":
        return 8
    size = _itemsize(data_type)
    return None if size is None else 8 * size


def check_initializers(model: onnx.ModelProto, where: str) -> None:
    """Every initializer's dims are non-negative and at most MAX_DIM, and its data holds exactly the elements
    they declare (raw bytes or typed values); raises ModelFileError naming the tensor."""
    for t in model.graph.initializer:
        dims = list(t.dims)
        if any(d < 0 or d > MAX_DIM for d in dims):
            raise ModelFileError(f"{where}: initializer {t.name!r} has dims {dims} (each must be in [0, {MAX_DIM}])")
        n = math.prod(dims)
        if t.data_location == onnx.TensorProto.EXTERNAL and not t.HasField("raw_data"):
            continue  # not loaded (a ModelProto handed over with external references): nothing allocated
        if t.HasField("raw_data"):
            bits = _bits(t.data_type)
            if bits is None:
                raise ModelFileError(f"{where}: initializer {t.name!r} has an unknown element type {t.data_type}")
            expected = (n * bits + 7) // 8
            if len(t.raw_data) != expected:
                raise ModelFileError(
                    f"{where}: initializer {t.name!r} declares dims {dims} ({n} elements, {expected} bytes) but "
                    f"holds {len(t.raw_data)} bytes"
                )
            continue
        field = _TYPED_FIELD.get(t.data_type, "int32_data")
        got = len(getattr(t, field))
        per = _PER_ELEMENT.get(t.data_type, 1)
        bits = _bits(t.data_type)
        # int32_data packs 4-bit types two per value
        expected = (n + 1) // 2 if bits == 4 and field == "int32_data" else n * per
        if got != expected:
            raise ModelFileError(
                f"{where}: initializer {t.name!r} declares dims {dims} ({n} elements) but holds {got // per} values"
            )


def check_io_shapes(model: onnx.ModelProto, constants: set[str], input_shapes: Mapping[str, object] | None) -> None:
    """Graph inputs (that --input-shape does not set) and outputs declare a tensor shape; no declared
    dimension exceeds MAX_DIM."""
    g = model.graph
    for vi in g.input:
        if vi.name in constants:
            continue
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise ShapeError(f"graph input {vi.name!r} is not a tensor (annette imports tensor inputs only)")
        if t.elem_type not in _KNOWN_TYPES:
            raise ModelFileError(f"graph input {vi.name!r} has an unknown element type {t.elem_type}")
        if not t.HasField("shape") and not (input_shapes and vi.name in input_shapes):
            raise ShapeError(f"graph input {vi.name!r} has no shape; set it with --input-shape {vi.name}=D0,D1,...")
        for d in t.shape.dim:
            if d.HasField("dim_value") and d.dim_value > MAX_DIM:
                raise ShapeError(
                    f"graph input {vi.name!r}: dimension {d.dim_value} is too large (at most {MAX_DIM}); set the "
                    f"shape with --input-shape {vi.name}=D0,D1,..."
                )
    for vi in g.output:
        if vi.type.HasField("tensor_type") and not vi.type.tensor_type.HasField("shape"):
            raise ModelFileError(
                f"graph output {vi.name!r} declares no shape (ONNX requires one on graph outputs, symbolic "
                "dimensions allowed); the file is malformed"
            )


def _numel(vi: onnx.ValueInfoProto) -> int | None:
    t = vi.type.tensor_type
    if not t.HasField("shape") or any(not d.HasField("dim_value") for d in t.shape.dim):
        return None
    return math.prod(int(d.dim_value) for d in t.shape.dim)


def data_prop_risk(inferred: onnx.ModelProto) -> str | None:
    """Why shape inference with data propagation could blow up on this model (inferred without it), or None:
    integer tensors holding more than MAX_PROPAGATED_ELEMS elements in all, or one of unknown size made by a
    value-sized op (its size would be learned, and its values propagated, only with data propagation)."""
    g = inferred.graph
    producers = {o: n for n in g.node for o in n.output}
    total = 0
    for vi in (*g.value_info, *g.output):
        if vi.type.tensor_type.elem_type not in INT_TYPES:
            continue
        n = _numel(vi)
        if n is None:
            node = producers.get(vi.name)
            if node is not None and node.op_type in VALUE_SIZED_OPS and node.op_type != "Reshape":
                return f"integer tensor {vi.name!r} of {node.op_type} {node.name!r} has a size known only from values"
            continue
        total += n
        if total > MAX_PROPAGATED_ELEMS:
            return f"integer tensors of more than {MAX_PROPAGATED_ELEMS} elements (e.g. {vi.name!r}: {n})"
    return None


def _value_sized_elems(node: onnx.NodeProto, args: Sequence[np.ndarray | None]) -> int | None:
    """The element count ``node`` would produce from these constant inputs, for ops whose size follows from
    values (None where it does not apply or cannot be told)."""
    try:
        op = node.op_type
        if op == "ConstantOfShape" and args and args[0] is not None:
            return math.prod(max(int(v), 0) for v in np.asarray(args[0]).reshape(-1))
        if op == "Range" and len(args) == 3 and all(a is not None for a in args):
            start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in args)  # type: ignore[union-attr]
            return max(math.ceil((limit - start) / delta), 0) if delta else None
        if op == "Expand" and len(args) == 2 and all(a is not None for a in args):
            shape = [int(v) for v in np.asarray(args[1]).reshape(-1)]
            x = list(np.shape(np.asarray(args[0])))
            n = max(len(x), len(shape))
            x, shape = [1] * (n - len(x)) + x, [1] * (n - len(shape)) + shape
            return math.prod(max(a, b) for a, b in zip(x, shape, strict=True))
        if op == "Tile" and len(args) == 2 and all(a is not None for a in args):
            return int(np.asarray(args[0]).size) * math.prod(max(int(v), 0) for v in np.asarray(args[1]).reshape(-1))
        if op == "OneHot" and len(args) >= 2 and all(a is not None for a in args[:2]):
            return int(np.asarray(args[0]).size) * max(int(np.asarray(args[1]).reshape(-1)[0]), 0)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return None


def check_fold_size(node: onnx.NodeProto, args: Sequence[np.ndarray | None], inferred: Sequence[int | None]) -> None:
    """Refuse to fold ``node`` when its outputs (inferred element counts, or what its values imply) would
    exceed MAX_FOLD_ELEMS and 4x its inputs: a constant that large is not a shape computation."""
    n_in = sum(int(np.size(a)) for a in args if a is not None)
    implied = _value_sized_elems(node, args)
    known = [n for n in inferred if n is not None]
    n_out = max([*known, *([implied] if implied is not None else [])], default=0)
    if n_out > max(MAX_FOLD_ELEMS, 4 * n_in):
        raise ShapeError(
            f"node {node.name!r} ({node.op_type}) would create a constant of {n_out:,} elements from {n_in:,} "
            f"(annette folds constants of at most {MAX_FOLD_ELEMS:,} elements): its constant inputs ask for an "
            "implausibly large tensor"
        )


def check_run_bytes(feeds: Mapping[str, tuple[tuple[int, ...], int]], known: Mapping[str, tuple[tuple[int, ...], int]]) -> None:
    """The ONNX Runtime fallback allocates its zero inputs and runs the model: refuse when the inputs, or any
    tensor whose shape is known, would take more than MAX_RUN_BYTES."""
    def nbytes(shape: tuple[int, ...], elem: int) -> int:
        return math.prod(shape) * (_itemsize(elem) or 8)

    inputs = sum(nbytes(*v) for v in feeds.values())
    largest = max(((nbytes(*v), k) for k, v in known.items()), default=(0, ""))
    if inputs > MAX_RUN_BYTES or largest[0] > MAX_RUN_BYTES:
        what = f"its inputs take {inputs:,} bytes" if inputs > MAX_RUN_BYTES else f"tensor {largest[1]!r} takes {largest[0]:,} bytes"
        raise ShapeError(
            f"some shapes are unknown after ONNX shape inference, and learning them by running the model would "
            f"allocate too much ({what}; at most {MAX_RUN_BYTES:,}); set the input shapes with --input-shape "
            "NAME=D0,D1,..."
        )


def check_text(model: onnx.ModelProto, where: str) -> None:
    """Every name the importer reads is valid UTF-8 (protobuf returns such a string field as ``bytes``, which
    fails deep in the import); raises ModelFileError naming the field."""
    g = model.graph

    def names() -> Iterator[tuple[str, object]]:
        yield "graph name", g.name
        for o in model.opset_import:
            yield "opset domain", o.domain
        for node in g.node:
            yield "node name", node.name
            yield "node op_type", node.op_type
            yield "node domain", node.domain
            for t in (*node.input, *node.output):
                yield f"tensor name of node {node.name!r}", t
            for a in node.attribute:
                yield f"attribute name of node {node.name!r}", a.name
        for vi in (*g.input, *g.output, *g.value_info):
            yield "value name", vi.name
            for d in vi.type.tensor_type.shape.dim:
                yield f"dimension name of {vi.name!r}", d.dim_param
        for t in g.initializer:
            yield "initializer name", t.name
            for e in t.external_data:
                yield f"external data of {t.name!r}", e.value
        for f in model.functions:
            yield "function name", f.name
            for n in f.node:
                yield f"node name in function {f.name!r}", n.name
                yield f"node op_type in function {f.name!r}", n.op_type

    for what, value in names():
        if not isinstance(value, str):
            raise ModelFileError(f"{where}: a {what} is not valid UTF-8 ({value!r:.60}); the file is corrupt")
