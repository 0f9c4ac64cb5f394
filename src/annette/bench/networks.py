"""Whole generated networks of mainstream size, families of the one registry (``annette.bench.blocks.FAMILIES``)
that ``annette build`` measures end to end in its network and validation stages, beside NAS-Bench-201 cells and
blocks in context (``annette.build.validation_networks``).

Layer models are fitted on single layers and small blocks; a network of 2-100 ms moves its activations through
the cache hierarchy differently and has far fewer nodes per millisecond, so the network stage needs networks of
that size to learn how the stacked estimate relates to them:

- ``net_cnn``: a stem, 3-5 stages of one block kind (ResNet basic or bottleneck, grouped or with
  squeeze-excitation, MobileNet inverted residuals, ConvNeXt, DenseNet, ShuffleNet; the blocks of
  ``annette.bench.context_blocks``), each stage starting with a stride-2 block or downsampling layer, and a
  classifier; batch 1-4 at 128-256 px.
- ``net_vit``: a patch embedding (optionally behind two convolutions), 2-8 pre-norm transformer encoder blocks,
  a final LayerNorm, mean pooling over tokens and a classifier; batch 1-4 at 160-256 px.

They are drawn from seeds of their own; none is an evaluation network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from annette.bench.blocks import FAMILIES, Family, NetBuilder, attention_block, mlp_block
from annette.bench.context_blocks import (
    basic_block,
    bottleneck_block,
    convnext_block,
    dense_block,
    ir_block,
    shuffle_block,
)

Params = dict[str, Any]

CNN_BLOCKS = ("basic", "bottleneck", "ir", "convnext", "dense", "shuffle")
_CNN_P = (0.2, 0.2, 0.3, 0.1, 0.1, 0.1)
# the widest stage of each block kind, and the spatial reduction before the first stage
_MAX_C = {"basic": 512, "bottleneck": 2048, "ir": 320, "convnext": 768, "dense": 0, "shuffle": 464}
_STEM_STRIDE = {"basic": 4, "bottleneck": 4, "ir": 2, "convnext": 4, "dense": 4, "shuffle": 4}
NET_MAX_MACS = 4e9  # ~ 50-80 ms on one CPU core: the network stage measures 10 such networks in seconds
NET_MIN_MACS = 5e7


def _net_cnn_sample(rng: np.random.Generator) -> Params:
    block = str(rng.choice(CNN_BLOCKS, p=_CNN_P))
    c = int(rng.choice([16, 24, 32, 48, 64])) if block != "bottleneck" else int(rng.choice([128, 256]))
    stages = []
    for _ in range(int(rng.integers(3, 6))):
        stages.append({"c": c if block != "shuffle" else c // 2 * 2, "depth": int(rng.integers(1, 4))})
        c = min(_MAX_C[block] or c, int(c * rng.choice([1.5, 2.0, 2.0, 2.5])) // 8 * 8)
    p: Params = {"batch": int(rng.choice([1, 1, 1, 2, 4])), "size": int(rng.choice([128, 160, 192, 224, 256])),
                 "block": block, "stem": int(rng.choice([16, 24, 32, 64])), "stages": stages, "classes": 1000}
    if block == "bottleneck":
        p["groups"] = int(rng.choice([1, 1, 32]))
        p["se"] = int(rng.random() < 0.25)
    elif block == "ir":
        p.update(expand=int(rng.choice([3, 4, 6])), k=int(rng.choice([3, 5])),
                 act=str(rng.choice(["clip", "relu", "hardswish", "silu"])), se=int(rng.random() < 0.4))
    elif block == "dense":
        p["growth"] = int(rng.choice([12, 24, 32]))
        for st in stages:
            st["depth"] = int(rng.integers(2, 7))
    return p


def _downsample(b: NetBuilder, x: str, c: int) -> str:
    return b.act(b.bn(b.conv(x, c, 3, 2, base="down")), "relu")


def _cnn_step(b: NetBuilder, x: str, p: Mapping[str, Any], c: int, stride: int, first: bool) -> str:
    """One block of a stage of ``c`` channels (``stride`` 2 at the first block of a later stage)."""
    block = p["block"]
    if block == "basic":
        return basic_block(b, x, {"stride": stride, "cout": c})
    if block == "bottleneck":
        g = p["groups"]
        width = max(g, c // 4 // g * g) if g > 1 else max(8, c // 4)
        return bottleneck_block(b, x, {"width": width, "groups": g, "stride": stride, "se": p["se"], "cout": c})
    if block == "ir":
        return ir_block(b, x, {"expand": 1 if first else p["expand"], "k": p["k"], "stride": stride,
                               "act": p["act"], "se": p["se"], "cout": c})
    if stride != 1 or b.shapes[x][1] != c:
        x = _downsample(b, x, c)
    if block == "convnext":
        return convnext_block(b, x)
    return shuffle_block(b, x, {"groups": 2})


def _net_cnn(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input((p["batch"], 3, p["size"], p["size"]))
    x = b.act(b.bn(b.conv(x, p["stem"], 3, 2, base="stem")), "relu")
    if _STEM_STRIDE[p["block"]] == 4:
        x = b.pool(x, "maxpool", 3, 2, 1)
    for i, st in enumerate(p["stages"]):
        if p["block"] == "dense":
            if i:  # a DenseNet transition: halve the channels, then the resolution
                x = b.pool(b.conv(b.act(b.bn(x), "relu"), b.shapes[x][1] // 2, 1, base="transition"), "avgpool", 2, 2)
            x = dense_block(b, x, {"growth": p["growth"], "layers": st["depth"], "transition": 0})
            continue
        for j in range(st["depth"]):
            x = _cnn_step(b, x, p, st["c"], 2 if i and not j else 1, not i and not j)
    return [_classifier(b, b.global_avgpool(x), p["classes"])]


def _classifier(b: NetBuilder, x: str, classes: int) -> str:
    n, c = b.shapes[x][:2]
    return b.gemm(b.node("Flatten", [x], (n, c), base="flatten", axis=1), classes, base="fc")


def _net_cnn_macs(p: Mapping[str, Any]) -> float:
    """The network's multiply-accumulates, roughly (stage by stage; for the cost cap of random draws)."""
    block, h = p["block"], p["size"] / _STEM_STRIDE[p["block"]]
    macs = p["size"] ** 2 / 4 * 27 * p["stem"]
    c_in = p["stem"]
    for i, st in enumerate(p["stages"]):
        h = h / 2 if i else h
        c, d = st["c"], st["depth"]
        if block == "basic":
            per = 18 * c * c
        elif block == "bottleneck":
            per = 2 * c * c / 4 + 9 * (c / 4) ** 2 / p["groups"]
        elif block == "ir":
            per = 2 * p["expand"] * c * c + p["k"] ** 2 * p["expand"] * c
        elif block == "convnext":
            per = 8 * c * c + 49 * c
        elif block == "dense":
            g = p["growth"]
            per = 4 * g * (c_in + d * g / 2) + 36 * g * g
            c_in = (c_in + d * g) // 2
        else:
            per = c * c + 9 * c
        macs += per * d * h * h
    return float(p["batch"] * macs)


