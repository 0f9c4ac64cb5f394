"""The backend contract: prepare a model once (untimed), then run it (timed by ``annette.bench.runner``).

A backend is a small object with ``name``, ``takes_specs``, ``is_available()``, ``describe() -> Target`` and
``prepare(model, graph=None) -> Prepared``; a ``Prepared`` runs one inference per ``run()`` call on fixed random
inputs and, where the runtime has a profiler, reports what it executed with ``profile(runs)``: raw
``ExecutedNode`` entries in the runtime's own names, which the caller that holds the graph links to its layers
(``annette.mapping.observed.link_profile``). The timing loop is not here: it lives once in
``annette.bench.runner``; a ``Prepared`` whose device has its own clock may add ``time_calls(n) -> ms`` (the
torch backend on CUDA: CUDA events), which the runner then uses.

Backends are registered by name in ``BACKENDS`` (``annette.backends``); ``get_backend(name, **options)``
builds one. A backend whose runtime is not installed raises ``BackendError`` when it is built. Backends import
the shared contracts only (records, graph, errors, registry): never the bench engine nor the importers.
"""

from __future__ import annotations

import functools
import inspect
import os
import platform
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from annette.errors import BackendError, UnknownNameError
from annette.graph.ir import Graph
from annette.records import ExecutedNode, Target
from annette.registry import Registry

if TYPE_CHECKING:
    import onnx


@runtime_checkable
class Prepared(Protocol):
    """A model ready to run on a backend, with its inputs bound."""

    def run(self) -> None:
        """Run one inference (blocking until the result is ready)."""

    def profile(self, runs: int) -> tuple[ExecutedNode, ...]:
        """Run ``runs`` profiled inferences; return one entry per runtime node, in the runtime's own names and
        execution order, with its kernel time in each reported run (not linked to graph layers)."""


@runtime_checkable
class Backend(Protocol):
    name: str
    # True when ``prepare`` runs a model spec itself (torch: "torchvision:NAME"): a caller hands it the spec,
    # not the spec's ONNX form
    takes_specs: bool

    def is_available(self) -> bool: ...

    def describe(self) -> Target: ...

    def prepare(self, model: Any, graph: Graph | None = None) -> Prepared:
        """Prepare ``model`` to run (untimed); ``graph`` is its annette IR where the caller holds it (the
        simulated backend runs the graph; the runtimes ignore it)."""


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
