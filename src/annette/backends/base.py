"""The backend contract: prepare a model once (untimed), then run it (timed by ``annette.bench.runner``).

A backend is a small object with ``name``, ``is_available()``, ``describe() -> Target`` and
``prepare(model) -> Prepared``; a ``Prepared`` runs one inference per ``run()`` call on fixed random
inputs and, where the runtime has a profiler, reports what it executed with ``profile(runs)``. The timing
loop is not here: it lives once in ``annette.bench.runner``; a ``Prepared`` whose device has its own clock
may add ``time_calls(n) -> ms`` (the torch backend on CUDA: CUDA events), which the runner then uses.

Backends are registered by name in ``BACKENDS`` (``annette.backends``); ``get_backend(name, **options)``
builds one. A backend whose runtime is not installed raises ``BackendError`` when it is built.
"""

from __future__ import annotations

import functools
import inspect
import os
import platform
import re
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from annette.bench.records import NodeProfile, Target
from annette.errors import BackendError, UnknownNameError
from annette.graph.ir import Graph
from annette.registry import Registry

if TYPE_CHECKING:
    import onnx


@runtime_checkable
class Prepared(Protocol):
    """A model ready to run on a backend, with its inputs bound."""

    def run(self) -> None:
        """Run one inference (blocking until the result is ready)."""

    def profile(self, runs: int) -> tuple[NodeProfile, ...]:
        """Run ``runs`` profiled inferences; return one entry per executed node, linked to graph layers."""


@runtime_checkable
class Backend(Protocol):
    name: str

    def is_available(self) -> bool: ...

    def describe(self) -> Target: ...

    def prepare(self, model: Any) -> Prepared: ...


BackendFactory = Callable[..., Backend]
BACKENDS: Registry[BackendFactory] = Registry("backend")


def get_backend(name: str, **options: Any) -> Backend:
    """Build the backend registered as ``name`` with its options (e.g. ``threads=1``).

    Raises ``UnknownNameError`` listing the valid names, or ``BackendError`` when the runtime is missing.
    """
    cls = BACKENDS.get(name)
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise UnknownNameError(
                f"backend {name!r} has no option(s) {', '.join(unknown)}; its options: {', '.join(params) or '(none)'}"
            )
    threads = options.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise BackendError(f"backend {name!r}: threads must be a positive integer, got {threads!r}")
    try:
        backend = cls(**options)
    except (TypeError, ValueError) as exc:
        raise BackendError(f"backend {name!r} refuses its options {options}: {exc}") from exc
    if not backend.is_available():
        raise BackendError(
            f"backend {name!r} is not available on this machine (its runtime is not installed, or the device "
            f"asked for is absent; options: {options})"
        )
    return backend


