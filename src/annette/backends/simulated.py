"""A simulated backend for tests: a deterministic latency function of the graph's op counts.

Not a real device. ``run()`` busy-waits for the modelled time, so the whole pipeline (protocol, store,
campaign, isolation, fitting) runs without a runtime. The model, per executed node:

    time_ms = overhead_ms + max(flops / (peak_gflops * 1e6), bytes / (bandwidth_gbs * 1e6))

plus ``call_ms`` per run (the session's own overhead, which no node profile shows), with a mapping like a
CPU runtime's: Reshape-like zero-cost layers are removed; an activation or a
BatchNormalization whose only input is a Conv/Gemm/MatMul output used by nothing else is fused into that
node (it adds its FLOPs but no overhead; the node's bytes are its first layer's inputs, all weights and
its last layer's outputs). Everything is multiplied by ``scale``.

``prepare`` models the annette graph: pass it with the ONNX model (``prepare(model, graph)``, as the bench
engine does), or the ``Graph`` alone. Its profile names each node's layers (naming ``members``).

Test options: ``crash_on`` / ``hang_on`` (a substring of the ONNX graph's name, or the Graph's): ``run()`` aborts the
process / sleeps forever on a matching model, to exercise the worker's isolation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import annette
from annette.backends.base import BACKENDS, as_model_proto, check_threads
from annette.errors import BackendError
from annette.graph.ir import Graph, Layer
from annette.records import ExecutedNode, Target

FUSABLE_INTO = frozenset({"Conv", "Gemm", "MatMul", "ConvTranspose"})
FUSED_FOLLOWERS = frozenset(
    {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "BatchNormalization"}
)


@dataclass(frozen=True)
class SimNode:
    name: str
    op_type: str
    covers: tuple[str, ...]
    time_ms: float


def simulate(
    graph: Graph,
    *,
    peak_gflops: float = 20.0,
    bandwidth_gbs: float = 10.0,
    overhead_ms: float = 0.005,
    scale: float = 1.0,
) -> tuple[SimNode, ...]:
    """The executed nodes of ``graph`` under the simulated mapping, with their modelled times."""
    from annette.graph.accounting import account

    groups: list[list[Layer]] = []
    group_of: dict[str, int] = {}
    for layer in graph.layers:
        cost = account(layer)
        if cost.zero_cost:
            continue
        preds = graph.predecessors(layer.name)
        if (
            layer.op in FUSED_FOLLOWERS
            and len(preds) == 1
            and preds[0] in group_of
            and groups[group_of[preds[0]]][0].op in FUSABLE_INTO
            and graph.successors(preds[0]) == [layer.name]
        ):
            group_of[layer.name] = group_of[preds[0]]
            groups[group_of[layer.name]].append(layer)
            continue
        group_of[layer.name] = len(groups)
        groups.append([layer])
    nodes = []
    for group in groups:
        costs = [account(layer) for layer in group]
        flops = sum(c.flops for c in costs)
        nbytes = costs[0].input_bytes + sum(c.weight_bytes for c in costs) + costs[-1].output_bytes
        t = overhead_ms + max(flops / (peak_gflops * 1e6), nbytes / (bandwidth_gbs * 1e6))
        nodes.append(SimNode(group[0].name, group[0].op, tuple(layer.name for layer in group), t * scale))
    return tuple(nodes)


class SimulatedBackend:
    name = "simulated"
    takes_specs = False

    def __init__(
        self,
        threads: int = 1,
        batch: int = 1,
        scale: float = 1.0,
        peak_gflops: float = 20.0,
        bandwidth_gbs: float = 10.0,
        overhead_ms: float = 0.005,
        call_ms: float = 0.002,
        crash_on: str = "",
        hang_on: str = "",
    ) -> None:
        self.threads = check_threads(threads)
        self.batch = batch
        self.params = {
            "scale": float(scale),
            "peak_gflops": float(peak_gflops),
            "bandwidth_gbs": float(bandwidth_gbs),
            "overhead_ms": float(overhead_ms),
        }
        self.call_ms = float(call_ms) * self.params["scale"]
        self.crash_on = crash_on
        self.hang_on = hang_on

    def is_available(self) -> bool:
        return True

    def describe(self) -> Target:
        return Target(
            backend=self.name,
            device="simulated",
            device_model="simulated device (deterministic latency function of op counts; for tests only)",
            runtime="annette-simulated",
            runtime_version=annette.__version__,
            provider="simulated",
            threads=self.threads,
            precision="fp32",
            batch=self.batch,
            extra={**{k: repr(v) for k, v in self.params.items()}, "call_ms": repr(self.call_ms)},
        )

    def prepare(self, model: Any, graph: Graph | None = None) -> SimPrepared:
        if isinstance(model, Graph):
            graph, name = model, model.name
        else:
            name = as_model_proto(model, self.name).graph.name
        if self.crash_on and self.crash_on in name:
            return SimPrepared((), 0.0, crash=True)
        if self.hang_on and self.hang_on in name:
            return SimPrepared((), 0.0, hang=True)
        if graph is None:
            raise BackendError(
                "the simulated backend models the annette graph of a model: pass it, prepare(model, graph), "
                "or the Graph alone"
            )
        return SimPrepared(simulate(graph, **self.params), self.call_ms)


class SimPrepared:
    def __init__(self, nodes: Iterable[SimNode], call_ms: float, crash: bool = False, hang: bool = False) -> None:
        self.nodes = tuple(nodes)
        self.latency_s = (sum(n.time_ms for n in self.nodes) + call_ms) / 1000.0
        self.crash = crash
        self.hang = hang

    @property
    def latency_ms(self) -> float:
        return self.latency_s * 1000.0

    def run(self) -> None:
        if self.crash:
            os.abort()  # simulates a runtime that takes the process down (SIGABRT)
        while self.hang:
            time.sleep(3600)
        end = time.perf_counter() + self.latency_s
        while time.perf_counter() < end:
            pass

    def profile(self, runs: int) -> tuple[ExecutedNode, ...]:
        for _ in range(runs):
            self.run()
        return tuple(
            ExecutedNode(n.name, n.op_type, (n.time_ms,), origins=n.covers, exec_type="simulated") for n in self.nodes
        )


BACKENDS.register("simulated", SimulatedBackend)
