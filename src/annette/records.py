"""Benchmark records: what one measured configuration leaves behind (the contract of the bench engine, the
backends, mapping, fitting, calibration, evaluation and the hardware bundles).

A record holds the measured graph (annette IR), the raw timing samples with their summary and stability
flags, the per-node profile of what actually ran (each executed node linked back to the graph layers it
covers), and the target it ran on. Everything round-trips through JSON.

A backend's profiler reports what it executed as :class:`ExecutedNode` entries, in the runtime's own names;
the caller that holds the graph links them to its layers once (:func:`annette.mapping.observed.link_profile`),
which gives the :class:`NodeProfile` entries a record stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from annette.graph.ir import Graph

RECORD_SCHEMA_VERSION = 1

KINDS = ("micro", "multi", "network", "cache")


@dataclass(frozen=True)
class Target:
    """What a measurement ran on. ``key`` identifies the target a hardware model describes."""

    backend: str  # registry name: onnxruntime, openvino, torch, simulated, external
    device: str  # e.g. "cpu", "cuda:0"
    device_model: str  # CPU or GPU model string
    runtime: str  # e.g. "onnxruntime", "openvino", "torch"
    runtime_version: str
    provider: str  # execution provider / plugin / mode, e.g. "CPUExecutionProvider", "CPU", "eager"
    threads: int
    precision: str  # fp32, fp16, bf16, int8
    batch: int = 1
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.device}/{self.precision}/b{self.batch}/t{self.threads}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "device": self.device,
            "device_model": self.device_model,
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "provider": self.provider,
            "threads": self.threads,
            "precision": self.precision,
            "batch": self.batch,
            "extra": dict(self.extra),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Target:
        return Target(
            backend=str(d["backend"]),
            device=str(d["device"]),
            device_model=str(d["device_model"]),
            runtime=str(d["runtime"]),
            runtime_version=str(d["runtime_version"]),
            provider=str(d["provider"]),
            threads=int(d["threads"]),
            precision=str(d["precision"]),
            batch=int(d.get("batch", 1)),
            extra={str(k): str(v) for k, v in dict(d.get("extra", {})).items()},
        )


@dataclass(frozen=True)
class Measurement:
    """Raw samples (ms per call, each the mean over ``inner_loops`` calls) and their summary.

    ``label_ms`` is the statistic chosen as the configuration's latency (see ``annette.stats`` for which
    and why); median and min are kept beside it.
    """

    samples_ms: tuple[float, ...]
    inner_loops: int
    label_ms: float
    median_ms: float
    min_ms: float
    warmup_ms: tuple[float, ...] = ()
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples_ms": list(self.samples_ms),
            "inner_loops": self.inner_loops,
            "label_ms": self.label_ms,
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "warmup_ms": list(self.warmup_ms),
            "flags": list(self.flags),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Measurement:
        return Measurement(
            samples_ms=tuple(float(x) for x in d["samples_ms"]),
            inner_loops=int(d["inner_loops"]),
            label_ms=float(d["label_ms"]),
            median_ms=float(d["median_ms"]),
            min_ms=float(d["min_ms"]),
            warmup_ms=tuple(float(x) for x in d.get("warmup_ms", ())),
            flags=tuple(str(x) for x in d.get("flags", ())),
        )


@dataclass(frozen=True)
class NodeProfile:
    """One node the runtime actually executed, as its profiler reports it.

    ``covers`` lists the names of the graph layers this node implements (empty for nodes the runtime
    inserted, e.g. layout reorders); ``time_ms`` is the node's kernel time (the label statistic over the
    profiled runs).
    """

    node: str
    op_type: str
    time_ms: float
    covers: tuple[str, ...] = ()
    exec_type: str = ""  # runtime-specific kernel/implementation name where known

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "op_type": self.op_type,
            "time_ms": self.time_ms,
            "covers": list(self.covers),
            "exec_type": self.exec_type,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> NodeProfile:
        return NodeProfile(
            node=str(d["node"]),
            op_type=str(d["op_type"]),
            time_ms=float(d["time_ms"]),
            covers=tuple(str(x) for x in d.get("covers", ())),
            exec_type=str(d.get("exec_type", "")),
        )


# How an executed node's ``origins`` name what it implements (see ExecutedNode).
Naming = Literal["members", "node", "none"]


@dataclass(frozen=True)
class ExecutedNode:
    """One node a runtime's profiler reports, in the runtime's own names, before it is linked to graph layers.

    ``times_ms``: the node's kernel time in each reported profiled run; empty for a node the runtime compiled
    but did not run (OpenVINO's ``NOT_RUN``: fused into another), whose ``origins`` were removed or fused.
    ``origins``: the runtime's names for what the node implements; ``naming`` says how to read them:

    - ``members``: each names one op of the model the runtime was given, or the tensor it produces
      (OpenVINO's ``originalLayersNames``, the simulated backend's layers);
    - ``node``: the one origin is the node's own name, which the runtime derives from one member of the group
      it runs (``fused <node>``, ``<output tensor>_nchwc``: ONNX Runtime), at times from a later member than
      the group's head (op type ``op_type``); a layer an earlier node already names is left to that node;
    - ``none``: the names are not the model's (torch module paths): the node is linked to no layer.

    ``inserted``: the runtime added the node (a layout reorder), so it implements no layer.
    """

    node: str
    op_type: str
    times_ms: tuple[float, ...]
    origins: tuple[str, ...] = ()
    naming: Naming = "members"
    exec_type: str = ""  # runtime-specific kernel/implementation name where known
    inserted: bool = False

    @property
    def ran(self) -> bool:
        return bool(self.times_ms)


@dataclass(frozen=True)
class BenchRecord:
    """One measured configuration."""

    config_id: str  # stable hash of (family, params, target key): the resume key
    kind: str  # micro | multi | network
    family: str  # e.g. "conv", "gemm", "conv_bn_relu", "torchvision:resnet50"
    params: Mapping[str, Any]
    target: Target
    status: str  # ok | failed
    graph: Graph | None = None
    measurement: Measurement | None = None
    profile: tuple[NodeProfile, ...] = ()
    error: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)  # date, load average, library versions ...

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": RECORD_SCHEMA_VERSION,
            "config_id": self.config_id,
            "kind": self.kind,
            "family": self.family,
            "params": dict(self.params),
            "target": self.target.to_dict(),
            "status": self.status,
            "graph": self.graph.to_dict() if self.graph is not None else None,
            "measurement": self.measurement.to_dict() if self.measurement is not None else None,
            "profile": [p.to_dict() for p in self.profile],
            "error": self.error,
            "metadata": dict(self.metadata),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> BenchRecord:
        return BenchRecord(
            config_id=str(d["config_id"]),
            kind=str(d["kind"]),
            family=str(d["family"]),
            params=dict(d.get("params", {})),
            target=Target.from_dict(d["target"]),
            status=str(d["status"]),
            graph=Graph.from_dict(d["graph"]) if d.get("graph") else None,
            measurement=Measurement.from_dict(d["measurement"]) if d.get("measurement") else None,
            profile=tuple(NodeProfile.from_dict(p) for p in d.get("profile", ())),
            error=str(d.get("error", "")),
            metadata=dict(d.get("metadata", {})),
        )
