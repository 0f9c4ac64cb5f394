"""Test fixture: synthetic benchmark records from a known target (mapping and latency law), no runtime.

The target this generator pretends to be:
- removes Reshape/Flatten always, and a BatchNormalization whose producer is a Conv (folded);
- fuses Conv→Relu, Conv→Add→Relu and Gemm→Relu always, Conv→MaxPool only when the Conv has stride 1;
- inserts one ReorderInput before every Conv node whose producer is not a Conv node (or is the graph input),
  and one ReorderOutput after every Conv node feeding a non-Conv node or the graph output;
- runs each node in max(flops / (P · eff), bytes / B) + o (eff: refined-roofline efficiency for convs), plus
  NODE_MS per node and RUN_MS per run; with ``noise`` > 0 the times get seeded multiplicative noise.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annette.graph.accounting import account
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.layers.refined import efficiency
from annette.records import BenchRecord, Measurement, NodeProfile, Target

RUN_MS = 0.010
NODE_MS = 0.004
TARGET = Target("simulated", "cpu", "synthetic", "synthetic-rt", "1.0", "none", 1, "fp32")

# type -> (peak flop/s, bandwidth byte/s, fixed ms)
LAW = {
    "Conv": (50e9, 10e9, 0.002),
    "Gemm": (20e9, 8e9, 0.001),
    "elementwise": (4e9, 6e9, 0.0008),
    "ReorderInput": (None, 5e9, 0.0005),
    "ReorderOutput": (None, 4e9, 0.0005),
}
CONV_PAR = {"c": 8.0, "f": 16.0}
CONV_ALPHA = {"c": 0.6, "f": 1.0}


def conv_eff(in_c: int, out_c: int) -> float:
    sizes = {"c": np.array([in_c], dtype=float), "f": np.array([out_c], dtype=float)}
    return float(efficiency(sizes, CONV_PAR, CONV_ALPHA)[0])


# -- graph building ------------------------------------------------------------------------------------------
class Builder:
    def __init__(self, name: str, shape: Sequence[int]) -> None:
        self.name = name
        self.input = TensorSpec("x", tuple(shape))
        self.layers: list[Layer] = []

    def _add(self, op: str, inputs: Sequence[TensorSpec], out_shape: Sequence[int], weights=(), **attrs) -> TensorSpec:  # type: ignore[no-untyped-def]
        name = f"{op.lower()}_{len(self.layers)}"
        out = TensorSpec(f"{name}_out", tuple(out_shape))
        w = tuple(TensorSpec(f"{name}_w{i}", tuple(s)) for i, s in enumerate(weights))
        self.layers.append(Layer(name, op, tuple(inputs), (out,), w, attrs))
        return out

    def conv(self, x: TensorSpec, out_c: int, k: int = 3, stride: int = 1, group: int = 1) -> TensorSpec:
        n, c, h, w = x.shape
        oh, ow = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
        return self._add("Conv", [x], (n, out_c, oh, ow), [(out_c, c // group, k, k), (out_c,)],
                         kernel_shape=(k, k), strides=(stride, stride), pads=(k // 2,) * 4, group=group)

    def relu(self, x: TensorSpec) -> TensorSpec:
        return self._add("Relu", [x], x.shape)

    def add(self, a: TensorSpec, b: TensorSpec) -> TensorSpec:
        return self._add("Add", [a, b], a.shape)

    def bn(self, x: TensorSpec) -> TensorSpec:
        c = x.shape[1]
        return self._add("BatchNormalization", [x], x.shape, [(c,), (c,), (c,), (c,)])

    def maxpool(self, x: TensorSpec, k: int = 2) -> TensorSpec:
        n, c, h, w = x.shape
        return self._add("MaxPool", [x], (n, c, h // k, w // k), kernel_shape=(k, k), strides=(k, k))

    def flatten(self, x: TensorSpec) -> TensorSpec:
        return self._add("Flatten", [x], (x.shape[0], math.prod(x.shape[1:])), axis=1)

    def gemm(self, x: TensorSpec, out: int) -> TensorSpec:
        return self._add("Gemm", [x], (x.shape[0], out), [(out, x.shape[1]), (out,)], transB=1)

    def graph(self, out: TensorSpec) -> Graph:
        return Graph(self.name, (self.input,), tuple(self.layers), (out.name,)).validate()


# -- the target ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    name: str
    op_type: str
    members: tuple[Layer, ...]
    tensor: TensorSpec | None = None  # inserted nodes: the tensor they convert


def _consumers(graph: Graph, layer: Layer) -> list[Layer]:
    return [graph.by_name[c] for t in layer.outputs for c in graph.consumers.get(t.name, [])]


def execute(graph: Graph) -> list[Node]:
    """The synthetic target's executed nodes, in execution order."""
    removed: set[str] = set()
    for layer in graph.layers:
        prods = graph.predecessors(layer.name)
        if layer.op in ("Reshape", "Flatten"):
            removed.add(layer.name)
        elif layer.op == "BatchNormalization" and prods and graph.by_name[prods[0]].op == "Conv":
            removed.add(layer.name)

    def kept_consumers(layer: Layer) -> list[Layer]:
        out = []
        for c in _consumers(graph, layer):
            out.extend(kept_consumers(c) if c.name in removed else [c])
        return out

    def leaves(layer: Layer) -> bool:
        if any(t.name in graph.outputs for t in layer.outputs):
            return True
        return any(leaves(c) for c in _consumers(graph, layer) if c.name in removed)

    def follow(start: Layer, ops: Sequence[str]) -> tuple[Layer, ...] | None:
        chain = [start]
        for op in ops:
            cons = kept_consumers(chain[-1])
            if len(cons) != 1 or cons[0].op != op or leaves(chain[-1]):
                return None
            chain.append(cons[0])
        return tuple(chain)

    taken = set(removed)
    groups: list[tuple[Layer, ...]] = []
    for layer in graph.layers:
        if layer.name in taken:
            continue
        members: tuple[Layer, ...] = (layer,)
        if layer.op == "Conv":
            for tail in (("Add", "Relu"), ("Relu",), ("MaxPool",)):
                chain = follow(layer, tail)
                if chain and (tail != ("MaxPool",) or layer.attrs["strides"] == (1, 1)):
                    members = chain
                    break
        elif layer.op == "Gemm":
            members = follow(layer, ("Relu",)) or members
        taken.update(m.name for m in members)
        groups.append(members)

    group_of = {m.name: g for g in groups for m in g}

    def source(tensor: str) -> Layer | None:
        name = graph.producer.get(tensor)
        while name is not None and name in removed:
            name = graph.producer.get(graph.by_name[name].inputs[0].name)
        return None if name is None else graph.by_name[name]

    nodes: list[Node] = []
    for g in groups:
        if g[0].op == "Conv":
            src = source(g[0].inputs[0].name)
            if src is None or group_of[src.name][0].op != "Conv":
                nodes.append(Node(f"reorder_in_{g[0].name}", "ReorderInput", (), g[0].inputs[0]))
        nodes.append(Node(g[0].name, g[0].op, g))
        if g[0].op == "Conv":
            cons = kept_consumers(g[-1])
            if leaves(g[-1]) or any(group_of[c.name][0].op != "Conv" for c in cons):
                nodes.append(Node(f"reorder_out_{g[0].name}", "ReorderOutput", (), g[-1].outputs[0]))
    return nodes


