"""A targeted multi-layer campaign: CNN blocks *inside* a network, for ONNX Runtime's layout-dependent mapping.

The store's block families start from a graph input, so their first layer reads a plain NCHW tensor. Inside a
real network the same blocks read tensors that an earlier convolution left in ORT's blocked (NCHWc) layout,
and ORT maps them differently: it fuses a residual Add (and the ReLU after it) into the convolution when the
skip tensor is blocked too, and inserts no reorders between blocked layers. Each configuration here puts a
block between a stem convolution (1x1, so the block's input is blocked when its channels allow) and a tail
convolution (so its output is consumed by a blocked layer), with random sizes (nothing taken from the
evaluation networks). Families: residual basic and bottleneck blocks (optionally grouped, strided with a
projection skip, with squeeze-excitation), inverted residuals (ReLU6 / ReLU / HardSwish / SiLU, optionally
with squeeze-excitation), DenseNet-style pre-activation layers with concatenation, ShuffleNet-style channel
shuffles, ConvNeXt-style blocks.

Records are measured in this process (``annette.bench.measure.measure_model`` with the per-node profile) and
stored as ``multi`` records of family ``ctx_<block>`` in a new store, which ``annette fit`` takes together
with the main one (``annette fit STORE CTX_STORE``).

    .venv/bin/python benchmarks/ort_context_blocks.py OUT_STORE [--minutes 10] [--seed 0] [--backend openvino]

The blocks are plain ONNX, so ``--backend openvino`` measures them on OpenVINO's CPU plugin too (its own
fusions and layouts inside a network).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from annette.bench.blocks import NetBuilder, canonical

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
    x = _stem(b, p)
    y = b.act(b.bn(b.conv(x, p["cout"], 3, p["stride"])), "relu")
    y = b.bn(b.conv(y, p["cout"], 3))
    skip = x if p["stride"] == 1 and p["cout"] == p["c"] else b.bn(b.conv(x, p["cout"], 1, p["stride"], base="down"))
    return _tail(b, b.act(b.binary("Add", y, skip), "relu"))


def _bottleneck_sample(rng: np.random.Generator) -> Params:
    c = _c(rng, 32, 1024)
    width = _c(rng, 16, 256)
    groups = int(rng.choice([1, 1, 1, 8, 32])) if width % 32 == 0 else 1
    stride = int(rng.choice([1, 1, 2]))
    return {"c_in": _c(rng, 16, 256), "c": c, "h": _hw(rng), "width": width, "groups": groups, "stride": stride,
            "cout": c if stride == 1 else _c(rng, 64, 1024), "se": int(rng.random() < 0.25)}


def _bottleneck(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = _stem(b, p)
    y = b.act(b.bn(b.conv(x, p["width"], 1)), "relu")
    y = b.act(b.bn(b.conv(y, p["width"], 3, p["stride"], groups=p["groups"])), "relu")
    if p["se"]:
        y = _se(b, y, max(8, p["width"] // 4), "relu", "sigmoid")
    y = b.bn(b.conv(y, p["cout"], 1))
    skip = x if p["stride"] == 1 and p["cout"] == p["c"] else b.bn(b.conv(x, p["cout"], 1, p["stride"], base="down"))
    return _tail(b, b.act(b.binary("Add", y, skip), "relu"))


def _ir_sample(rng: np.random.Generator) -> Params:
    c = _c(rng, 16, 192)
    stride = int(rng.choice([1, 1, 2]))
    act = str(rng.choice(["clip", "relu", "hardswish", "silu"]))
    return {"c_in": _c(rng, 16, 192), "c": c, "h": _hw(rng) * 2 if rng.random() < 0.3 else _hw(rng),
            "expand": int(rng.choice([1, 3, 4, 6])), "k": int(rng.choice([3, 5])), "stride": stride,
            "cout": c if stride == 1 and rng.random() < 0.7 else _c(rng, 16, 320), "act": act,
            "se": int(rng.random() < (0.8 if act == "silu" else 0.4))}


def _ir(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = _stem(b, p)
    hidden = p["c"] * p["expand"]
    y = b.act(b.bn(b.conv(x, hidden, 1)), p["act"]) if p["expand"] != 1 else x
    y = b.act(b.bn(b.conv(y, hidden, p["k"], p["stride"], groups=hidden)), p["act"])
    if p["se"]:
        silu = p["act"] == "silu"
        y = _se(b, y, max(8, hidden // 4), "silu" if silu else "relu", "sigmoid" if silu else "hardsigmoid")
    y = b.bn(b.conv(y, p["cout"], 1))
    if p["stride"] == 1 and p["cout"] == p["c"]:
        y = b.binary("Add", y, x)
    return _tail(b, y)


def _dense_sample(rng: np.random.Generator) -> Params:
    return {"c_in": _c(rng, 16, 256), "c": _c(rng, 32, 1024), "h": _hw(rng), "growth": int(rng.choice([12, 32, 48])),
            "layers": int(rng.choice([1, 2, 3])), "transition": int(rng.random() < 0.3)}


def _dense(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = _stem(b, p)
    feats = [x]
    for _ in range(p["layers"]):
        cat = b.concat(feats) if len(feats) > 1 else feats[0]
        y = b.conv(b.act(b.bn(cat), "relu"), 4 * p["growth"], 1)
        feats.append(b.conv(b.act(b.bn(y), "relu"), p["growth"], 3))
    y = b.concat(feats)
    if p["transition"]:
        y = b.pool(b.conv(b.act(b.bn(y), "relu"), b.shapes[y][1] // 2, 1), "avgpool", 2, 2)
    return _tail(b, y)


def _shuffle_sample(rng: np.random.Generator) -> Params:
    return {"c_in": _c(rng, 16, 256), "c": _c(rng, 16, 256, mult=16), "h": _hw(rng), "groups": 2}


def _shuffle(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = _stem(b, p)
    half = p["c"] // 2
    y1 = b.act(b.bn(b.conv(b.bn(b.conv(x, p["c"], 3, groups=p["c"])), half, 1)), "relu")
    y2 = b.act(b.bn(b.conv(x, half, 1)), "relu")
    y2 = b.bn(b.conv(y2, half, 3, groups=half))
    y2 = b.act(b.bn(b.conv(y2, half, 1)), "relu")
    y = b.concat([y1, y2])
    n, c, h, w = b.shapes[y]
    y = b.reshape(y, (n, p["groups"], c // p["groups"], h, w))
    y = b.transpose(y, (0, 2, 1, 3, 4))
    return _tail(b, b.reshape(y, (n, c, h, w)))


def _convnext_sample(rng: np.random.Generator) -> Params:
    return {"c_in": _c(rng, 16, 256), "c": int(rng.choice([64, 96, 128, 192, 256, 384, 512, 768])),
            "h": _hw(rng)}


def _convnext(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = _stem(b, p)
    y = b.transpose(b.conv(x, p["c"], 7, groups=p["c"]), (0, 2, 3, 1))
    y = b.linear(b.act(b.linear(b.layernorm(y), 4 * p["c"], base="fc1"), "gelu"), p["c"], base="fc2")
    y = b.binary("Mul", y, b.weight("gamma", (p["c"],)))
    return _tail(b, b.binary("Add", b.transpose(y, (0, 3, 1, 2)), x))


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


FAMILIES: dict[str, tuple[Callable[[np.random.Generator], Params], Callable[[NetBuilder, Mapping[str, Any]], list[str]]]] = {
    "ctx_basic": (_basic_sample, _basic),
    "ctx_bottleneck": (_bottleneck_sample, _bottleneck),
    "ctx_ir": (_ir_sample, _ir),
    "ctx_dense": (_dense_sample, _dense),
    "ctx_shuffle": (_shuffle_sample, _shuffle),
    "ctx_convnext": (_convnext_sample, _convnext),
    "ctx_head": (_head_sample, _head),
    "ctx_cell": (_cell_sample, _cell),
}
WEIGHTS = {"ctx_basic": 2, "ctx_bottleneck": 3, "ctx_ir": 4, "ctx_dense": 2, "ctx_shuffle": 1, "ctx_convnext": 1, "ctx_head": 1,
           "ctx_cell": 3}


def build(family: str, params: Mapping[str, Any]) -> Any:
    seed = int(hashlib.sha256(f"{family}{canonical(params)}".encode()).hexdigest()[:8], 16)
    b = NetBuilder(family, seed=seed)
    return b.build(FAMILIES[family][1](b, params))


def plan(seed: int, size: int, families: list[str] | None = None) -> list[tuple[str, Params]]:
    rng = np.random.default_rng(seed)
    names = families or list(FAMILIES)
    p = np.array([WEIGHTS[n] for n in names], dtype=float)
    return [(f, FAMILIES[f][0](rng)) for f in (str(rng.choice(names, p=p / p.sum())) for _ in range(size))]


def main() -> None:
    from annette.bench.measure import measure_blocks
    from annette.bench.store import BenchStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="store directory (created; resumed when it exists)")
    parser.add_argument("--backend", default="onnxruntime", help="onnxruntime (what these blocks were made for) or openvino")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--families", nargs="*", default=None, help=f"only these (default: all of {list(FAMILIES)})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    unknown = sorted(set(args.families or ()) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    store = BenchStore(args.out)
    blocks = ((f, p, lambda f=f, p=p: build(f, p)) for f, p in plan(args.seed, args.size, args.families))
    for done, rec in enumerate(measure_blocks(store, blocks, source="ort_context_blocks", minutes=args.minutes,
                                              backend=args.backend), 1):
        label = rec.measurement.label_ms if rec.measurement else None
        print(f"{done} {rec.family} {json.dumps(rec.params)} {label}", flush=True)


if __name__ == "__main__":
    main()
