"""Import an ONNX model into the annette IR.

Steps: load (path, bytes or ModelProto) -> inline local functions -> reject unknown operators -> sort and
check the topology (dangling edges, cycles) -> ``onnx.checker`` -> apply ``batch``/``input_shapes`` ->
shape inference (``data_prop=True``) alternating with constant folding until nothing changes -> concrete
shapes for every tensor (falling back to one onnxruntime run on zero inputs) -> IR layers.

Conventions of the result:
- Layer names are the ONNX node names (``f"{op}_{i}"`` where a node has none, a ``_k`` suffix where two
  nodes share a name), so runtime profiles can be linked back to layers.
- Constant subgraphs (initializers, Constant nodes, Shape of static tensors and everything computed only
  from those) are evaluated and disappear (by onnx's reference evaluator, else by ONNX Runtime; a node
  neither can evaluate stays, unfolded, with its constant operands). Constant operands that parameterise
  an op (Reshape target, Slice starts/ends/axes/steps, Resize scales/sizes, Pad pads, Clip min/max,
  Squeeze/Unsqueeze/Reduce axes, Split sizes, Tile repeats, Expand shape, TopK k) become attributes under
  the names of :data:`CONST_INPUT_ATTRS`; other constant operands are ``Layer.weights`` in ONNX operand order.
- Conv/ConvTranspose/pool attributes are normalised: explicit ``kernel_shape``, ``strides``, ``dilations``,
  ``pads`` (all begins then all ends) and ``group``; ``auto_pad`` is resolved to explicit pads.
- A symbolic batch dimension (dim 0 of a graph input) defaults to 1 unless ``batch`` is given; any other
  symbolic dimension must be set with ``input_shapes`` (``--input-shape`` in the CLI).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
import onnx.version_converter
from onnx import helper, numpy_helper

from annette.checks import MAX_DIM
from annette.errors import (
    ModelFileError,
    ShapeError,
    UnknownNameError,
    UnsupportedOperatorError,
)
from annette.graph.ir import AttrValue, Graph, Layer, TensorSpec
from annette.importers import onnx_guard

log = logging.getLogger(__name__)

MIN_OPSET = 11
DEFAULT_DOMAINS = ("", "ai.onnx")

ONNX_DTYPES: Mapping[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.BOOL: "bool",
}

_REDUCE_AXES = {1: "axes"}
CONST_INPUT_ATTRS: Mapping[str, Mapping[int, str]] = {
    "Reshape": {1: "shape"},
    "Expand": {1: "shape"},
    "Tile": {1: "repeats"},
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"},
    "Resize": {1: "roi", 2: "scales", 3: "sizes"},
    "Upsample": {1: "scales"},
    "Pad": {1: "pads", 2: "constant_value", 3: "axes"},
    "Clip": {1: "min", 2: "max"},
    "Squeeze": {1: "axes"},
    "Unsqueeze": {1: "axes"},
    "Split": {1: "split"},
    "TopK": {1: "k"},
    "CumSum": {1: "axis"},
    "OneHot": {1: "depth", 2: "values"},
    **{
        op: _REDUCE_AXES
        for op in (
            "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp",
        )
    },
}

NONDETERMINISTIC_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
CONV_OPS = frozenset({"Conv", "ConvTranspose"})
WINDOW_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"})
MAX_FOLD_ROUNDS = 8
LARGE_INITIALIZER_ELEMS = 4096  # bigger constants are hidden from the checker and shape inference


# -- loading ---------------------------------------------------------------------------------------------------
def load_onnx(model: str | Path | bytes | onnx.ModelProto) -> onnx.ModelProto:
    """Parse a model from a path, serialized bytes or a ModelProto; raises ModelFileError."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return _parse(bytes(model), "<bytes>")
    path = Path(model)
    if not path.is_file():
        raise ModelFileError(f"ONNX model not found: {path} (expected an existing .onnx file)")
    try:
        proto = onnx.load_model(str(path), load_external_data=True)
    except Exception as exc:  # protobuf's DecodeError, external-data errors, ...
        raise ModelFileError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    return _check_parsed(proto, str(path))


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # google.protobuf.message.DecodeError and friends
        raise ModelFileError(
            f"{where}: not a valid ONNX protobuf, truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    return _check_parsed(proto, where)


def _check_parsed(proto: onnx.ModelProto, where: str) -> onnx.ModelProto:
    onnx_guard.check_text(proto, where)
    if not proto.HasField("graph") or not proto.opset_import or proto.ir_version <= 0:
        raise ModelFileError(
            f"{where}: not a valid ONNX model (expected a graph, an opset import and an IR version; got "
            f"graph={proto.HasField('graph')}, opsets={len(proto.opset_import)}, ir_version={proto.ir_version}); "
            "the file is truncated, corrupt or not ONNX"
        )
    return proto


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in DEFAULT_DOMAINS:
            newest = onnx.defs.onnx_opset_version()
            if not 1 <= o.version <= newest:
                raise ModelFileError(
                    f"ONNX model imports opset {o.version}; this onnx {onnx.__version__} knows opsets 1 to {newest}"
                )
            return int(o.version)
    raise ModelFileError("ONNX model imports no default-domain opset")


def _check_operators(model: onnx.ModelProto, opset: int) -> None:
    for i, node in enumerate(model.graph.node):
        where = f"node {node.name or i!r} ({node.domain + '::' if node.domain else ''}{node.op_type})"
        if node.domain not in DEFAULT_DOMAINS:
            raise UnsupportedOperatorError(
                f"{where}: operator domain {node.domain!r} is not supported (only the default ONNX domain)"
            )
        try:
            onnx.defs.get_schema(node.op_type, opset, "")
        except onnx.defs.SchemaError:
            known = onnx.defs.has(node.op_type)
            raise UnsupportedOperatorError(
                f"{where}: unknown operator {node.op_type!r}"
                + (f" (it exists in ONNX, but not in opset {opset})" if known else " (not an ONNX operator)")
            ) from None
        for a in node.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise UnsupportedOperatorError(
                    f"{where}: control flow (subgraph attribute {a.name!r}) is not supported"
                )


def _node_names(nodes: Sequence[onnx.NodeProto]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        name = node.name or f"{node.op_type}_{i}"
        base, k = name, 0
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        if name != (node.name or name):
            log.warning("duplicate ONNX node name %r renamed to %r", node.name, name)
        seen.add(name)
        names.append(name)
    return names


def _sort_topologically(model: onnx.ModelProto, graph_name: str) -> None:
    """Sort the nodes in place; dangling edges and cycles raise GraphValidationError naming the node."""
    g = model.graph
    names = _node_names(g.node)
    known = [TensorSpec(n, ()) for n in {*(i.name for i in g.input), *(t.name for t in g.initializer)}]
    skeleton = Graph(
        name=graph_name,
        inputs=tuple(known),
        layers=tuple(
            Layer(
                name=name,
                op=node.op_type,
                inputs=tuple(TensorSpec(t, ()) for t in node.input if t),
                outputs=tuple(TensorSpec(t, ()) for t in node.output if t),
            )
            for name, node in zip(names, g.node, strict=True)
        ),
        outputs=tuple(o.name for o in g.output),
    ).validate()
    by_name = dict(zip(names, g.node, strict=True))
    ordered = [by_name[layer.name] for layer in skeleton.layers]
    # keep the names we generated so later steps see the same, unique names
    for name, node in zip((layer.name for layer in skeleton.layers), ordered, strict=True):
        node.name = name
    del g.node[:]
    g.node.extend(ordered)


# -- shapes ----------------------------------------------------------------------------------------------------
def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _set_dims(vi: onnx.ValueInfoProto, dims: Sequence[int]) -> None:
    shape = vi.type.tensor_type.shape
    shape.Clear()
    for d in dims:
        shape.dim.add().dim_value = int(d)


def _apply_overrides(
    model: onnx.ModelProto,
    batch: int | None,
    input_shapes: Mapping[str, Sequence[int]] | None,
    constants: set[str] | frozenset[str] = frozenset(),
) -> dict[str, int]:
    """Set the batch and input shapes in place; returns the inputs whose *fixed* batch was overridden (name ->
    the exported batch), for :func:`_check_edges`."""
    overridden: dict[str, int] = {}
    g = model.graph
    initializers = {t.name for t in g.initializer} | constants
    inputs = {vi.name: vi for vi in g.input if vi.name not in initializers}
    for name in input_shapes or {}:
        if name not in inputs:
            raise UnknownNameError(
                f"--input-shape names {name!r}, which is not a graph input; inputs: {', '.join(inputs) or '(none)'}"
            )
    for name, vi in inputs.items():
        dims = _dims(vi)
        if input_shapes and name in input_shapes:
            shape = [int(d) for d in input_shapes[name]]
            if any(d <= 0 or d > MAX_DIM for d in shape):
                raise ShapeError(f"input shape for {name!r} must be positive integers up to {MAX_DIM}, got {shape}")
            if batch is not None and shape and shape[0] != batch:
                raise ShapeError(f"input shape for {name!r} has batch {shape[0]}, but batch={batch} was given")
            _set_dims(vi, shape)
            continue
        if dims is None:
            raise ShapeError(
                f"graph input {name!r} has no shape; set it with --input-shape {name}=D0,D1,..."
            )
        if dims and (batch is not None or not isinstance(dims[0], int)):
            new0 = batch if batch is not None else 1
            if isinstance(dims[0], int) and dims[0] != new0:
                log.info("input %r: fixed batch dimension %d overridden with %d (every edge is checked)", name,
                         dims[0], new0)
                overridden[name] = dims[0]
            elif not isinstance(dims[0], int) and batch is None:
                log.info("input %r: symbolic batch dimension %r set to 1", name, dims[0])
            dims = [new0, *dims[1:]]
        if any(isinstance(d, int) and d <= 0 for d in dims):
            raise ShapeError(
                f"graph input {name!r} declares shape {dims}: dimensions must be positive; set the shape with "
                f"--input-shape {name}=D0,D1,... (input_shapes={{{name!r}: (...)}})"
            )
        bad = [d for d in dims if not isinstance(d, int)]
        if bad:
            raise ShapeError(
                f"graph input {name!r} has symbolic or unknown dimensions {dims}; set them with "
                f"--input-shape {name}=D0,D1,... (input_shapes={{{name!r}: (...)}})"
            )
        _set_dims(vi, [int(d) for d in dims if isinstance(d, int)])
    _forget_inferred_shapes(model)
    return overridden


def _forget_inferred_shapes(model: onnx.ModelProto) -> None:
    """Drop intermediate shapes and output dims (keeping output ranks), which an override may contradict."""
    del model.graph.value_info[:]
    for out in model.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            dim.ClearField("dim_value")
            dim.ClearField("dim_param")


def with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs have first dimension ``batch`` (shapes re-inferred)."""
    if batch <= 0:
        raise ShapeError(f"batch must be a positive integer, got {batch}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    initializers = {t.name for t in out.graph.initializer}
    overridden: dict[str, int] = {}
    for vi in out.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name not in initializers and len(dims) > 0:
            if dims[0].HasField("dim_value") and dims[0].dim_value != batch:
                overridden[vi.name] = dims[0].dim_value
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch
    _forget_inferred_shapes(out)
    try:
        inferred = onnx.shape_inference.infer_shapes(out, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ShapeError(f"model does not accept batch {batch}: {exc}") from exc
    if overridden:  # a static-batch export: its constants may hold the exported batch
        static = _static_shapes(inferred)
        static.update({t.name: (tuple(int(d) for d in t.dims), t.data_type) for t in inferred.graph.initializer})
        try:
            _check_edges(inferred, static)
        except ShapeError as exc:
            raise ShapeError(f"{exc}. {_static_batch_hint(model.graph.name or 'model', overridden, batch)}") from exc
    return inferred


def _split_large_initializers(source: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, onnx.TensorProto]]:
    """A working copy of ``source`` whose large initializers are typed graph inputs instead, and those
    initializers (not copied). The checker and shape inference serialize the model they get, and the
    folding rewrites it: none of them needs to copy the weights, only their shapes."""
    work = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(work, field, getattr(source, field))
    work.opset_import.extend(source.opset_import)
    work.metadata_props.extend(source.metadata_props)
    src, g = source.graph, work.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    large: dict[str, onnx.TensorProto] = {}
    declared = {vi.name for vi in src.input}
    for t in src.initializer:
        if math.prod(t.dims) <= LARGE_INITIALIZER_ELEMS:
            g.initializer.append(t)
            continue
        large[t.name] = t
        if t.name not in declared:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return work, large


def _infer_pass(model: onnx.ModelProto, data_prop: bool, warn: bool) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=True, data_prop=data_prop)
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        if warn:
            log.warning("strict shape inference failed (%s); retrying leniently", str(exc).splitlines()[0])
        try:
            return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=data_prop)
        except (onnx.shape_inference.InferenceError, RuntimeError) as exc2:
            raise ShapeError(f"ONNX shape inference failed: {exc2}") from exc2


def _infer(model: onnx.ModelProto) -> None:
    """Shape inference in place: fills ``value_info`` and the output types. With data propagation
    (``data_prop=True``) where a first pass without it shows that it is safe (see
    :func:`annette.importers.onnx_guard.data_prop_risk`); else without it (constant folding then resolves the
    shape computations)."""
    inferred = _infer_pass(model, data_prop=False, warn=False)
    risk = onnx_guard.data_prop_risk(inferred)
    if risk is None:
        inferred = _infer_pass(model, data_prop=True, warn=True)
    else:
        log.info("shape inference without data propagation: %s", risk)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], int]]:
    """tensor name -> (concrete shape, elem type) for every tensor whose shape inference fully knows."""
    g = model.graph
    out: dict[str, tuple[tuple[int, ...], int]] = {}
    for vi in (*g.input, *g.value_info, *g.output):
        dims = _dims(vi)
        if dims is not None and all(isinstance(d, int) and d >= 0 for d in dims):
            out[vi.name] = (tuple(int(d) for d in dims if isinstance(d, int)), vi.type.tensor_type.elem_type)
    return out


# -- constant folding ------------------------------------------------------------------------------------------
def _eval_node(node: onnx.NodeProto, args: list[np.ndarray | None], opset: int) -> list[np.ndarray] | None:
    """The outputs of ``node`` on constant inputs: onnx's reference evaluator, else ONNX Runtime, else None
    (the node then stays in the graph unfolded; a failed fold never aborts the import)."""
    from onnx.reference import ReferenceEvaluator

    feeds = {name: value for name, value in zip(node.input, args, strict=True) if name and value is not None}
    graph = helper.make_graph(
        [node],
        "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in feeds.items()],
        [onnx.ValueInfoProto(name=o) for o in node.output if o],
    )
    opsets = [helper.make_opsetid("", opset)]
    tiny = helper.make_model(graph, opset_imports=opsets)
    tiny.ir_version = helper.find_min_ir_version_for(opsets)
    try:
        return [np.asarray(r) for r in ReferenceEvaluator(tiny).run(None, feeds)]
    except Exception as exc:  # the reference runtime raises anything, on bad constants and on its own gaps
        first = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    try:
        results = _eval_with_onnxruntime(tiny, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types
        log.info(
            "node %r (%s): constant inputs not folded (reference evaluator: %s; onnxruntime: %s: %s); "
            "the node stays in the graph",
            node.name, node.op_type, first, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
        )
        return None
    log.debug("node %r (%s): folded with onnxruntime (reference evaluator: %s)", node.name, node.op_type, first)
    return results


def _eval_with_onnxruntime(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return [np.asarray(r) for r in sess.run(None, dict(feeds))]


def _fold_constants(
    model: onnx.ModelProto, large: Mapping[str, onnx.TensorProto], opset: int, unfoldable: set[str] | None = None
) -> bool:
    """Evaluate nodes whose inputs are all constant (and Shape/Size of static tensors); True if any folded.

    Nodes that no evaluator can fold stay in the graph; their names are added to ``unfoldable`` (and the
    nodes named there are not tried again)."""
    unfoldable = set() if unfoldable is None else unfoldable
    g = model.graph
    initializers = {**{t.name: t for t in g.initializer}, **large}
    consts: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name not in consts:
            consts[name] = numpy_helper.to_array(initializers[name])
        return consts[name]

    shapes = _static_shapes(model)
    graph_outputs = {o.name for o in g.output}
    kept: list[onnx.NodeProto] = []
    folded = False
    for node in g.node:
        result: list[np.ndarray] | None = None
        is_const = [not t or t in consts or t in initializers for t in node.input]
        if graph_outputs.intersection(node.output):  # a graph output must stay produced by a layer
            pass
        elif node.op_type in ("Shape", "Size") and node.input[0] in shapes and not is_const[0]:
            shape = np.array(shapes[node.input[0]][0], dtype=np.int64)
            if node.op_type == "Size":
                result = [np.array(int(np.prod(shape)), dtype=np.int64)]
            else:
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                result = [shape[attrs.get("start", 0) : attrs.get("end", len(shape))]]
        elif node.op_type not in NONDETERMINISTIC_OPS and all(is_const) and node.name not in unfoldable:
            args = [value(t) if t else None for t in node.input]
            onnx_guard.check_fold_size(
                node, args, [math.prod(shapes[o][0]) if o in shapes else None for o in node.output if o]
            )
            result = _eval_node(node, args, opset)
            if result is None:
                unfoldable.add(node.name)
        if result is None:
            kept.append(node)
            continue
        folded = True
        for name, v in zip((o for o in node.output if o), result, strict=False):
            consts[name] = v
    if not folded:
        return False
    used = {t for node in kept for t in node.input} | {o.name for o in g.output}
    new_inits = [
        numpy_helper.from_array(np.asarray(v), name)
        for name, v in consts.items()
        if name in used and name not in initializers
    ]
    del g.node[:]
    g.node.extend(kept)
    for i in reversed(range(len(g.initializer))):  # delete in place: extending would copy every tensor
        if g.initializer[i].name not in used:
            del g.initializer[i]
    g.initializer.extend(new_inits)
    return True


# -- ORT fallback ----------------------------------------------------------------------------------------------
def _shapes_from_onnxruntime(
    model: onnx.ModelProto,
    large: Mapping[str, onnx.TensorProto],
    missing: list[str],
    known: dict[str, tuple[tuple[int, ...], int]],
) -> dict[str, tuple[tuple[int, ...], int]]:
    """Run the model once on zero inputs with the ``missing`` tensors exposed as outputs."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i in reversed(range(len(m.graph.input))):
        if m.graph.input[i].name in large:
            del m.graph.input[i]
    m.graph.initializer.extend(large.values())
    existing = {o.name for o in m.graph.output}
    for name in missing:
        if name not in existing:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
    feeds: dict[str, np.ndarray] = {}
    initializers = {t.name for t in m.graph.initializer}
    onnx_guard.check_run_bytes({vi.name: known[vi.name] for vi in m.graph.input if vi.name not in initializers}, known)
    for vi in m.graph.input:
        if vi.name in initializers:
            continue
        shape, elem = known[vi.name]
        feeds[vi.name] = np.zeros(shape, dtype=helper.tensor_dtype_to_np_dtype(elem))
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        values = sess.run(missing, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ShapeError(
            f"shapes of {missing[:5]} are unknown after ONNX shape inference, and running the model on zero "
            f"inputs in onnxruntime failed ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "set the input shapes with --input-shape NAME=D0,D1,..."
        ) from exc
    out: dict[str, tuple[tuple[int, ...], int]] = {}
    for name, v in zip(missing, values, strict=True):
        arr = np.asarray(v)
        out[name] = (tuple(int(d) for d in arr.shape), helper.np_dtype_to_tensor_dtype(arr.dtype))
    log.info("shapes of %d tensors taken from an onnxruntime run on zero inputs", len(out))
    return out


# -- attributes ------------------------------------------------------------------------------------------------
def _attr_value(a: onnx.AttributeProto, where: str) -> AttrValue:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, (int, float, str)):
        return v
    if isinstance(v, onnx.TensorProto):
        arr = numpy_helper.to_array(v)
        return _const_attr(arr)
    if isinstance(v, list):
        if all(isinstance(x, bytes) for x in v):
            return tuple(x.decode("utf-8", errors="replace") for x in v)
        if all(isinstance(x, int) for x in v):
            return tuple(int(x) for x in v)
        if all(isinstance(x, (int, float)) for x in v):
            return tuple(float(x) for x in v)
    raise UnsupportedOperatorError(f"{where}: attribute {a.name!r} of type {a.type} is not supported")


def _const_attr(arr: np.ndarray) -> AttrValue:
    flat = np.asarray(arr).reshape(-1)
    is_int = np.issubdtype(flat.dtype, np.integer) or flat.dtype == np.bool_
    if np.asarray(arr).ndim == 0:
        return int(flat[0]) if is_int else float(flat[0])
    if is_int:
        return tuple(int(x) for x in flat)
    return tuple(float(x) for x in flat)


def _int_tuple(attrs: Mapping[str, AttrValue], key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = attrs.get(key)
    if value is None or value == ():
        return default
    if not isinstance(value, tuple):
        raise ShapeError(f"attribute {key!r} should be a list of integers, got {value!r}")
    return tuple(int(v) for v in value)


def _window_attrs(
    op: str, attrs: dict[str, AttrValue], x: tuple[int, ...], y: tuple[int, ...], w: tuple[int, ...] | None, where: str
) -> None:
    """Fill defaults and resolve auto_pad for Conv, ConvTranspose and pools (in place)."""
    n = len(x) - 2
    if "kernel_shape" not in attrs:
        if w is None:
            raise ShapeError(f"{where}: no kernel_shape attribute and no weight shape to take it from")
        attrs["kernel_shape"] = tuple(int(d) for d in w[2:])
    k = _int_tuple(attrs, "kernel_shape", ())
    s = attrs["strides"] = _int_tuple(attrs, "strides", (1,) * n)
    d = attrs["dilations"] = _int_tuple(attrs, "dilations", (1,) * n)
    if op in CONV_OPS:
        group = attrs.get("group", 1)
        attrs["group"] = int(group) if isinstance(group, (int, float)) else 1
    auto_pad = str(attrs.pop("auto_pad", "NOTSET"))
    if auto_pad in ("NOTSET", ""):
        attrs["pads"] = _int_tuple(attrs, "pads", (0,) * (2 * n))
        return
    if auto_pad == "VALID":
        attrs["pads"] = (0,) * (2 * n)
        return
    output_padding = _int_tuple(attrs, "output_padding", (0,) * n)
    begins, ends = [], []
    for i in range(n):
        eff = (k[i] - 1) * d[i] + 1
        if op == "ConvTranspose":
            total = s[i] * (x[2 + i] - 1) + output_padding[i] + eff - y[2 + i]
        else:
            total = max((math.ceil(x[2 + i] / s[i]) - 1) * s[i] + eff - x[2 + i], 0)
        small, large = total // 2, total - total // 2
        upper = auto_pad == "SAME_UPPER"  # the extra pixel goes at the end (SAME_UPPER) or the beginning
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    attrs["pads"] = (*begins, *ends)


# -- the importer ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Shapes:
    static: dict[str, tuple[tuple[int, ...], int]]

    def spec(self, name: str, where: str) -> TensorSpec:
        try:
            shape, elem = self.static[name]
        except KeyError:
            raise ShapeError(
                f"{where}: tensor {name!r} has no concrete shape; set the input shapes with --input-shape NAME=D0,D1,..."
            ) from None
        dtype = ONNX_DTYPES.get(elem)
        if dtype is None:
            raise ShapeError(
                f"{where}: tensor {name!r} has element type {onnx.TensorProto.DataType.Name(elem)}, "
                f"which annette does not support (supported: {', '.join(sorted(set(ONNX_DTYPES.values())))})"
            )
        return TensorSpec(name, shape, dtype)


def graph_from_onnx(
    model: str | Path | bytes | onnx.ModelProto,
    *,
    name: str | None = None,
    batch: int | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Graph:
    """Import an ONNX model (opset 11+) as a validated annette Graph (see the module docstring)."""
    try:
        return _graph_from_onnx(model, name=name, batch=batch, input_shapes=input_shapes)
    except MemoryError:  # bounded above (annette.importers.onnx_guard); a named error if it still happens
        where = str(model) if isinstance(model, (str, Path)) else (name or "the model")
        raise ModelFileError(f"{where}: out of memory while importing the ONNX model") from None
    except RecursionError:
        where = str(model) if isinstance(model, (str, Path)) else (name or "the model")
        raise ModelFileError(f"{where}: the ONNX model is nested too deeply to import") from None


def _graph_from_onnx(
    model: str | Path | bytes | onnx.ModelProto,
    *,
    name: str | None,
    batch: int | None,
    input_shapes: Mapping[str, Sequence[int]] | None,
) -> Graph:
    source = load_onnx(model)
    if name is None:
        name = source.graph.name or (Path(model).stem if isinstance(model, (str, Path)) else "model")
    onnx_guard.check_initializers(source, str(model) if isinstance(model, (str, Path)) else repr(name))
    if source.functions:
        source = onnx.inliner.inline_local_functions(source)
    opset = _opset(source)
    _check_operators(source, opset)
    if opset < MIN_OPSET:
        source = _convert_opset(source, opset)
        opset = _opset(source)
    proto, large = _split_large_initializers(source)
    _sort_topologically(proto, name)
    onnx_guard.check_io_shapes(proto, {t.name for t in source.graph.initializer}, input_shapes)
    if batch is not None and batch <= 0:
        raise ShapeError(f"batch must be a positive integer, got {batch}")
    # before the checker: it would refuse an input without a shape that --input-shape sets, naming no tensor
    overridden = _apply_overrides(proto, batch, input_shapes, constants=set(large))
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(f"model {name!r} fails the ONNX checker: {str(exc).splitlines()[0]}") from exc

    _infer(proto)
    unfoldable: set[str] = set()
    for _ in range(MAX_FOLD_ROUNDS):
        if not _fold_constants(proto, large, opset, unfoldable):
            break
        _infer(proto)

    static = _static_shapes(proto)
    for t in (*proto.graph.initializer, *large.values()):
        static[t.name] = (tuple(int(d) for d in t.dims), t.data_type)
    needed = [t for node in proto.graph.node for t in node.output if t] + [o.name for o in proto.graph.output]
    missing = list(dict.fromkeys(t for t in needed if t not in static))
    try:
        if missing:
            static.update(_shapes_from_onnxruntime(proto, large, missing, static))
        _check_edges(proto, static)
    except ShapeError as exc:
        if not overridden:
            raise
        raise ShapeError(f"{exc}. {_static_batch_hint(name, overridden, batch)}") from exc
    return _build_graph(proto, large, name, opset, _Shapes(static), source)


def _static_batch_hint(name: str, overridden: Mapping[str, int], batch: int | None) -> str:
    was = sorted(set(overridden.values()))
    return (
        f"Model {name!r} was exported with a static batch of {', '.join(map(str, was))} "
        f"(input {', '.join(repr(k) for k in overridden)}), and its constants (e.g. Reshape targets) hold that "
        f"batch, so it cannot be re-batched to {batch}: export it with a dynamic batch axis "
        "(torch.onnx.export(..., dynamic_shapes=...) or dynamic_axes={'input': {0: 'batch'}}), or export it at "
        f"batch {batch}"
    )


# Ops whose (first) output holds as many elements as their (first) input.
_SAME_COUNT_OPS = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Cast", "CastLike", "Relu", "LeakyRelu",
    "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu", "Erf", "Softmax", "LogSoftmax", "Neg", "Abs", "Sqrt",
    "Exp", "Log", "Clip", "Dropout", "LayerNormalization", "BatchNormalization", "InstanceNormalization",
})  # fmt: skip
# Ops whose output is the numpy broadcast of all their inputs.
_BROADCAST_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less", "Greater",
    "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "PRelu", "Mod",
})  # fmt: skip


