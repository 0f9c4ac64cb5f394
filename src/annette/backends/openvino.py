"""OpenVINO, CPU plugin.

Options: ``threads`` (``INFERENCE_NUM_THREADS``, default 1), ``precision`` (``INFERENCE_PRECISION_HINT``:
f32 | bf16 | f16, default f32: the plugin runs bf16 by default on AVX-512-BF16/AMX CPUs, so f32 is asked
for explicitly). ``PERFORMANCE_HINT`` is LATENCY.

Per-node profile: a second compilation with ``PERF_COUNT`` reports one counter per runtime node
(``get_profiling_info``); fused layers are ``NOT_RUN``, inserted layout ``Reorder``s cover no layer. The
runtime model's ``originalLayersNames`` rt_info lists the model ops each executed node implements; those
names (ONNX node names, or output tensor names for nodes that produce a graph output) link it to the
graph layers; layers renamed by OpenVINO's own transformations are linked by ``link_layers``.
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
    link_layers,
    order_layers,
    random_inputs,
    resolve_runtime_name,
)
from annette.bench.records import NodeProfile, Target
from annette.errors import BackendError

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
PROFILE_WARMUP = 2
_NOT_LAYERS = ("Input", "Output", "Const", "Parameter", "Result", "Constant")


class OpenVinoBackend:
    name = "openvino"

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

    def prepare(self, model: Any) -> OvPrepared:
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

    def profile(self, runs: int) -> tuple[NodeProfile, ...]:
        from annette.bench.runner import label_of
        from annette.importers.onnx import graph_from_onnx

        compiled, request = self._compile(perf_count=True)
        times: dict[str, list[float]] = {}
        info: dict[str, tuple[str, str]] = {}
        not_run: set[str] = set()
        for i in range(PROFILE_WARMUP + runs):
            request.infer()
            if i < PROFILE_WARMUP:
                continue
            for p in request.get_profiling_info():
                if str(p.status).endswith("EXECUTED"):
                    times.setdefault(p.node_name, []).append(p.real_time.total_seconds() * 1000.0)
                    info[p.node_name] = (p.node_type, p.exec_type)
                else:
                    not_run.add(p.node_name)
        graph = graph_from_onnx(self.model)
        anchors: dict[str, set[str]] = {node: set() for node in times}
        removed: set[str] = set()
        for op in compiled.get_runtime_model().get_ordered_ops():
            rt = op.get_rt_info()
            name = op.get_friendly_name()
            if rt["layerType"].astype(str) in _NOT_LAYERS:
                continue
            members = [m for m in rt["originalLayersNames"].astype(str).split(",") if m]
            layers = {layer for m in members for layer in resolve_runtime_name(m, graph)}
            if name in anchors:
                anchors[name] |= layers
            elif name in not_run:
                removed |= layers
        removed -= {layer for layers in anchors.values() for layer in layers}
        inserted = {node for node, (node_type, _) in info.items() if node_type == "Reorder"}
        covers = link_layers(graph, anchors, {node: t for node, (t, _) in info.items()}, removed, inserted)
        return tuple(
            NodeProfile(
                node=node,
                op_type=info[node][0],
                time_ms=label_of(samples),
                covers=order_layers(graph, covers[node]),
                exec_type=info[node][1],
            )
            for node, samples in times.items()
        )


BACKENDS.register("openvino", OpenVinoBackend)