def node_time(node: Node) -> float:
    if not node.members:
        assert node.tensor is not None
        _, bw, o = LAW[node.op_type]
        return 2 * node.tensor.nbytes / bw * 1e3 + o
    costs = [account(m) for m in node.members]
    flops = sum(c.flops for c in costs)
    produced = {t.name for m in node.members for t in m.outputs}
    nbytes = sum(t.nbytes for m in node.members for t in m.inputs if t.name not in produced)
    nbytes += sum(c.weight_bytes for c in costs) + sum(t.nbytes for t in node.members[-1].outputs)
    primary = node.members[0]
    peak, bw, o = LAW.get(primary.op, LAW["elementwise"])
    eff = conv_eff(primary.inputs[0].shape[1], primary.outputs[0].shape[1]) if primary.op == "Conv" else 1.0
    return max(flops / (peak * eff), nbytes / bw) * 1e3 + o  # type: ignore[operator]


def record(graph: Graph, kind: str, family: str, rng: np.random.Generator, noise: float = 0.0,
           profile: bool = True) -> BenchRecord:
    nodes = execute(graph)
    times = [node_time(n) * (1 + noise * rng.standard_normal()) for n in nodes]
    total = sum(times) + NODE_MS * len(nodes) + RUN_MS
    samples = tuple(total * (1 + noise * abs(rng.standard_normal())) for _ in range(5))
    meas = Measurement(samples, 1, min(samples), float(np.median(samples)), min(samples))
    prof = tuple(
        NodeProfile(n.name, n.op_type, t, tuple(m.name for m in n.members)) for n, t in zip(nodes, times, strict=True)
    ) if profile else ()
    cid = hashlib.sha1(graph.to_json(indent=None).encode()).hexdigest()[:16]
    return BenchRecord(cid, kind, family, {}, TARGET, "ok", graph, meas, prof)