def _check_edges(model: onnx.ModelProto, static: Mapping[str, tuple[tuple[int, ...], int]]) -> None:
    """Every node's shapes must agree with its inputs': element counts of shape-preserving ops (a Reshape
    whose constant target holds another batch breaks this), broadcasts of elementwise ops, Concat and MatMul
    operands. Shape inference does not check these, so an inconsistent graph would import and be estimated
    wrongly. Raises ShapeError naming the first node at fault."""
    for node in model.graph.node:
        ins = [static[t][0] for t in node.input if t and t in static]
        outs = [static[t][0] for t in node.output[:1] if t and t in static]
        if not outs or not ins or len(ins) != len([t for t in node.input if t]):
            continue
        out, where = outs[0], f"node {node.name!r} ({node.op_type})"
        if node.op_type in _SAME_COUNT_OPS:
            if math.prod(ins[0]) != math.prod(out):
                raise ShapeError(
                    f"inconsistent shapes: {where} turns {ins[0]} ({math.prod(ins[0])} elements) into {out} "
                    f"({math.prod(out)} elements)"
                )
        elif node.op_type in _BROADCAST_OPS:
            try:
                expected = tuple(np.broadcast_shapes(*ins))
            except ValueError:
                raise ShapeError(f"inconsistent shapes: {where} cannot broadcast its inputs {ins}") from None
            if expected != out:
                raise ShapeError(f"inconsistent shapes: {where} broadcasts {ins} to {expected}, not {out}")
        elif node.op_type == "Concat" and len({len(s) for s in ins}) == 1 and ins[0]:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0) % len(ins[0])
            others = {s[:axis] + s[axis + 1 :] for s in ins}
            if len(others) != 1 or out != (*ins[0][:axis], sum(s[axis] for s in ins), *ins[0][axis + 1 :]):
                raise ShapeError(f"inconsistent shapes: {where} concatenates {ins} on axis {axis} into {out}")
        elif node.op_type == "MatMul" and len(ins) == 2 and len(ins[0]) >= 2 and len(ins[1]) >= 2:
            if ins[0][-1] != ins[1][-2]:
                raise ShapeError(f"inconsistent shapes: {where} multiplies {ins[0]} by {ins[1]}")


