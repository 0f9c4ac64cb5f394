"""Legacy ANNETTE graph JSON <-> annette IR.

Legacy graphs store TensorFlow-style NHWC shapes with a leading batch dimension, one output shape per layer
and explicit ``parents``/``children`` lists; the IR uses ONNX op types and NCHW shapes (see ``ir.py``).

Conversion rules (``graph_from_legacy``):

- shapes: rank 4 ``[N, H, W, C]`` -> ``(N, C, H, W)``, rank 3 ``[N, L, C]`` -> ``(N, C, L)``, other ranks as
  they are; a batch of ``-1`` becomes 1; any other ``-1`` or a symbolic template value raises
  :class:`LegacyFormatError`. Output shapes are kept as recorded, except that ``Flatten`` and
  ``FullyConnected`` outputs are made 2-D, as ONNX defines them.
- edges: a layer reads the outputs of its ``parents`` (in order) and of any layer that lists it as a child
  without being listed as its parent; a tensor is named after the layer that produces it.
- a ``DataInput`` without parents becomes a graph input; other parent-less layers read a graph input
  ``<layer>_input`` of their recorded ``input_shape``.
- ops: see ``_CONVERTERS``. Weights whose sizes the legacy file implies (conv kernels, FC matrices, batch-norm
  vectors) become ``TensorSpec`` weights; nothing else is invented, so layers whose semantics the legacy file
  does not record (LRN size, Slice offsets, Gather indices, SpaceToBatchND, inner ``DataInput`` nodes) raise
  :class:`UnsupportedOperatorError` naming the layer.

``graph_to_legacy`` writes the legacy format back (ONNX ops -> legacy types, NCHW -> NHWC). Depthwise
convolutions come back as ``DepthwiseConv`` (the original converter's canonical form) even where the legacy
file called them ``Conv`` with a ``[kh, kw, 1, C]`` kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from annette.errors import LegacyFormatError, ShapeError, UnsupportedOperatorError
from annette.graph.ir import AttrValue, Graph, Layer, TensorSpec
from annette.legacy.graph import LegacyGraph, load_graph, parent_name

Attrs = dict[str, AttrValue]
Converted = tuple[str, tuple[TensorSpec, ...], Attrs]

# NHWC index -> NCHW index, per rank (rank 3 is [N, L, C])
_TO_NCHW: Mapping[int, tuple[int, ...]] = {4: (0, 3, 1, 2), 3: (0, 2, 1)}


def is_legacy_graph(data: Mapping[str, Any]) -> bool:
    """True for a parsed legacy ANNETTE graph: a non-empty ``layers`` object of layers with ``type``."""
    layers = data.get("layers")
    return (
        data.get("schema") != "annette.graph"
        and isinstance(layers, dict)
        and bool(layers)
        and all(isinstance(layer, dict) and "type" in layer and "parents" in layer for layer in layers.values())
    )


# -- shapes and axes -------------------------------------------------------------------------------------
def _perm(rank: int) -> tuple[int, ...]:
    return _TO_NCHW.get(rank, tuple(range(rank)))


def _nchw(layer: str, key: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or not shape:
        raise LegacyFormatError(f"layer {layer!r}: '{key}' should be a non-empty list, got {shape!r}")
    dims: list[int] = []
    for i, d in enumerate(shape):
        if isinstance(d, bool) or not isinstance(d, int):
            raise LegacyFormatError(
                f"layer {layer!r}: {key}[{i}] is the symbolic value {d!r}; a template graph must be filled in first"
            )
        if d < 0:
            if i == 0 and d == -1:
                d = 1  # unknown batch -> 1
            else:
                raise LegacyFormatError(f"layer {layer!r}: {key}[{i}] is the unknown dimension {d}")
        dims.append(d)
    return tuple(dims[p] for p in _perm(len(dims)))


def _nhwc(shape: Sequence[int]) -> list[int]:
    perm = _perm(len(shape))
    out = [0] * len(shape)
    for nchw_index, nhwc_index in enumerate(perm):
        out[nhwc_index] = shape[nchw_index]
    return out


def _nchw_axis(rank: int, nhwc_axis: int) -> int:
    return _perm(rank).index(nhwc_axis % rank)


def _nhwc_axis(rank: int, nchw_axis: int) -> int:
    return _perm(rank)[nchw_axis % rank]


def _ints(layer: str, raw: Mapping[str, Any], key: str, length: int, default: int) -> list[int]:
    values = raw.get(key)
    if values is None:
        return [default] * length
    if not isinstance(values, list) or len(values) != length or not all(isinstance(v, int) for v in values):
        raise LegacyFormatError(f"layer {layer!r}: '{key}' should be {length} integers, got {values!r}")
    return values


def _spatial(layer: str, raw: Mapping[str, Any], rank: int) -> Attrs:
    """strides/pads/dilations of a legacy NHWC op of tensor rank ``rank`` as ONNX attributes."""
    strides = _ints(layer, raw, "strides", rank, 1)[1 : rank - 1]
    pads = _ints(layer, raw, "pads", 2 * rank, 0)
    attrs: Attrs = {"strides": tuple(strides), "pads": (*pads[1 : rank - 1], *pads[rank + 1 : 2 * rank - 1])}
    if "dilations" in raw:
        attrs["dilations"] = tuple(_ints(layer, raw, "dilations", rank, 1)[1 : rank - 1])
    return attrs


def _removed_axes(layer: str, big: Sequence[int], small: Sequence[int], unit: bool = True) -> tuple[int, ...]:
    """Axes of ``big`` that are absent from ``small`` (of size 1 if ``unit``: Squeeze/Unsqueeze; any: reductions)."""
    removed, j = [], 0
    for i, d in enumerate(big):
        if j < len(small) and d == small[j]:
            j += 1
        elif d == 1 or not unit:
            removed.append(i)
        else:
            j = -1
            break
    if j != len(small):
        raise UnsupportedOperatorError(
            f"layer {layer!r}: cannot match shapes {list(big)} and {list(small)} (NCHW) by removing axes"
        )
    return tuple(removed)


# -- op converters: (name, legacy layer, input specs, output spec) -> (op, weights, attrs) --------------------
def _kernel(name: str, raw: Mapping[str, Any], length: int) -> list[int]:
    kernel = raw.get("kernel_shape")
    if not isinstance(kernel, list) or len(kernel) != length or not all(isinstance(k, int) and k > 0 for k in kernel):
        raise LegacyFormatError(f"layer {name!r} ({raw['type']}): 'kernel_shape' should be {length} sizes, got {kernel!r}")
    return kernel


def _conv(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    x = ins[0].shape
    rank = len(x)
    if rank not in (3, 4) or len(out.shape) != rank:
        raise UnsupportedOperatorError(f"layer {name!r} ({raw['type']}): expected 1-D or 2-D convolution, got input {list(x)}")
    kernel = _kernel(name, raw, rank)
    spatial, cin_g, cout = kernel[: rank - 2], kernel[rank - 2], kernel[rank - 1]
    if raw["type"] == "DepthwiseConv":  # [kh, kw, C, multiplier]; PyTorch exports also write [kh, kw, 1, 1]
        cin_g, cout = 1, (kernel[2] * kernel[3] if kernel[2] == x[1] else out.shape[1])
    if x[1] % cin_g or cout != out.shape[1]:
        raise UnsupportedOperatorError(
            f"layer {name!r} ({raw['type']}): kernel {kernel} does not fit input channels {x[1]} and output "
            f"channels {out.shape[1]}"
        )
    attrs: Attrs = {"kernel_shape": tuple(spatial), **_spatial(name, raw, rank), "group": x[1] // cin_g}
    return "Conv", (TensorSpec(f"{name}.weight", (cout, cin_g, *spatial)),), attrs


def _conv_transpose(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    x = ins[0].shape
    if len(x) != 4:
        raise UnsupportedOperatorError(f"layer {name!r} ({raw['type']}): expected a 2-D transposed convolution")
    kh, kw, k2, k3 = _kernel(name, raw, 4)  # TensorFlow's [kh, kw, C_out, C_in], or [kh, kw, C_in, C_out]
    cin, cout = x[1], out.shape[1]
    if (k2, k3) not in ((cout, cin), (cin, cout)):
        raise UnsupportedOperatorError(
            f"layer {name!r} ({raw['type']}): kernel {raw['kernel_shape']} does not fit C_in={cin}, C_out={cout}"
        )
    attrs: Attrs = {"kernel_shape": (kh, kw), **_spatial(name, raw, 4)}
    if "out_pad" in raw:
        attrs["output_padding"] = tuple(_ints(name, raw, "out_pad", 2, 0))
    return "ConvTranspose", (TensorSpec(f"{name}.weight", (cin, cout, kh, kw)),), attrs


def _pool(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    rank = len(ins[0].shape)
    kind = raw.get("pooling_type")
    if kind not in ("MAX", "AVG"):
        raise UnsupportedOperatorError(f"layer {name!r} ({raw['type']}): pooling_type should be MAX or AVG, got {kind!r}")
    if rank not in (3, 4):
        raise UnsupportedOperatorError(
            f"layer {name!r} ({raw['type']}): expected a 1-D or 2-D input, got {list(ins[0].shape)} from {ins[0].name!r}"
        )
    kernel = _kernel(name, raw, rank)[1 : rank - 1]
    attrs: Attrs = {"kernel_shape": tuple(kernel), **_spatial(name, raw, rank)}
    attrs.pop("dilations", None)
    return ("MaxPool" if kind == "MAX" else "AveragePool"), (), attrs


def _fully_connected(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    x = ins[0].shape
    if len(x) != 2:
        raise UnsupportedOperatorError(
            f"layer {name!r} (FullyConnected) reads a {len(x)}-D tensor {list(x)} ({ins[0].name!r}); Gemm needs 2-D"
        )
    return "Gemm", (TensorSpec(f"{name}.weight", (out.shape[1], x[1])),), {"transB": 1}


def _matmul(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    if len(ins) == 2:
        return "MatMul", (), {}
    return "MatMul", (TensorSpec(f"{name}.weight", (ins[0].shape[-1], out.shape[-1])),), {}


def _batch_norm(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    c = ins[0].shape[1]
    return "BatchNormalization", tuple(TensorSpec(f"{name}.{w}", (c,)) for w in ("scale", "bias", "mean", "var")), {}


def _same(op: str) -> Callable[[str, Mapping[str, Any], Sequence[TensorSpec], TensorSpec], Converted]:
    return lambda name, raw, ins, out: (op, (), {})


def _binary(op: str) -> Callable[[str, Mapping[str, Any], Sequence[TensorSpec], TensorSpec], Converted]:
    def convert(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
        # a legacy binary op with one parent applies a constant, whose shape the file does not record: a scalar
        return op, (() if len(ins) >= 2 else (TensorSpec(f"{name}.const", ()),)), {}

    return convert


def _softmax(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    rank = len(ins[0].shape)
    return "Softmax", (), {"axis": _nchw_axis(rank, rank - 1)}


def _concat(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    rank = len(out.shape)
    if "axis" in raw:
        return "Concat", (), {"axis": _nchw_axis(rank, int(raw["axis"]))}
    for axis in range(rank):
        if all(len(t.shape) == rank for t in ins) and sum(t.shape[axis] for t in ins) == out.shape[axis]:
            if all(t.shape[:axis] + t.shape[axis + 1 :] == out.shape[:axis] + out.shape[axis + 1 :] for t in ins):
                return "Concat", (), {"axis": axis}
    raise UnsupportedOperatorError(
        f"layer {name!r} (Concat): no axis joins inputs {[list(t.shape) for t in ins]} into {list(out.shape)}"
    )


def _squeeze(op: str) -> Callable[[str, Mapping[str, Any], Sequence[TensorSpec], TensorSpec], Converted]:
    def convert(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
        x = ins[0].shape
        axes = _removed_axes(name, x, out.shape) if op == "Squeeze" else _removed_axes(name, out.shape, x)
        return op, (), {"axes": axes}

    return convert


def _reduce_mean(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    x, y = ins[0].shape, out.shape
    if len(x) == len(y):
        axes = tuple(i for i, (a, b) in enumerate(zip(x, y, strict=True)) if a != b)
        return "ReduceMean", (), {"axes": axes, "keepdims": 1}
    return "ReduceMean", (), {"axes": _removed_axes(name, x, y, unit=False), "keepdims": 0}


def _transpose(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    rank = len(ins[0].shape)
    perm = _ints(name, raw, "perm", rank, 0)
    p = _perm(rank)
    return "Transpose", (), {"perm": tuple(p.index(perm[p[j]]) for j in range(rank))}


def _pad(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    rank = len(ins[0].shape)
    pads = _ints(name, raw, "pads", 2 * rank, 0)
    p = _perm(rank)
    return "Pad", (), {"pads": (*(pads[i] for i in p), *(pads[rank + i] for i in p))}


def _resize(mode: str) -> Callable[[str, Mapping[str, Any], Sequence[TensorSpec], TensorSpec], Converted]:
    return lambda name, raw, ins, out: ("Resize", (), {"mode": mode, "sizes": out.shape})


def _argmax(name: str, raw: Mapping[str, Any], ins: Sequence[TensorSpec], out: TensorSpec) -> Converted:
    rank = len(ins[0].shape)
    return "ArgMax", (), {"axis": _nchw_axis(rank, rank - 1), "keepdims": 0}


_CONVERTERS: Mapping[str, Callable[[str, Mapping[str, Any], Sequence[TensorSpec], TensorSpec], Converted]] = {
    "Conv": _conv,
    "Conv1d": _conv,
    "DepthwiseConv": _conv,
    "ConvTranspose": _conv_transpose,
    "ConvTranspose2d": _conv_transpose,
    "Pool": _pool,
    "Pool1d": _pool,
    "FullyConnected": _fully_connected,
    "MatMul": _matmul,
    "BatchNorm": _batch_norm,
    "Relu6": lambda name, raw, ins, out: ("Clip", (), {"min": 0.0, "max": 6.0}),
    "Concat": _concat,
    "Softmax": _softmax,
    "Flatten": lambda name, raw, ins, out: ("Flatten", (), {"axis": 1}),
    "Reshape": lambda name, raw, ins, out: ("Reshape", (), {"shape": out.shape}),
    "Squeeze": _squeeze("Squeeze"),
    "Unsqueeze": _squeeze("Unsqueeze"),
    "ReduceMean": _reduce_mean,
    "Transpose": _transpose,
    "Pad": _pad,
    "Resize": _resize("nearest"),
    "ResizeNearestNeighbor": _resize("nearest"),
    "ResizeBilinear": _resize("linear"),
    "ArgMax": _argmax,
    **{op: _same(op) for op in ("Relu", "Sigmoid", "Tanh", "Softplus", "LeakyRelu", "Exp", "Log", "Clip", "Dropout", "Shape")},
    **{op: _binary(op) for op in ("Add", "Mul", "Sub", "Div", "Pow")},
    "RealDiv": _binary("Div"),
}

_UNSUPPORTED_WHY: Mapping[str, str] = {
    "LRN": "its window size is not recorded in legacy graphs",
    "Slice": "its start offsets are not recorded in legacy graphs",
    "Gather": "its indices are not recorded in legacy graphs",
    "SpaceToBatchND": "ONNX has no such operator",
    "BatchToSpaceND": "ONNX has no such operator",
}

_INT64_OUTPUT_OPS = frozenset({"Shape", "ArgMax"})


def _output_shape(name: str, raw: Mapping[str, Any]) -> tuple[int, ...]:
    shape = _nchw(name, "output_shape", raw.get("output_shape"))
    if raw["type"] in ("Flatten", "FullyConnected"):
        rest = 1
        for d in shape[1:]:
            rest *= d
        return (shape[0], rest)
    return shape


def graph_from_legacy(source: str | Path | Mapping[str, Any] | LegacyGraph, *, name: str | None = None) -> Graph:
    """Convert a concrete legacy ANNETTE graph (path, parsed dict or loaded graph) to a validated annette Graph."""
    lg = load_graph(source)
    try:
        return _graph_from_legacy(lg, name)
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        why = f"missing key {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
        raise LegacyFormatError(f"{lg.source}: malformed legacy graph: {type(exc).__name__}: {why}") from exc


def _graph_from_legacy(lg: LegacyGraph, name: str | None) -> Graph:
    layers = lg.layers
    preds: dict[str, list[str]] = {n: [parent_name(p) for p in layer["parents"]] for n, layer in layers.items()}
    for n, layer in layers.items():
        for c in layer["children"]:
            if n not in preds[c]:
                preds[c].append(n)
    graph_inputs: list[TensorSpec] = []
    outputs: dict[str, TensorSpec] = {}
    converted: list[Layer] = []
    for n, raw in layers.items():
        typ = raw["type"]
        if typ == "DataInput":
            if preds[n]:
                raise UnsupportedOperatorError(
                    f"layer {n!r} (DataInput) has parents {preds[n]}: an inner DataInput is an unconverted operator "
                    "of unknown type in the legacy file"
                )
            spec = TensorSpec(n, _nchw(n, "output_shape", raw.get("output_shape")))
            graph_inputs.append(spec)
            outputs[n] = spec
            continue
        out = TensorSpec(n, _output_shape(n, raw), "int64" if typ in _INT64_OUTPUT_OPS else "float32")
        outputs[n] = out
    for n, raw in layers.items():
        typ = raw["type"]
        if typ == "DataInput":
            continue
        if typ in _UNSUPPORTED_WHY or typ not in _CONVERTERS:
            why = _UNSUPPORTED_WHY.get(typ, f"no ONNX equivalent is known for it (known: {', '.join(sorted(_CONVERTERS))})")
            raise UnsupportedOperatorError(f"legacy layer {n!r} of type {typ!r} cannot be converted: {why}")
        if preds[n]:
            ins = tuple(outputs[p] for p in preds[n])
        elif "input_shape" in raw:
            ins = (TensorSpec(f"{n}_input", _nchw(n, "input_shape", raw["input_shape"])),)
            graph_inputs.append(ins[0])
        else:
            raise UnsupportedOperatorError(f"legacy layer {n!r} ({typ}) has no parents and no input_shape: its input is unknown")
        try:
            op, weights, attrs = _CONVERTERS[typ](n, raw, ins, outputs[n])
        except (LegacyFormatError, UnsupportedOperatorError, ShapeError):
            raise
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
            why = f"missing key {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
            raise LegacyFormatError(
                f"{lg.source}: legacy layer {n!r} ({typ}) cannot be converted: {type(exc).__name__}: {why} (inputs "
                f"{[list(t.shape) for t in ins]})"
            ) from exc
        converted.append(Layer(name=n, op=op, inputs=ins, outputs=(outputs[n],), weights=weights, attrs=attrs))
    consumed = {t.name for layer in converted for t in layer.inputs}
    graph_outputs = tuple(layer.outputs[0].name for layer in converted if layer.outputs[0].name not in consumed)
    metadata = {"source": "legacy-annette", "file": lg.source}
    return Graph(name or lg.name, tuple(graph_inputs), tuple(converted), graph_outputs, metadata).validate()


# -- IR -> legacy ----------------------------------------------------------------------------------------
def _int_list(layer: Layer, key: str, default: Sequence[int]) -> list[int]:
    value = layer.attr(key)
    if value is None:
        return list(default)
    if not isinstance(value, tuple):
        raise UnsupportedOperatorError(f"layer {layer.name!r} ({layer.op}): attribute {key!r} should be a list, got {value!r}")
    return [int(v) for v in value]


def _int_attr(layer: Layer, key: str, default: int) -> int:
    value = layer.attr(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnsupportedOperatorError(f"layer {layer.name!r} ({layer.op}): attribute {key!r} should be a number, got {value!r}")
    return int(value)


def _legacy_type_and_attrs(layer: Layer) -> tuple[str, dict[str, Any]]:
    op, x, y = layer.op, layer.input.shape if layer.inputs else (), layer.output.shape
    rank = len(x)
    out: dict[str, Any] = {}

    def spatial(kernel: Sequence[int]) -> None:
        n = len(kernel)
        pads = _int_list(layer, "pads", [0] * (2 * n))
        out["strides"] = [1, *_int_list(layer, "strides", [1] * n), 1]
        out["pads"] = [0, *pads[:n], 0, 0, *pads[n:], 0]
        if layer.attr("dilations") is not None:
            out["dilations"] = [1, *_int_list(layer, "dilations", []), 1]

    if op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool") and rank not in (3, 4):
        raise UnsupportedOperatorError(f"layer {layer.name!r} ({op}): only 1-D and 2-D {op} have a legacy form")
    group = _int_attr(layer, "group", 1)
    if op in ("Conv", "ConvTranspose"):
        w = layer.weights[0].shape if layer.weights else layer.inputs[1].shape
        kernel = list(w[2:])
        spatial(kernel)
        if op == "ConvTranspose":  # weight (C_in, C_out/group, kh, kw) -> TensorFlow's [kh, kw, C_out, C_in]
            if layer.attr("output_padding") is not None:
                out["out_pad"] = _int_list(layer, "output_padding", [])
            return "ConvTranspose", {"kernel_shape": [*kernel, w[1] * group, w[0]], **out}
        if rank == 3:
            return "Conv1d", {"kernel_shape": [*kernel, w[1], w[0]], **out}
        if group > 1 and group == x[1] and w[1] == 1:
            return "DepthwiseConv", {"kernel_shape": [*kernel, x[1], w[0] // x[1]], **out}
        return "Conv", {"kernel_shape": [*kernel, w[1], w[0]], **out}
    if op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
        kernel = list(x[2:]) if op.startswith("Global") else _int_list(layer, "kernel_shape", [])
        spatial(kernel)
        out.pop("dilations", None)
        kind = "MAX" if "Max" in op else "AVG"
        return ("Pool" if rank == 4 else "Pool1d"), {"kernel_shape": [1, *kernel, 1], **out, "pooling_type": kind}
    if op == "Gemm":
        return "FullyConnected", {}
    if op == "BatchNormalization":
        return "BatchNorm", {}
    if op == "Clip" and layer.attr("min") == 0.0 and layer.attr("max") == 6.0:
        return "Relu6", {}
    if op == "Concat":
        return "Concat", {"axis": _nhwc_axis(len(y), _int_attr(layer, "axis", 1))}
    if op == "Transpose":  # the inverse of graph_from_legacy's perm conversion
        perm, p = _int_list(layer, "perm", range(rank)), _perm(rank)
        return "Transpose", {"perm": [p[perm[p.index(i)]] for i in range(rank)]}
    if op == "Pad":
        pads = _int_list(layer, "pads", [0] * (2 * rank))
        return "Pad", {"pads": [*_nhwc(pads[:rank]), *_nhwc(pads[rank:])]}
    return op, {}


def graph_to_legacy(graph: Graph) -> dict[str, Any]:
    """Write an annette Graph in the legacy ANNETTE graph format (a JSON-ready dict)."""
    producer: dict[str, str] = {}
    layers: dict[str, dict[str, Any]] = {}
    for spec in graph.inputs:
        lname = spec.name if spec.name not in graph.by_name else f"{spec.name}_input"
        producer[spec.name] = lname
        layers[lname] = {"type": "DataInput", "parents": [], "children": [], "output_shape": _nhwc(spec.shape)}
    for layer in graph.layers:
        for t in layer.outputs:
            producer[t.name] = layer.name
    for layer in graph.layers:
        typ, attrs = _legacy_type_and_attrs(layer)
        parents = [producer[t.name] for t in layer.inputs if t.name in producer]
        entry: dict[str, Any] = {"type": typ, "parents": parents, "children": []}
        entry["output_shape"] = _nhwc(layer.output.shape)
        if layer.inputs:
            entry["input_shape"] = _nhwc(layer.input.shape)
        entry.update(attrs)
        layers[layer.name] = entry
        for p in dict.fromkeys(parents):
            layers[p]["children"].append(layer.name)
    return {
        "name": graph.name,
        "layers": layers,
        "input_layers": [n for n, layer in layers.items() if not layer["parents"]],
        "output_layers": [n for n, layer in layers.items() if not layer["children"]],
    }
