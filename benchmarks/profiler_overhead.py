"""Does a runtime's profiler add a per-node cost of its own, and does it leak into the profiled kernel times?

Chains of N layers (N = 1 ... 256) of one small op each are measured three ways on the same session options:
unprofiled end to end (the measurement protocol, label = min), profiled end to end (wall time of a profiled
``run``), and the profiled kernel times summed (the layer labels ``annette fit`` trains on). Regressing each on
N gives the per-node cost of an unprofiled run, of a profiled run, and the kernel time per node; the
difference between the first and the kernel slope is what a per-node overhead must be fitted from.

    .venv/bin/python benchmarks/profiler_overhead.py [--backend onnxruntime] [--ops Relu Add Conv]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from annette.backends import get_backend
from annette.bench.blocks import NetBuilder
from annette.bench.runner import DEFAULT_PROTOCOL, measure
from annette.stats import label_of


def chain(op: str, n: int, c: int = 16, h: int = 8) -> object:
    b = NetBuilder(f"chain_{op}_{n}", seed=n)
    y = b.input((1, c, h, h))
    for _ in range(n):
        if op == "Relu":
            y = b.act(y, "relu")
        elif op == "Add":
            y = b.binary("Add", y, b.weight("w", (1, c, 1, 1)))
        else:
            y = b.conv(y, c, 1)
    return b.build([y])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--ops", nargs="*", default=["Relu", "Add", "Conv"])
    parser.add_argument("--sizes", nargs="*", type=int, default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    args = parser.parse_args()
    be = get_backend(args.backend, threads=1)
    target = be.describe()
    out: dict[str, object] = {"target": target.to_dict(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "machine": platform.node()}
    for op in args.ops:
        rows = []
        for n in args.sizes:
            prepared = be.prepare(chain(op, n))
            plain = measure(prepared, DEFAULT_PROTOCOL).label_ms
            nodes = [p for p in prepared.profile(20) if p.ran]
            kernel = sum(label_of(p.times_ms) for p in nodes)
            rows.append((n, len(nodes), plain, kernel))
        n_exec = np.array([r[1] for r in rows], dtype=float)
        plain = np.array([r[2] for r in rows])
        kernel = np.array([r[3] for r in rows])
        a_plain = np.polyfit(n_exec, plain, 1)
        a_kernel = np.polyfit(n_exec, kernel, 1)
        a_gap = np.polyfit(n_exec, plain - kernel, 1)
        res = {"rows": [{"layers": r[0], "executed": r[1], "measured_ms": r[2], "kernel_sum_ms": r[3]} for r in rows],
               "measured_us_per_node": 1e3 * a_plain[0], "kernel_us_per_node": 1e3 * a_kernel[0],
               "gap_us_per_node": 1e3 * a_gap[0], "gap_us_per_run": 1e3 * a_gap[1]}
        out[op] = res
        print(f"{op}: measured {res['measured_us_per_node']:.2f} µs/node, kernel {res['kernel_us_per_node']:.2f} µs/node, "
              f"gap {res['gap_us_per_node']:+.2f} µs/node {res['gap_us_per_run']:+.2f} µs/run")
        for r in rows:
            print(f"  n={r[0]:4d} executed={r[1]:4d} measured={r[2] * 1e3:9.1f} µs kernel sum={r[3] * 1e3:9.1f} µs")
    print(json.dumps({k: v for k, v in out.items() if k in ("date", "target")}))


if __name__ == "__main__":
    main()
