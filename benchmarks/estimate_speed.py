"""Estimate speed: estimates per second of NAS-Bench-201 networks, and import + estimate of a ResNet-50 file.

1. ``--n`` NAS-Bench-201 architectures (seeded) are built as graphs (not timed), then estimated with one
   ``estimate_many`` call; the best of ``--repeats`` calls gives estimates/second. Each call gets fresh copies
   of the graph objects (``dataclasses.replace``, not timed), so lookups a graph caches on first use
   (producer/consumer maps) are paid in every call, as in a NAS loop that estimates each network once; the
   same graph objects estimated again (``reused``) skip them. One-by-one ``estimate`` calls on a tenth of the
   graphs are timed too (the per-call overhead of the batch-free API).
2. ResNet-50 (torchvision, exported once to ONNX and cached; needs torch) is written to a temporary .onnx
   file; reading and importing it (``graph_from_onnx``) and estimating it is timed ``--repeats`` times.

Timings are wall-clock seconds on this machine (best of the repeats; the machine is shared, so the best is
the least disturbed), with the process's CPU time beside them (``*_cpu``: time spent on a core, which waiting
for a busy machine's cores does not inflate). Targets: >= 1,000 estimates/s; ResNet-50 import + estimate < 1 s.

    .venv/bin/python benchmarks/estimate_speed.py --hw HW [--kind mixed] [--n 1000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from annette.estimate import estimate, estimate_many
from annette.hardware import SHIPPED, HardwareModel


def timed(fn: Any, repeats: int, setup: Any = None) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of ``repeats`` calls of ``fn`` (with ``setup()``'s result, untimed, where given)."""
    wall, cpu = [], []
    for _ in range(repeats):
        args = () if setup is None else (setup(),)
        t0, c0 = time.perf_counter(), time.process_time()
        fn(*args)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return wall, cpu


def nb201(hw: HardwareModel, kind: str, n: int, repeats: int) -> dict[str, Any]:
    from annette.spaces.nb201 import graph_from_arch, sample_archs

    graphs = [graph_from_arch(arch) for arch in sample_archs(n, seed=0)]
    estimate_many(graphs[:4], hw, kind=kind)  # warm-up: lazy model loading (LightGBM boosters)
    fresh, fresh_cpu = timed(lambda gs: estimate_many(gs, hw, kind=kind), repeats,
                             setup=lambda: [replace(g) for g in graphs])
    reused, reused_cpu = timed(lambda: estimate_many(graphs, hw, kind=kind), repeats)
    sub = graphs[: max(1, n // 10)]
    single, _ = timed(lambda gs: [estimate(g, hw, kind=kind) for g in gs], repeats,
                      setup=lambda: [replace(g) for g in sub])
    ests = estimate_many(graphs, hw, kind=kind)
    return {
        "networks": n,
        "mean_layers": statistics.fmean(len(g.layers) for g in graphs),
        "mean_executed_layers": statistics.fmean(e.n_executed for e in ests),
        "unsupported_layers": sum(e.n_unsupported for e in ests),
        "estimate_many_s": min(fresh),
        "estimates_per_s": n / min(fresh),
        "estimates_per_s_median": n / statistics.median(fresh),
        "estimates_per_s_cpu": n / min(fresh_cpu),
        "reused_estimates_per_s": n / min(reused),
        "reused_estimates_per_s_cpu": n / min(reused_cpu),
        "one_by_one_per_s": len(sub) / min(single),
    }


def resnet50(hw: HardwareModel, kind: str, repeats: int) -> dict[str, Any]:
    import onnx

    from annette.importers.onnx import graph_from_onnx
    from annette.importers.zoo import export_onnx

    model = export_onnx("resnet50")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        onnx.save(model, str(path))
        del model
        graph_from_onnx(path)  # warm-up: imports, first-call caches

        def run() -> None:
            estimate(graph_from_onnx(path), hw, kind=kind)

        times, times_cpu = timed(run, repeats)
        graph = graph_from_onnx(path)
        import_only, _ = timed(lambda: graph_from_onnx(path), repeats)
        est = estimate(graph, hw, kind=kind)
    return {
        "file_mb": path.stat().st_size / 1e6 if path.exists() else None,
        "layers": len(graph.layers),
        "executed_layers": est.n_executed,
        "unsupported_layers": est.n_unsupported,
        "import_s": min(import_only),
        "import_and_estimate_s": min(times),
        "import_and_estimate_median_s": statistics.median(times),
        "import_and_estimate_cpu_s": min(times_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_hw = SHIPPED.names()[0] if len(SHIPPED) else None
    parser.add_argument("--hw", default=default_hw, required=default_hw is None,
                        help="hardware model: shipped name or JSON file (default: the first shipped one)")
    parser.add_argument("--kind", default="mixed")
    parser.add_argument("--n", type=int, default=1000, help="NAS-Bench-201 networks")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-resnet", action="store_true", help="skip the ResNet-50 part (needs torch)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    hw = HardwareModel.load(args.hw)
    result: dict[str, Any] = {
        "hw": hw.name,
        "kind": args.kind,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"load average {os.getloadavg()[0]:.2f}",
        "nb201": nb201(hw, args.kind, args.n, args.repeats),
    }
    if not args.skip_resnet:
        result["resnet50"] = resnet50(hw, args.kind, args.repeats)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    nb = result["nb201"]
    print(f"{hw.name} ({args.kind}); {result['machine']}")
    print(f"NAS-Bench-201: {nb['networks']} networks of {nb['mean_layers']:.0f} layers "
          f"({nb['mean_executed_layers']:.0f} executed): {nb['estimates_per_s']:,.0f} estimates/s with estimate_many "
          f"(median {nb['estimates_per_s_median']:,.0f}/s; CPU time {nb['estimates_per_s_cpu']:,.0f}/s; "
          f"graph objects reused {nb['reused_estimates_per_s']:,.0f}/s), {nb['one_by_one_per_s']:,.0f}/s one by one")
    if "resnet50" in result:
        r = result["resnet50"]
        print(f"ResNet-50 ({r['layers']} layers, {r['executed_layers']} executed): import {r['import_s']:.3f} s, "
              f"import + estimate {r['import_and_estimate_s']:.3f} s (median {r['import_and_estimate_median_s']:.3f} s)")


if __name__ == "__main__":
    main()