def _convert_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    try:
        converted = onnx.version_converter.convert_version(model, 13)
    except Exception as exc:  # the converter raises RuntimeError and friends
        raise ModelFileError(
            f"model uses opset {opset}; annette imports opset {MIN_OPSET}+ and converting it failed: {exc}"
        ) from exc
    log.info("converted the model from opset %d to 13", opset)
    return converted


def _build_graph(
    proto: onnx.ModelProto,
    large: Mapping[str, onnx.TensorProto],
    name: str,
    opset: int,
    shapes: _Shapes,
    source: onnx.ModelProto,
) -> Graph:
    g = proto.graph
    init_values = {**{t.name: t for t in g.initializer}, **large}
    consts = set(init_values)
    consumed = {t for node in g.node for t in node.input} | {o.name for o in g.output}
    layers: list[Layer] = []
    for node in g.node:
        where = f"node {node.name!r} ({node.op_type})"
        attrs: dict[str, AttrValue] = {a.name: _attr_value(a, where) for a in node.attribute}
        inputs: list[TensorSpec] = []
        weights: list[TensorSpec] = []
        const_attr_names = CONST_INPUT_ATTRS.get(node.op_type, {})
        for pos, t in enumerate(node.input):
            if not t:
                continue
            if t in consts:
                if node.op_type == "CastLike" and pos == 1:  # only its dtype matters
                    attrs["to"] = shapes.spec(t, where).dtype
                elif pos in const_attr_names:
                    attrs[const_attr_names[pos]] = _const_attr(numpy_helper.to_array(init_values[t]))
                else:
                    weights.append(shapes.spec(t, where))
            else:
                inputs.append(shapes.spec(t, where))
        outputs = [
            shapes.spec(t, where) for i, t in enumerate(node.output) if t and (i == 0 or t in consumed)
        ]
        if node.op_type in WINDOW_OPS:
            if not inputs:
                raise ShapeError(f"{where}: has no activation input")
            w = weights[0].shape if node.op_type in CONV_OPS and weights else (
                inputs[1].shape if node.op_type in CONV_OPS and len(inputs) > 1 else None
            )
            _window_attrs(node.op_type, attrs, inputs[0].shape, outputs[0].shape, w, where)
        layers.append(Layer(node.name, node.op_type, tuple(inputs), tuple(outputs), tuple(weights), attrs))
    graph_inputs = tuple(shapes.spec(vi.name, "graph input") for vi in g.input if vi.name not in consts)
    metadata = {
        "source": "onnx",
        "opset": str(opset),
        "producer": f"{source.producer_name} {source.producer_version}".strip(),
    }
    return Graph(name, graph_inputs, tuple(layers), tuple(o.name for o in g.output), metadata).validate()