def _net_vit_sample(rng: np.random.Generator) -> Params:
    heads = int(rng.choice([3, 4, 6, 8]))
    return {"batch": int(rng.choice([1, 1, 1, 2, 4])), "size": int(rng.choice([160, 192, 224, 256])),
            "patch": int(rng.choice([16, 16, 32])), "conv_stem": int(rng.random() < 0.3), "heads": heads,
            "d": heads * int(rng.choice([32, 64])), "depth": int(rng.integers(2, 9)), "ratio": int(rng.choice([2, 4])),
            "classes": 1000}


def _net_vit(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input((p["batch"], 3, p["size"], p["size"]))
    patch = p["patch"]
    if p["conv_stem"]:  # two stride-2 convolutions, then patches of a quarter of the size (hybrids, LeViT)
        for i, c in enumerate((p["d"] // 4, p["d"] // 2)):
            x = b.act(b.bn(b.conv(x, c, 3, 2, base=f"stem{i}")), "relu")
        patch //= 4
    y = b.conv(x, p["d"], patch, patch, pad=0, base="patch")
    n, d, h, w = b.shapes[y]
    y = b.transpose(b.reshape(y, (n, d, h * w)), (0, 2, 1))
    for _ in range(p["depth"]):
        y = b.binary("Add", y, attention_block(b, b.layernorm(y), p["heads"]))
        y = mlp_block(b, y, p["ratio"])
    y = b.transpose(b.layernorm(y), (0, 2, 1))
    axes = b.const("mean.axes", np.array([-1], dtype=np.int64))
    y = b.node("ReduceMean", [y, axes], (n, d, 1), base="reducemean", keepdims=1)
    return [b.gemm(b.reshape(y, (n, d)), p["classes"], base="fc")]


def _net_vit_macs(p: Mapping[str, Any]) -> float:
    t = (p["size"] // p["patch"]) ** 2
    d = p["d"]
    per_block = t * d * d * (4 + 2 * p["ratio"]) + 2 * t * t * d
    return float(p["batch"] * (p["depth"] * per_block + t * d * 3 * p["patch"] ** 2))


def _at_least(macs: Any) -> Any:
    """A cost for ``sample_params``: the MACs, or 0 (redrawn) below :data:`NET_MIN_MACS`; the stage caps them at
    :data:`NET_MAX_MACS`."""

    def cost(p: Mapping[str, Any]) -> float:
        m = float(macs(p))
        return m if m >= NET_MIN_MACS else 0.0

    return cost


FAMILIES.register("net_cnn", Family("net_cnn", "multi", _net_cnn, _net_cnn_sample, _at_least(_net_cnn_macs),
                                    stage="network", weight=2.0))
FAMILIES.register("net_vit", Family("net_vit", "multi", _net_vit, _net_vit_sample, _at_least(_net_vit_macs),
                                    stage="network", weight=1.0))
