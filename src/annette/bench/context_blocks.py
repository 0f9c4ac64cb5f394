"""Generated multi-layer networks beyond the core blocks, each a family of the one registry
(``annette.bench.blocks.FAMILIES``), measured by ``annette build`` in stages of their own:

- **context** (``ctx_*``): CNN blocks *inside* a network. The core block families start from a graph input, so
  their first layer reads a plain NCHW tensor; inside a real network the same blocks read tensors that an
  earlier convolution left in the runtime's blocked layout (ONNX Runtime's NCHWc), and the runtime maps them
  differently (a residual Add and the ReLU after it fused into the convolution when the skip tensor is blocked
  too; no reorders between blocked layers). Each puts a block between a stem convolution (1x1) and a tail
  convolution, with random sizes: residual basic and bottleneck blocks (grouped, strided with a projection
  skip, squeeze-excitation), inverted residuals (ReLU6 / ReLU / HardSwish / SiLU, squeeze-excitation),
  DenseNet-style layers with concatenation, ShuffleNet-style channel shuffles, ConvNeXt-style blocks, a
  classifier head, and DARTS/NAS-Bench-201-style cells of pre-activation edges summed at each node.
- **cache** (``cache_linear``, ``cache_conv``, record kind ``cache``): chains of distinct layers whose weights add
  up to 4 MB - 1.5 GB, so each layer runs after the others swept the cache; a micro-benchmark keeps its weights
  warm. ``annette.fit.fit_cache`` fits the cache capacity and the weight-fetch bandwidth from them; they are
  not layer-model samples.
- **overhead** (``node_chain``): chains of 1-256 trivial layers on a tiny tensor. Their unprofiled time grows
  by the runtime's real per-node cost (dispatch plus a kernel of almost nothing), which profiled kernel times
  overstate (``benchmarks/profiler_overhead.py``): ``annette.fit.fit_overhead`` takes the per-node cost from
  them.

Nothing here is taken from the evaluation networks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from annette.bench.blocks import FAMILIES, Family, NetBuilder

Params = dict[str, Any]


def _c(rng: np.random.Generator, lo: int, hi: int, mult: int = 8) -> int:
    """Channels log-uniform in [lo, hi], mostly multiples of ``mult`` (as in real networks), sometimes not."""
    c = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
    return max(mult, c // mult * mult) if rng.random() < 0.85 else max(lo, c)


def _hw(rng: np.random.Generator) -> int:
    return int(rng.choice([7, 14, 28, 56]))


def _stem(b: NetBuilder, p: Mapping[str, Any]) -> str:
    x = b.input((1, p["c_in"], p["h"], p["h"]))
    return b.act(b.bn(b.conv(x, p["c"], 1, base="stem")), "relu")


def _tail(b: NetBuilder, y: str) -> list[str]:
    return [b.act(b.bn(b.conv(y, b.shapes[y][1], 1, base="tail")), "relu")]


def _se(b: NetBuilder, x: str, squeeze: int, act: str, gate: str) -> str:
    s = b.act(b.conv(b.global_avgpool(x), squeeze, 1, base="se_fc1"), act)
    return b.binary("Mul", x, b.act(b.conv(s, b.shapes[x][1], 1, base="se_fc2"), gate))


# -- families ------------------------------------------------------------------------------------------
def _basic_sample(rng: np.random.Generator) -> Params:
    c = _c(rng, 16, 512)
    stride = int(rng.choice([1, 1, 2]))
    return {"c_in": _c(rng, 16, 256), "c": c, "h": _hw(rng), "stride": stride,
            "cout": c if stride == 1 else _c(rng, 16, 512)}


def _basic(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return _tail(b, basic_block(b, _stem(b, p), p))


def basic_block(b: NetBuilder, x: str, p: Mapping[str, Any]) -> str:
    """A ResNet basic block on ``x`` (``stride``, ``cout``)."""
    y = b.act(b.bn(b.conv(x, p["cout"], 3, p["stride"])), "relu")
    y = b.bn(b.conv(y, p["cout"], 3))
    return b.act(b.binary("Add", y, _skip(b, x, p)), "relu")


def _skip(b: NetBuilder, x: str, p: Mapping[str, Any]) -> str:
    """The identity, or a strided 1x1 projection where the block changes the shape."""
    if p["stride"] == 1 and p["cout"] == b.shapes[x][1]:
        return x
    return b.bn(b.conv(x, p["cout"], 1, p["stride"], base="down"))


def _bottleneck_sample(rng: np.random.Generator) -> Params:
    c = _c(rng, 32, 1024)
    width = _c(rng, 16, 256)
    groups = int(rng.choice([1, 1, 1, 8, 32])) if width % 32 == 0 else 1
    stride = int(rng.choice([1, 1, 2]))
    return {"c_in": _c(rng, 16, 256), "c": c, "h": _hw(rng), "width": width, "groups": groups, "stride": stride,
            "cout": c if stride == 1 else _c(rng, 64, 1024), "se": int(rng.random() < 0.25)}


def _bottleneck(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return _tail(b, bottleneck_block(b, _stem(b, p), p))


def bottleneck_block(b: NetBuilder, x: str, p: Mapping[str, Any]) -> str:
    """A ResNet/ResNeXt bottleneck on ``x`` (``width``, ``groups``, ``stride``, ``se``, ``cout``)."""
    y = b.act(b.bn(b.conv(x, p["width"], 1)), "relu")
    y = b.act(b.bn(b.conv(y, p["width"], 3, p["stride"], groups=p["groups"])), "relu")
    if p["se"]:
        y = _se(b, y, max(8, p["width"] // 4), "relu", "sigmoid")
    y = b.bn(b.conv(y, p["cout"], 1))
    return b.act(b.binary("Add", y, _skip(b, x, p)), "relu")


def _ir_sample(rng: np.random.Generator) -> Params:
    c = _c(rng, 16, 192)
    stride = int(rng.choice([1, 1, 2]))
    act = str(rng.choice(["clip", "relu", "hardswish", "silu"]))
    return {"c_in": _c(rng, 16, 192), "c": c, "h": _hw(rng) * 2 if rng.random() < 0.3 else _hw(rng),
            "expand": int(rng.choice([1, 3, 4, 6])), "k": int(rng.choice([3, 5])), "stride": stride,
            "cout": c if stride == 1 and rng.random() < 0.7 else _c(rng, 16, 320), "act": act,
            "se": int(rng.random() < (0.8 if act == "silu" else 0.4))}


def _ir(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return _tail(b, ir_block(b, _stem(b, p), p))


def ir_block(b: NetBuilder, x: str, p: Mapping[str, Any]) -> str:
    """A MobileNet inverted residual on ``x`` (``expand``, ``k``, ``stride``, ``act``, ``se``, ``cout``)."""
    c = b.shapes[x][1]
    hidden = c * p["expand"]
    y = b.act(b.bn(b.conv(x, hidden, 1)), p["act"]) if p["expand"] != 1 else x
    y = b.act(b.bn(b.conv(y, hidden, p["k"], p["stride"], groups=hidden)), p["act"])
    if p["se"]:
        silu = p["act"] == "silu"
        y = _se(b, y, max(8, hidden // 4), "silu" if silu else "relu", "sigmoid" if silu else "hardsigmoid")
    y = b.bn(b.conv(y, p["cout"], 1))
    return b.binary("Add", y, x) if p["stride"] == 1 and p["cout"] == c else y


def _dense_sample(rng: np.random.Generator) -> Params:
    return {"c_in": _c(rng, 16, 256), "c": _c(rng, 32, 1024), "h": _hw(rng), "growth": int(rng.choice([12, 32, 48])),
            "layers": int(rng.choice([1, 2, 3])), "transition": int(rng.random() < 0.3)}


def _dense(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return _tail(b, dense_block(b, _stem(b, p), p))


def dense_block(b: NetBuilder, x: str, p: Mapping[str, Any]) -> str:
    """DenseNet layers on ``x`` (``growth``, ``layers``), concatenated, then an optional ``transition``."""
    feats = [x]
    for _ in range(p["layers"]):
        cat = b.concat(feats) if len(feats) > 1 else feats[0]
        y = b.conv(b.act(b.bn(cat), "relu"), 4 * p["growth"], 1)
        feats.append(b.conv(b.act(b.bn(y), "relu"), p["growth"], 3))
    y = b.concat(feats)
    if p["transition"]:
        y = b.pool(b.conv(b.act(b.bn(y), "relu"), b.shapes[y][1] // 2, 1), "avgpool", 2, 2)
    return y


def _shuffle_sample(rng: np.random.Generator) -> Params:
    return {"c_in": _c(rng, 16, 256), "c": _c(rng, 16, 256, mult=16), "h": _hw(rng), "groups": 2}


def _shuffle(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return _tail(b, shuffle_block(b, _stem(b, p), p))


def shuffle_block(b: NetBuilder, x: str, p: Mapping[str, Any]) -> str:
    """A ShuffleNet-style block on ``x`` (even channels; ``groups`` of the channel shuffle)."""
    c = b.shapes[x][1]
    half = c // 2
    y1 = b.act(b.bn(b.conv(b.bn(b.conv(x, c, 3, groups=c)), half, 1)), "relu")
    y2 = b.act(b.bn(b.conv(x, half, 1)), "relu")
    y2 = b.bn(b.conv(y2, half, 3, groups=half))
    y2 = b.act(b.bn(b.conv(y2, half, 1)), "relu")
    y = b.concat([y1, y2])
    n, c, h, w = b.shapes[y]
    y = b.reshape(y, (n, p["groups"], c // p["groups"], h, w))
    y = b.transpose(y, (0, 2, 1, 3, 4))
    return b.reshape(y, (n, c, h, w))


def _convnext_sample(rng: np.random.Generator) -> Params:
    return {"c_in": _c(rng, 16, 256), "c": int(rng.choice([64, 96, 128, 192, 256, 384, 512, 768])),
            "h": _hw(rng)}


def _convnext(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return _tail(b, convnext_block(b, _stem(b, p)))


def convnext_block(b: NetBuilder, x: str) -> str:
    """A ConvNeXt block on ``x``: 7x7 depthwise, LayerNorm and MLP over channels last, layer scale, residual."""
    c = b.shapes[x][1]
    y = b.transpose(b.conv(x, c, 7, groups=c), (0, 2, 3, 1))
    y = b.linear(b.act(b.linear(b.layernorm(y), 4 * c, base="fc1"), "gelu"), c, base="fc2")
    y = b.binary("Mul", y, b.weight("gamma", (c,)))
    return b.binary("Add", b.transpose(y, (0, 3, 1, 2)), x)


def _head_sample(rng: np.random.Generator) -> Params:
    h = int(rng.choice([1, 2, 7, 14]))
    return {"c_in": _c(rng, 16, 256), "c": _c(rng, 32, 512), "h": h * 2, "pool": str(rng.choice(["max", "gap"])),
            "hidden": _c(rng, 128, 4096), "classes": int(rng.choice([10, 100, 1000]))}


def _head(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = _stem(b, p)
    x = b.pool(x, "maxpool", 2, 2) if p["pool"] == "max" else b.global_avgpool(x)
    n, c, h, w = b.shapes[x]
    y = b.node("Flatten", [x], (n, c * h * w), base="flatten", axis=1)
    y = b.act(b.gemm(b.act(b.gemm(y, p["hidden"], base="fc1"), "relu"), p["hidden"], base="fc2"), "relu")
    return [b.gemm(y, p["classes"], base="fc3")]


CELL_OPS = ("conv1x1", "conv3x3", "avgpool", "skip", "none")


def _cell_sample(rng: np.random.Generator) -> Params:
    edges = [str(rng.choice(CELL_OPS)) for _ in range(6)]
    return {"c_in": _c(rng, 8, 128), "c": _c(rng, 8, 128), "h": int(rng.choice([8, 16, 32, 56])), "edges": edges,
            "reduce": int(rng.random() < 0.25), "head": int(rng.random() < 0.2)}


def _relu_conv_bn(b: NetBuilder, x: str, c: int, k: int, stride: int = 1) -> str:
    return b.bn(b.conv(b.act(x, "relu"), c, k, stride))


def _cell(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    """A DARTS-style cell of pre-activation (ReLU-Conv-BN) edges, 3x3 average pools and skips summed at each node,
    optionally followed by a pre-activation reduction block or a BN-ReLU-pool-linear head."""
    x = _stem(b, p)
    c = p["c"]
    nodes = [x]
    edges = iter(p["edges"])
    for _ in range(3):
        terms = []
        for src in list(nodes):
            op = next(edges)
            if op.startswith("conv"):
                terms.append(_relu_conv_bn(b, src, c, 1 if op == "conv1x1" else 3))
            elif op == "avgpool":
                terms.append(b.pool(src, "avgpool", 3, 1, 1))
            elif op == "skip":
                terms.append(src)
        y = terms[0] if terms else src
        for t in terms[1:]:
            y = b.binary("Add", y, t)
        nodes.append(y)
    y = nodes[-1]
    if p["head"]:
        y = b.global_avgpool(b.act(b.bn(y), "relu"))
        n, ch, _, _ = b.shapes[y]
        return [b.gemm(b.node("Flatten", [y], (n, ch), base="flatten", axis=1), 10, base="fc")]
    if p["reduce"]:
        a = _relu_conv_bn(b, _relu_conv_bn(b, y, 2 * c, 3, 2), 2 * c, 3)
        y = b.binary("Add", a, b.conv(b.pool(y, "avgpool", 2, 2), 2 * c, 1, base="down"))
    return _tail(b, y)




def _block_cost(p: Mapping[str, Any]) -> float:
    """A rough MAC count of a context block (for the cost cap of random draws and refinement)."""
    c = max(int(p.get("c", 1)), int(p.get("cout", 1)), int(p.get("c_in", 1)))
    width = max(int(p.get("width", 0)), int(p.get("c", 1)) * int(p.get("expand", 1)) // 4, int(p.get("hidden", 0)) // 8)
    return float(p["h"]) ** 2 * c * max(c, width) * 4.0 + 1e4


_CONTEXT = {
    "ctx_basic": (_basic_sample, _basic, 2.0),
    "ctx_bottleneck": (_bottleneck_sample, _bottleneck, 3.0),
    "ctx_ir": (_ir_sample, _ir, 4.0),
    "ctx_dense": (_dense_sample, _dense, 2.0),
    "ctx_shuffle": (_shuffle_sample, _shuffle, 1.0),
    "ctx_convnext": (_convnext_sample, _convnext, 1.0),
    "ctx_head": (_head_sample, _head, 1.0),
    "ctx_cell": (_cell_sample, _cell, 3.0),
}
for _name, (_sample, _build, _weight) in _CONTEXT.items():
    FAMILIES.register(_name, Family(_name, "multi", _build, _sample, _block_cost, stage="context", weight=_weight))


# -- cache pressure ---------------------------------------------------------------------------------------
MB = 2**20


def _cache_sample(rng: np.random.Generator) -> Params:
    """A chain whose total weights are log-uniform in [4 MB, 1.5 GB]."""
    total = math.exp(rng.uniform(math.log(4 * MB), math.log(1536 * MB)))
    if rng.random() < 0.6:
        d = int(rng.choice([256, 512, 768, 1024, 1536]))
        ratio = int(rng.choice([1, 2, 4]))
        per_pair = 2 * d * d * ratio * 4  # d -> ratio*d -> d, fp32
        pairs = max(1, min(48, round(total / per_pair)))
        return {"kind": "linear", "s": int(round(math.exp(rng.uniform(math.log(1), math.log(256))))), "d": d,
                "ratio": ratio, "pairs": pairs}
    c = int(rng.choice([128, 256, 384, 512, 768, 1024]))
    per_layer = 9 * c * c * 4
    layers = max(2, min(64, round(total / per_layer)))
    return {"kind": "conv", "c": c, "h": int(rng.choice([7, 14])), "layers": layers}



def _cache_linear_sample(rng: np.random.Generator) -> Params:
    while True:
        p = _cache_sample(rng)
        if p["kind"] == "linear":
            return {k: v for k, v in p.items() if k != "kind"}


def _cache_conv_sample(rng: np.random.Generator) -> Params:
    while True:
        p = _cache_sample(rng)
        if p["kind"] == "conv":
            return {k: v for k, v in p.items() if k != "kind"}


def _cache_linear(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    y = b.input((1, p["s"], p["d"]))
    for _ in range(p["pairs"]):
        y = b.linear(b.act(b.linear(y, p["d"] * p["ratio"], base="up"), "relu"), p["d"], base="down")
    return [y]


def _cache_conv(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    y = b.input((1, p["c"], p["h"], p["h"]))
    for _ in range(p["layers"]):
        y = b.act(b.conv(y, p["c"], 3), "relu")
    return [y]


# These are large on purpose (the build draws them without the cost cap): the cost is the weight footprint in bytes.
FAMILIES.register("cache_linear", Family(
    "cache_linear", "cache", _cache_linear, _cache_linear_sample,
    lambda p: 2.0 * p["d"] * p["d"] * p["ratio"] * p["pairs"] * 4, stage="cache", weight=0.6))
FAMILIES.register("cache_conv", Family(
    "cache_conv", "cache", _cache_conv, _cache_conv_sample,
    lambda p: 9.0 * p["c"] * p["c"] * p["layers"] * 4, stage="cache", weight=0.4))


# -- per-node overhead ------------------------------------------------------------------------------------
CHAIN_OPS = ("relu", "add", "mul")
CHAIN_LENGTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _chain_sample(rng: np.random.Generator) -> Params:
    return {"op": str(rng.choice(CHAIN_OPS)), "layers": int(rng.choice(CHAIN_LENGTHS)), "c": int(rng.choice([8, 16])),
            "h": int(rng.choice([4, 8]))}


def _node_chain(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    y = b.input((1, p["c"], p["h"], p["h"]))
    for _ in range(p["layers"]):
        if p["op"] == "relu":
            y = b.act(y, "relu")
        else:
            y = b.binary("Add" if p["op"] == "add" else "Mul", y, b.weight("w", (1, p["c"], 1, 1)))
    return [y]


FAMILIES.register("node_chain", Family(
    "node_chain", "multi", _node_chain, _chain_sample, lambda p: 1e3 + 2.0 * p["layers"] * p["c"] * p["h"] ** 2,
    stage="overhead"))


def chain_plan() -> list[Params]:
    """Every node chain the overhead stage measures: each op at every length (small tensors)."""
    return [{"op": op, "layers": n, "c": 16, "h": 8} for op in CHAIN_OPS for n in CHAIN_LENGTHS]