# -- machine description ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU model string from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=1)
def cpu_isa() -> str:
    """The widest vector ISA extensions the CPU advertises (e.g. "avx512f,avx512_bf16,amx_tile")."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "neon")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return ",".join(f for f in wanted if f in flags)
    except OSError:
        pass
    return ""


@functools.lru_cache(maxsize=1)
def cpu_id() -> str:
    """The CPU's identity beyond its model string: vendor, family/model/stepping and cache size, e.g.
    "AuthenticAMD 25/17/1 1024 KB". Virtual machines often report a bare "AMD EPYC" model name for CPUs of
    different generations (a Zen 4 and a newer part ran 2x apart on large convolutions under that one name);
    these fields tell them apart. "" where /proc/cpuinfo does not say."""
    wanted = ("vendor_id", "cpu family", "model", "stepping", "cache size")
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in wanted and key not in found:
                    found[key] = value.strip()
                if not line.strip() and found:
                    break
    except OSError:
        return ""
    if "cpu family" not in found:
        return ""
    return (f"{found.get('vendor_id', '')} {found['cpu family']}/{found.get('model', '?')}/"
            f"{found.get('stepping', '?')} {found.get('cache size', '')}").strip()


def cpu_extra() -> dict[str, str]:
    extra = {"isa": cpu_isa(), "logical_cpus": str(os.cpu_count() or 0)}
    if cpu_id():
        extra["cpu_id"] = cpu_id()
    return extra


def check_threads(threads: int) -> int:
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise BackendError(f"threads must be a positive integer, got {threads!r}")
    return threads


# -- inputs ----------------------------------------------------------------------------------------------

_ONNX_TO_NUMPY = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64, 9: np.bool_, 2: np.uint8, 3: np.int8}


def random_inputs(model: onnx.ModelProto, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Random values for every graph input of ``model`` that is not an initializer.

    Shapes must be concrete; floats uniform in [-1, 1), integers 0 or 1 (valid as indices).
    """
    initializers = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        tt = vi.type.tensor_type
        shape = []
        for d in tt.shape.dim:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                raise BackendError(
                    f"model input {vi.name!r} has a symbolic or unknown dimension ({d.dim_param or '?'}); "
                    "import it with a concrete batch / input shape first"
                )
            shape.append(d.dim_value)
        dtype = _ONNX_TO_NUMPY.get(tt.elem_type)
        if dtype is None:
            raise BackendError(f"model input {vi.name!r} has unsupported element type {tt.elem_type}")
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = (rng.random(shape, dtype=np.float32) * 2.0 - 1.0).astype(dtype)
        elif dtype is np.bool_:
            feeds[vi.name] = rng.integers(0, 2, size=shape).astype(np.bool_)
        else:
            feeds[vi.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


def precision_of(model: onnx.ModelProto) -> str:
    """fp16 if the first float graph input is float16, else fp32."""
    for vi in model.graph.input:
        if vi.type.tensor_type.elem_type == 10:
            return "fp16"
    return "fp32"


def as_model_proto(model: Any, backend: str) -> onnx.ModelProto:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    raise BackendError(f"backend {backend!r} prepares an onnx.ModelProto, got {type(model).__name__}")


# -- linking executed nodes to graph layers ---------------------------------------------------------------

_RUNTIME_NAME_AFFIXES = (
    re.compile(r"^fused (.+)$"),  # ORT: FusedConv / FusedGemm keep "fused <node>"
    re.compile(r"^(.+)_bn_nchwc$"),  # ORT NCHWc: a BatchNormalization run as a depthwise Conv, "<bn>_bn_nchwc"
    re.compile(r"^(.+)_nchwc$"),  # ORT NCHWc: "<output tensor>_nchwc"
    re.compile(r"^(.+)/[A-Za-z]+Fusion/?$"),  # ORT: "<node>/MatMulAddFusion", "<node>/MatMulScaleFusion/"
    re.compile(r"^(.+)/WithoutBiases$"),  # OpenVINO: the bias-less half of a Conv/Gemm
    re.compile(r"^(.+)/sink_port_\d+$"),
)
# Layers that head a fused group: a runtime names the group after a later member at times (ORT NCHWc names
# a Conv+BN+Relu node after the Relu's output; OpenVINO renames a Conv that absorbed a BN), so an unnamed
# one joins its consumers' node, never its producer's.
MAIN_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def resolve_runtime_name(name: str, graph: Graph, op_type: str | None = None) -> set[str]:
    """The graph layers a runtime node name refers to (empty when none).

    Tries the layer names, then the output-tensor names (runtimes name rewritten nodes after the tensor they
    produce), then the same after stripping the affixes runtimes add (``fused X``, ``X_nchwc``,
    ``X/MatMulAddFusion``, ``X/WithoutBiases``). Given the executed node's ONNX-style ``op_type`` (``Conv``,
    ``FusedConv``), a match on a later member of a fused chain (the Relu of Conv->BN->Relu) is extended
    back through single-consumer layers to the layer of that op type, and the whole chain is returned.
    """
    candidates = [name]
    for pattern in _RUNTIME_NAME_AFFIXES:
        m = pattern.match(name)
        if m:
            candidates.append(m.group(1))
    for cand in candidates:
        layer = cand if cand in graph.by_name else graph.producer.get(cand)
        if layer is not None:
            return _chain_back(graph, layer, op_type)
    return set()


def _chain_back(graph: Graph, layer: str, op_type: str | None) -> set[str]:
    if not op_type:
        return {layer}
    op = op_type.removeprefix("Fused")
    chain = [layer]
    while graph.layer(chain[-1]).op != op:
        preds = graph.predecessors(chain[-1])
        if len(preds) != 1 or graph.successors(preds[0]) != [chain[-1]]:
            return {layer}  # no single-consumer path back to an op of that type: the name alone
        chain.append(preds[0])
    return set(chain)


# runtime op types -> the ONNX ops their node may implement besides its own name (OpenVINO's CPU plugin
# names, ORT's contrib ops); SPLIT_INTO: ONNX ops a runtime runs as several kernels
RUNTIME_OPS: dict[str, frozenset[str]] = {
    "Convolution": frozenset({"Conv"}),
    "GroupConvolution": frozenset({"Conv"}),
    "FullyConnected": frozenset({"Gemm", "MatMul"}),
    "Gemm": frozenset({"MatMul"}),
    "Pooling": frozenset({"MaxPool", "AveragePool"}),
    "Reduce": frozenset({"GlobalAveragePool", "ReduceMean"}),
    "ReduceMean": frozenset({"GlobalAveragePool"}),
    "Eltwise": frozenset({"Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"}),
    "MVN": frozenset({"LayerNormalization"}),
    "Concatenation": frozenset({"Concat"}),
    "Interpolate": frozenset({"Resize"}),
    "QuickGelu": frozenset({"Sigmoid", "Mul"}),
}
SPLIT_INTO: dict[str, frozenset[str]] = {"HardSwish": frozenset({"HardSigmoid", "Mul"})}


def implements(node_op: str, layer_op: str) -> bool:
    """Whether an executed node of runtime type ``node_op`` can implement a layer of ONNX type ``layer_op``."""
    return (
        node_op.removeprefix("Fused") == layer_op
        or layer_op in RUNTIME_OPS.get(node_op, ())
        or node_op in SPLIT_INTO.get(layer_op, ())
    )


def link_layers(
    graph: Graph,
    anchors: dict[str, set[str]],
    node_ops: Mapping[str, str],
    removed: Collection[str] = (),
    inserted: Collection[str] = (),
) -> dict[str, set[str]]:
    """Complete ``anchors`` (executed node -> layers matched by name, in execution order) with the layers
    that no node names; ``node_ops`` gives each node's runtime op type.

    1. Orphan nodes (named after no layer, not ``inserted`` layout reorders nor zero-cost reshapes) take, in
       execution order, the first unnamed layer of an op they implement that comes after the layers of the
       nodes before them (OpenVINO renames a Conv whose BatchNorm it folded to ``Multiply_N``); a node of
       a split op's other kernel joins the layer its predecessor took (ORT runs HardSwish as HardSigmoid +
       Mul: both cover the layer).
    2. An unnamed zero-cost layer (Reshape, Flatten, Identity, ...) was removed. Any other unnamed layer
       not known to be ``removed`` was fused into a neighbour: into its producer's node when it is that
       producer's only consumer (Conv+Relu, Conv+Add, MatMul+Add), or into its consumers' node when one
       node owns all of them (a renamed Conv+BN joins its activation's node; x*sigmoid(x) fused into one
       node). A Conv/Gemm/MatMul heads its group, so it only joins its consumers' node; other layers try
       their producer first. Repeated until nothing changes; layers left over are reported by no node.
    """
    from annette.graph.accounting import ZERO_COST_OPS

    owner: dict[str, str] = {}
    for node, layers in anchors.items():
        for layer in layers:
            owner.setdefault(layer, node)
    pending = [
        x.name for x in graph.layers if x.name not in owner and x.name not in removed and x.op not in ZERO_COST_OPS
    ]
    covers: dict[str, set[str]] = {node: set() for node in anchors}
    index = {x.name: i for i, x in enumerate(graph.layers)}
    position, last = -1, ""
    for node, layers in anchors.items():
        op = node_ops.get(node, "")
        if layers:
            position, last = max(index[x] for x in layers), ""
        elif node in inserted or op in ZERO_COST_OPS:
            continue
        elif last and op in SPLIT_INTO.get(graph.layer(last).op, ()):
            covers[node].add(last)
        else:
            match = next((n for n in pending if index[n] > position and implements(op, graph.layer(n).op)), "")
            if match:
                owner[match] = node
                pending.remove(match)
                position, last = index[match], match
    changed = True
    while pending and changed:
        changed = False
        for name in list(pending):
            order = (False,) if graph.layer(name).op in MAIN_OPS else (True, False)
            for upstream in order:
                into = _fusion_neighbour(graph, name, owner, upstream)
                if into is not None:
                    owner[name] = into
                    pending.remove(name)
                    changed = True
                    break
    for layer, node in owner.items():
        covers[node].add(layer)
    return covers


def _fusion_neighbour(graph: Graph, name: str, owner: dict[str, str], upstream: bool) -> str | None:
    """The node that ``name`` fused into, looking at its producers (``upstream``) or its consumers."""
    if upstream:
        # Of several producers that feed only this layer, the one whose node runs a Conv/Gemm/MatMul took it: an
        # elementwise layer fuses into a compute kernel's output (ORT's blocked Conv adds its "Sum" input), and
        # a pool that happens to be the Add's first input ran without it.
        nodes = [owner[p] for p in graph.predecessors(name) if p in owner and graph.successors(p) == [name]]
        if len(nodes) > 1:
            heads = {owner[x.name] for x in graph.layers if x.op in MAIN_OPS and x.name in owner}
            return next((n for n in nodes if n in heads), nodes[0])
        return nodes[0] if nodes else None
    nodes = {owner.get(succ) for succ in graph.successors(name)}
    return nodes.pop() if len(nodes) == 1 and None not in nodes else None


def order_layers(graph: Graph, names: set[str]) -> tuple[str, ...]:
    """``names`` in the graph's layer order."""
    return tuple(x.name for x in graph.layers if x.name in names)
