"""A cache-pressure campaign: layers whose weights are *not* warm in the cache when they run.

A micro-benchmark runs one layer again and again, so its weights stay in the last-level cache; inside a
network with more weights than the cache holds, every layer fetches its weights from memory on every
inference (ViT-B/32's 352 MB of weights on this machine: its linear layers run ~25 % slower than any
single-layer benchmark shows). Each configuration here is a chain of ``layers`` distinct layers (all
linear or all 3x3 convolutions) whose weights add up to between 4 MB and 1.5 GB, run as one block with the
per-node profile, so each node ran after all the others had swept the cache. ``annette fit --cache-store``
fits the target's cache capacity and weight-fetch bandwidth from these records (``annette.fit.fit_cache``).

Records are ``multi`` records of family ``cache_linear`` / ``cache_conv`` in their own store.

    .venv/bin/python benchmarks/cache_pressure.py OUT_STORE [--backend onnxruntime] [--minutes 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from annette.bench.blocks import NetBuilder, canonical

Params = dict[str, Any]
MB = 2**20


def _sample(rng: np.random.Generator) -> Params:
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


def build(params: Mapping[str, Any]) -> Any:
    seed = int(hashlib.sha256(canonical(params).encode()).hexdigest()[:8], 16)
    b = NetBuilder(f"cache_{params['kind']}", seed=seed)
    if params["kind"] == "linear":
        y = b.input((1, params["s"], params["d"]))
        for _ in range(params["pairs"]):
            y = b.linear(b.act(b.linear(y, params["d"] * params["ratio"], base="up"), "relu"), params["d"], base="down")
    else:
        y = b.input((1, params["c"], params["h"], params["h"]))
        for _ in range(params["layers"]):
            y = b.act(b.conv(y, params["c"], 3), "relu")
    return b.build([y])


def main() -> None:
    from annette.bench.measure import measure_blocks
    from annette.bench.store import BenchStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="store directory (created; resumed when it exists)")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=400)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    store = BenchStore(args.out)
    rng = np.random.default_rng(args.seed)
    samples = [_sample(rng) for _ in range(args.size)]
    blocks = ((f"cache_{p['kind']}", p, lambda p=p: build(p)) for p in samples)
    for done, rec in enumerate(measure_blocks(store, blocks, source="cache_pressure", minutes=args.minutes,
                                              backend=args.backend), 1):
        label = rec.measurement.label_ms if rec.measurement else None
        print(f"{done} {rec.family} {json.dumps(rec.params)} {label}", flush=True)


if __name__ == "__main__":
    main()
