"""The bench engine's overhead and throughput.

1. Overhead: a ~1 ms convolution on ONNX Runtime (1 thread), timed (a) by a bare loop around
   ``session.run`` and (b) through the engine (``annette.bench.runner.measure`` -> ``Prepared.run``), in
   interleaved rounds; per-call time = the minimum sample of each. Target: engine / bare - 1 < 5 %.
2. Per-configuration cost: where one configuration's wall time goes (build the ONNX network, import it
   as IR, prepare the session, measure, profile), in-process, over random campaign configurations.
3. Throughput: configurations per minute of a real campaign (worker process, store) for ``--seconds``.

    .venv/bin/python benchmarks/engine_overhead.py [--seconds 60] [--backend onnxruntime]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

from annette.backends import get_backend
from annette.backends.base import cpu_model
from annette.bench.blocks import build_model
from annette.bench.campaign import plan_campaign, run_campaign
from annette.bench.runner import measure

CONV_1MS = {"n": 1, "cin": 64, "h": 56, "w": 56, "cout": 64, "k": 3, "stride": 1, "pad": 1, "dilation": 1, "groups": 1}


def bare_ms(session, feeds, calls: int, samples: int) -> float:
    best = float("inf")
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(calls):
            session.run(None, feeds)
        best = min(best, (time.perf_counter() - t0) * 1000.0 / calls)
    return best


def overhead(rounds: int) -> None:
    backend = get_backend("onnxruntime", threads=1)
    prepared = backend.prepare(build_model("conv", CONV_1MS, name="conv_1ms"))
    bare, engine = [], []
    for _ in range(rounds):
        m = measure(prepared)
        engine.append(m.label_ms)
        bare.append(bare_ms(prepared.session, prepared.feeds, m.inner_loops, len(m.samples_ms)))
    b, e = min(bare), min(engine)
    print(f"overhead: conv 64x56x56 3x3 -> 64, bare session.run {b:.4f} ms, through the engine {e:.4f} ms "
          f"({rounds} interleaved rounds, min of each): overhead {100 * (e / b - 1):+.2f} % "
          f"(per round: {', '.join(f'{100 * (x / y - 1):+.1f}' for x, y in zip(engine, bare, strict=True))} %)")


def breakdown(n: int) -> None:
    from annette.importers.onnx import graph_from_onnx
    from annette.mapping.observed import link_profile

    backend = get_backend("onnxruntime", threads=1)
    stages: dict[str, list[float]] = {k: [] for k in ("build", "import_ir", "prepare", "measure", "profile")}
    for cfg in plan_campaign(backend.describe().key, seed=123, size=n):
        t0 = time.perf_counter()
        model = build_model(cfg.family, cfg.params, name=cfg.model_name)
        t1 = time.perf_counter()
        graph = graph_from_onnx(model)
        t2 = time.perf_counter()
        prepared = backend.prepare(model, graph)
        t3 = time.perf_counter()
        measure(prepared)
        t4 = time.perf_counter()
        link_profile(graph, prepared.profile(10))
        t5 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            stages[key].append(dt * 1000.0)
    total = sum(sum(v) for v in stages.values())
    print(f"per configuration ({n} campaign configurations, in-process), mean ms and share:")
    for key, v in stages.items():
        print(f"  {key:10s} {statistics.mean(v):8.1f} ms  {100 * sum(v) / total:5.1f} %")


def throughput(backend: str, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        r = run_campaign(tmp, backend=backend, backend_options={"threads": 1}, budget_s=seconds, seed=7)
    print(f"throughput: {backend} campaign, {r.measured} configurations ({r.failed} failed) in {r.elapsed_s:.0f} s "
          f"= {r.records_per_min:.0f} configurations/min (worker process, store, profiles)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--configs", type=int, default=60)
    args = ap.parse_args()
    print(f"# engine overhead, {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {cpu_model()}, "
          f"onnxruntime 1 thread")
    overhead(args.rounds)
    breakdown(args.configs)
    throughput(args.backend, args.seconds)


if __name__ == "__main__":
    main()
