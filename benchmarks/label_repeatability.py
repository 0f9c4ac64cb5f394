"""Which label statistic repeats best between independent sessions? (median, p10, min)

Measures a set of varied ONNX models (torchvision networks via ``annette.importers.zoo.export_onnx`` and
benchmark blocks from ``annette.bench.blocks``) in two independent rounds, back to back: every measurement
prepares a fresh session and runs the protocol of ``annette.bench.runner``; the model order is shuffled
per round. For each statistic it prints the relative difference between the rounds
(|a - b| / mean(a, b)) per model, then the mean and the worst over models.

    .venv/bin/python benchmarks/label_repeatability.py [--backend onnxruntime] [--threads 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

from annette.backends import get_backend
from annette.backends.base import cpu_model
from annette.bench.blocks import build_model
from annette.bench.runner import measure
from annette.stats import STATISTICS

TORCHVISION = ("resnet18", "mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x1_0")
BLOCKS = (
    ("conv", {"n": 1, "cin": 64, "h": 56, "w": 56, "cout": 64, "k": 3, "stride": 1, "pad": 1, "dilation": 1, "groups": 1}),
    ("conv", {"n": 1, "cin": 256, "h": 14, "w": 14, "cout": 256, "k": 1, "stride": 1, "pad": 0, "dilation": 1, "groups": 1}),
    ("gemm", {"n": 1, "cin": 2048, "cout": 1000}),
    ("residual", {"n": 1, "c": 64, "h": 28, "w": 28}),
    ("inverted_residual", {"n": 1, "c": 32, "h": 28, "w": 28, "cout": 32, "expand": 6, "k": 3, "stride": 1, "act": "clip"}),
    ("attention", {"n": 1, "s": 128, "d": 256, "heads": 8}),
    ("se", {"n": 1, "c": 256, "h": 14, "w": 14, "reduce": 4, "gate": "sigmoid"}),
    ("relu", {"shape": [1, 128, 56, 56]}),
)


def models() -> dict[str, object]:
    from annette.importers.zoo import export_onnx

    out: dict[str, object] = {f"torchvision:{n}": export_onnx(n) for n in TORCHVISION}
    for i, (family, params) in enumerate(BLOCKS):
        out[f"{family}#{i}"] = build_model(family, params, name=f"{family}{i}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    backend = get_backend(args.backend, threads=args.threads)
    nets = models()
    rng = random.Random(args.seed)
    print(f"# label repeatability, {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {cpu_model()}")
    print(f"# {backend.describe().key}, {len(nets)} models, {args.rounds} rounds")
    results: list[dict[str, dict[str, float]]] = []
    for r in range(args.rounds):
        order = list(nets)
        rng.shuffle(order)
        stats: dict[str, dict[str, float]] = {}
        for name in order:
            m = measure(backend.prepare(nets[name]))
            stats[name] = {s: float(f(list(m.samples_ms))) for s, f in STATISTICS.items()}
        results.append(stats)
        print(f"round {r + 1} done")
    print(f"{'model':32s} " + " ".join(f"{s:>14s}" for s in STATISTICS) + "   (round-1 value, relative difference)")
    diffs: dict[str, list[float]] = {s: [] for s in STATISTICS}
    for name in nets:
        cells = []
        for s in STATISTICS:
            vals = [res[name][s] for res in results]
            d = (max(vals) - min(vals)) / statistics.mean(vals)
            diffs[s].append(d)
            cells.append(f"{vals[0]:7.3f} {100 * d:5.1f}%")
        print(f"{name:32s} " + " ".join(cells))
    print("statistic   mean diff   worst diff")
    for s, ds in diffs.items():
        print(f"{s:10s} {100 * statistics.mean(ds):9.2f} % {100 * max(ds):10.2f} %")


if __name__ == "__main__":
    main()
