"""Does ``annette measure`` agree with an independent, careful measurement of the same ONNX model?

For each model, in interleaved rounds: (a) ``annette.bench.measure.measure_model`` (the engine: worker-free
in-process protocol, label = minimum), and (b) a plain loop written here from scratch: one ONNX Runtime
session with the same settings (CPU provider, 1 intra-op and 1 inter-op thread, all graph optimisations),
20 untimed calls, then ``--calls`` calls each timed with ``time.perf_counter``; statistic = minimum.
Prints both per round, the relative difference of the two labels, and the spread of each between rounds
(the noise it has to be judged against).

    .venv/bin/python benchmarks/measure_agreement.py [--models torchvision:resnet18 ...] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import numpy as np

from annette.bench.measure import measure_model
from annette.importers import model_to_onnx

MODELS = ("torchvision:resnet18", "torchvision:mobilenet_v2", "torchvision:squeezenet1_1")


def independent_min_ms(model_bytes: bytes, calls: int) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in inp.shape], dtype=np.float32)
    feed = {inp.name: x}
    for _ in range(20):
        sess.run(None, feed)
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        sess.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    print(f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} on "
          f"{platform.processor() or platform.machine()}, ONNX Runtime, 1 thread, label = minimum")
    onnx_bytes = {m: model_to_onnx(m).SerializeToString() for m in args.models}
    engine: dict[str, list[float]] = {m: [] for m in args.models}
    plain: dict[str, list[float]] = {m: [] for m in args.models}
    for r in range(args.rounds):
        for m in args.models:
            engine[m].append(measure_model(m).measurement.label_ms)  # type: ignore[union-attr]
            plain[m].append(independent_min_ms(onnx_bytes[m], args.calls))
            print(f"round {r + 1} {m}: annette measure {engine[m][-1]:.3f} ms, independent {plain[m][-1]:.3f} ms",
                  flush=True)
    print("\n| model | annette measure (min over rounds) ms | independent ms | difference | spread annette | spread independent |")
    print("|---|---:|---:|---:|---:|---:|")
    for m in args.models:
        e, p = min(engine[m]), min(plain[m])
        spread_e = (max(engine[m]) - e) / e
        spread_p = (max(plain[m]) - p) / p
        print(f"| {m} | {e:.3f} | {p:.3f} | {100 * (e - p) / p:+.2f} % | {100 * spread_e:.1f} % | {100 * spread_p:.1f} % |")


if __name__ == "__main__":
    main()