# -- a benchmark campaign ------------------------------------------------------------------------------------
def campaign(seed: int = 0, n_conv: int = 120, noise: float = 0.0, profile: bool = True) -> list[BenchRecord]:
    rng = np.random.default_rng(seed)
    out: list[BenchRecord] = []

    def rec(b: Builder, y: TensorSpec, kind: str, family: str) -> None:
        out.append(record(b.graph(y), kind, family, rng, noise, profile))

    for i in range(n_conv):
        c, f = int(rng.integers(1, 97)), int(rng.integers(1, 129))
        hw, k, s = int(rng.choice([7, 14, 28, 56])), int(rng.choice([1, 3, 5])), int(rng.choice([1, 2]))
        b = Builder(f"conv{i}", (1, c, hw, hw))
        rec(b, b.conv(b.input, f, k, s), "micro", "conv")
    for i in range(30):
        c, hw = int(rng.integers(1, 129)), int(rng.choice([7, 14, 28, 56]))
        for op in ("relu", "add", "maxpool", "bn"):
            b = Builder(f"{op}{i}", (1, c, hw, hw))
            y = b.add(b.input, b.input) if op == "add" else getattr(b, op)(b.input)
            rec(b, y, "micro", op)
        b = Builder(f"gemm{i}", (1, int(rng.integers(16, 1025))))
        rec(b, b.gemm(b.input, int(rng.integers(10, 1001))), "micro", "gemm")
    for i in range(16):
        c, f, hw = int(rng.integers(4, 65)), int(rng.integers(4, 65)), int(rng.choice([8, 16, 32]))
        s = 1 + i % 2
        b = Builder(f"conv_relu{i}", (1, c, hw, hw))
        rec(b, b.relu(b.conv(b.input, f, 3, s)), "multi", "conv_relu")
        # the chain's members alone, for the timing test
        b = Builder(f"conv_alone{i}", (1, c, hw, hw))
        y = b.conv(b.input, f, 3, s)
        rec(b, y, "micro", "conv")
        b = Builder(f"relu_alone{i}", y.shape)
        rec(b, b.relu(b.input), "micro", "relu")
        b = Builder(f"conv_bn_relu{i}", (1, c, hw, hw))
        rec(b, b.relu(b.bn(b.conv(b.input, f, 3, s))), "multi", "conv_bn_relu")
        b = Builder(f"conv_add_relu{i}", (1, c, hw, hw))
        rec(b, b.relu(b.add(b.conv(b.input, c, 3, 1), b.input)), "multi", "conv_add_relu")
        b = Builder(f"conv_pool{i}", (1, c, hw, hw))
        rec(b, b.maxpool(b.conv(b.input, f, 3, s)), "multi", "conv_pool")
        b = Builder(f"add_bn{i}", (1, c, hw, hw))
        rec(b, b.bn(b.add(b.input, b.input)), "multi", "add_bn")
        b = Builder(f"conv_conv{i}", (1, c, hw, hw))
        rec(b, b.conv(b.relu(b.conv(b.input, f, 3, 1)), c, 1, 1), "multi", "conv_conv")
        b = Builder(f"head{i}", (1, c, hw, hw))
        rec(b, b.relu(b.gemm(b.flatten(b.maxpool(b.relu(b.conv(b.input, f, 3, 1)))), 10)), "multi", "head")
    return out
