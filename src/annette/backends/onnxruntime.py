"""ONNX Runtime, CPUExecutionProvider.

Options: ``threads`` (intra- and inter-op threads, default 1), ``opt_level`` (graph optimisation:
disabled | basic | extended | layout | all, default all).

Per-node profile: a second session with ``enable_profiling`` runs the model; its JSON trace lists every
executed node (``<node>_kernel_time`` events). ORT rewrites the graph first: BatchNorm folded into the
Conv, Conv+activation(+Add) fused (``fused <node>`` / NCHWc ``<tensor>_nchwc``), Gemm+activation fused,
``ReorderInput``/``ReorderOutput`` inserted around NCHWc convolutions. The optimized model
(``optimized_model_filepath``) gives each executed node's domain. Each node is reported under its own name
(naming ``node``), which ``annette.mapping.observed`` links to the graph layers it covers; inserted reorders
cover none.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annette.backends.base import (
    BACKENDS,
    as_model_proto,
    check_threads,
    cpu_extra,
    cpu_model,
    precision_of,
    random_inputs,
)
from annette.errors import BackendError
from annette.graph.ir import Graph
from annette.records import ExecutedNode, NodeProfile, Target

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

OPT_LEVELS = ("disabled", "basic", "extended", "layout", "all")
PROFILE_WARMUP = 2  # profiled runs discarded before the ``runs`` that are reported


def _executed(node: str, op_type: str, times_ms: tuple[float, ...], exec_type: str) -> ExecutedNode:
    """An ORT node as linking reads it: named after a member of what it runs; reorders are inserted."""
    return ExecutedNode(node=node, op_type=op_type, times_ms=times_ms, origins=(node,), naming="node",
                        exec_type=exec_type, inserted=op_type.startswith("Reorder"))


def stored_nodes(profile: Sequence[NodeProfile]) -> tuple[ExecutedNode, ...]:
    """The executed nodes of a stored profile, as :meth:`OrtPrepared.profile` reported them (ORT's origins are its
    node names, which the profile keeps), so that a record measured with an older linker is linked again by
    today's (``annette.mapping.learn.read_profile``)."""
    return tuple(_executed(p.node, p.op_type, (p.time_ms,), p.exec_type) for p in profile)


class OnnxRuntimeBackend:
    name = "onnxruntime"
    takes_specs = False
    stored_nodes = staticmethod(stored_nodes)  # a stored profile's raw nodes, again

    def __init__(self, threads: int = 1, opt_level: str = "all", batch: int = 1) -> None:
        self.threads = check_threads(threads)
        if opt_level not in OPT_LEVELS:
            raise BackendError(f"onnxruntime opt_level must be one of {', '.join(OPT_LEVELS)}, got {opt_level!r}")
        self.opt_level = opt_level
        self.batch = batch

    def is_available(self) -> bool:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False
        return True

    def describe(self) -> Target:
        import onnxruntime as ort

        return Target(
            backend=self.name,
            device="cpu",
            device_model=cpu_model(),
            runtime="onnxruntime",
            runtime_version=ort.__version__,
            provider="CPUExecutionProvider",
            threads=self.threads,
            precision="fp32",
            batch=self.batch,
            extra={**cpu_extra(), "opt_level": self.opt_level},
        )

    def session_options(self) -> Any:
        import onnxruntime as ort

        levels = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "layout": getattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = self.threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = levels[self.opt_level]
        so.log_severity_level = 3  # errors only: the NCHWc "hardware specific" warning is expected
        return so

    def prepare(self, model: Any, graph: Graph | None = None) -> OrtPrepared:
        return OrtPrepared(self, as_model_proto(model, self.name))


class OrtPrepared:
    def __init__(self, backend: OnnxRuntimeBackend, model: onnx.ModelProto) -> None:
        self.backend = backend
        self.model = model
        self.precision = precision_of(model)
        self.feeds = random_inputs(model)
        self.session = self._session(backend.session_options())
        self._run = self.session.run

    def _session(self, options: Any) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(self.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... classes
            raise BackendError(f"onnxruntime could not load model {self.model.graph.name!r}: {exc}") from exc

    def run(self) -> None:
        self._run(None, self.feeds)

    def profile(self, runs: int) -> tuple[ExecutedNode, ...]:
        import onnx

        with tempfile.TemporaryDirectory(prefix="annette-ort-") as tmp:
            options = self.backend.session_options()
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "profile")
            options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            session = self._session(options)
            for _ in range(PROFILE_WARMUP + runs):
                session.run(None, self.feeds)
            trace = json.loads(Path(session.end_profiling()).read_text())
            optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
        domains = {n.name: (n.domain or "ai.onnx") for n in optimized.graph.node}
        durations: dict[str, list[float]] = {}
        op_types: dict[str, str] = {}
        for ev in trace:
            if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
                continue
            node = ev["name"][: -len("_kernel_time")]
            durations.setdefault(node, []).append(float(ev["dur"]) / 1000.0)
            op_types[node] = str(ev.get("args", {}).get("op_name", ""))
        return tuple(
            _executed(node, op_types[node], tuple(times[PROFILE_WARMUP:] or times),
                      f"{domains[node]}:{op_types[node]}" if node in domains else op_types[node])
            for node, times in durations.items()
        )


BACKENDS.register("onnxruntime", OnnxRuntimeBackend)
