"""OpenVINO, CPU plugin.

Options: ``threads`` (``INFERENCE_NUM_THREADS``, default 1), ``precision`` (``INFERENCE_PRECISION_HINT``:
f32 | bf16 | f16, default f32: the plugin runs bf16 by default on AVX-512-BF16/AMX CPUs, so f32 is asked
for explicitly). ``PERFORMANCE_HINT`` is LATENCY.

Per-node profile: a second compilation with ``PERF_COUNT`` reports one counter per runtime node
(``get_profiling_info``); fused layers are ``NOT_RUN``, inserted layout ``Reorder``s cover no layer. The
runtime model's ``originalLayersNames`` rt_info lists the model ops each node implements (naming
``members``); those names (ONNX node names, or output tensor names for nodes that produce a graph output)
link it to the graph layers in ``annette.mapping.observed``, which also links the layers renamed by
OpenVINO's own transformations. ``NOT_RUN`` nodes are reported without times: their layers were fused or
removed.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annette.backends.base import (
    BACKENDS,
    as_model_proto,
    check_threads,
    cpu_extra,
    cpu_model,
    random_inputs,
)
from annette.errors import BackendError
from annette.graph.ir import Graph
from annette.records import ExecutedNode, Target

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
PROFILE_WARMUP = 2
_NOT_LAYERS = ("Input", "Output", "Const", "Parameter", "Result", "Constant")


class OpenVinoBackend:
    name = "openvino"
    takes_specs = False

    def __init__(self, threads: int = 1, precision: str = "f32", batch: int = 1) -> None:
        self.threads = check_threads(threads)
        if precision not in PRECISIONS:
            raise BackendError(f"openvino precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.batch = batch

    def is_available(self) -> bool:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False
        return True

    def config(self, perf_count: bool = False) -> dict[str, str]:
        return {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": self.precision,
            "INFERENCE_NUM_THREADS": str(self.threads),
            "PERF_COUNT": "YES" if perf_count else "NO",
        }

    def describe(self) -> Target:
        import openvino as ov

        return Target(
            backend=self.name,
            device="cpu",
            device_model=cpu_model(),
            runtime="openvino",
            runtime_version=ov.__version__.split("-")[0],
            provider="CPU",
            threads=self.threads,
            precision=PRECISIONS[self.precision],
            batch=self.batch,
            extra={**cpu_extra(), "performance_hint": "LATENCY", "full_version": ov.__version__},
        )

    def prepare(self, model: Any, graph: Graph | None = None) -> OvPrepared:
        return OvPrepared(self, as_model_proto(model, self.name))


class OvPrepared:
    def __init__(self, backend: OpenVinoBackend, model: onnx.ModelProto) -> None:
        import openvino as ov

        self.backend = backend
        self.model = model
        self.core = ov.Core()
        with tempfile.TemporaryDirectory(prefix="annette-ov-") as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(model.SerializeToString())
            try:
                self.ov_model = self.core.read_model(str(path))
            except Exception as exc:  # OpenVINO raises RuntimeError/its own classes
                raise BackendError(f"openvino could not read model {model.graph.name!r}: {exc}") from exc
        feeds = random_inputs(model)
        self.inputs = [ov.Tensor(feeds[p.get_any_name()], shared_memory=True) for p in self.ov_model.inputs]
        self.compiled, self.request = self._compile(perf_count=False)
        self._infer = self.request.infer

    def _compile(self, perf_count: bool) -> tuple[Any, Any]:
        """A fresh compilation and an infer request on it, with the inputs bound once (infer() copies nothing)."""
        try:
            compiled = self.core.compile_model(self.ov_model, "CPU", self.backend.config(perf_count))
        except Exception as exc:
            raise BackendError(f"openvino could not compile model {self.model.graph.name!r}: {exc}") from exc
        request = compiled.create_infer_request()
        for i, tensor in enumerate(self.inputs):
            request.set_input_tensor(i, tensor)
        return compiled, request

    def run(self) -> None:
        self._infer()

    def profile(self, runs: int) -> tuple[ExecutedNode, ...]:
        compiled, request = self._compile(perf_count=True)
        times: dict[str, list[float]] = {}
        info: dict[str, tuple[str, str]] = {}
        not_run: dict[str, str] = {}
        for i in range(PROFILE_WARMUP + runs):
            request.infer()
            if i < PROFILE_WARMUP:
                continue
            for p in request.get_profiling_info():
                if str(p.status).endswith("EXECUTED"):
                    times.setdefault(p.node_name, []).append(p.real_time.total_seconds() * 1000.0)
                    info[p.node_name] = (p.node_type, p.exec_type)
                else:
                    not_run.setdefault(p.node_name, p.node_type)
        origins: dict[str, list[str]] = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            rt = op.get_rt_info()
            if rt["layerType"].astype(str) in _NOT_LAYERS:
                continue
            members = [m for m in rt["originalLayersNames"].astype(str).split(",") if m]
            origins.setdefault(op.get_friendly_name(), []).extend(members)
        executed = tuple(
            ExecutedNode(
                node=node,
                op_type=info[node][0],
                times_ms=tuple(samples),
                origins=tuple(origins.get(node, ())),
                exec_type=info[node][1],
                inserted=info[node][0] == "Reorder",
            )
            for node, samples in times.items()
        )
        fused = tuple(
            ExecutedNode(node=node, op_type=node_type, times_ms=(), origins=tuple(origins.get(node, ())))
            for node, node_type in not_run.items()
            if node not in times
        )
        return executed + fused


BACKENDS.register("openvino", OpenVinoBackend)
