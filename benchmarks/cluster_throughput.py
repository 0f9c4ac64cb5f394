"""Campaign throughput over Dask distributed: the same plan measured locally (no cluster), then through a
scheduler with 1 and with 2 workers of one target label, each into a fresh store.

Every worker here runs on this machine (a ``distributed.LocalCluster`` of stock worker processes, one thread
each, advertising ``annette-target-bench=1``), so 2 workers share its cores: on a 2-core machine that
is busy with anything else they cannot double the rate; on separate hosts each worker has its own CPU.

    .venv/bin/python benchmarks/cluster_throughput.py [--backend onnxruntime] [--configs 48] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from annette.backends.base import cpu_model
from annette.bench.campaign import run_campaign
from annette.bench.cluster import ClusterSpec, resource_name

LABEL = "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", type=int, default=48, help="configurations of the plan (each setting measures all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()

    from distributed import LocalCluster

    kw = dict(backend=args.backend, backend_options={"threads": args.threads}, seed=args.seed,
              plan_size=args.configs)
    rows = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as tmp:
        load0 = os.getloadavg()[0]
        r = run_campaign(Path(tmp) / "local", **kw)
        rows.append({"setting": "local (no cluster)", "workers": 0, "measured": r.measured, "elapsed_s": r.elapsed_s,
                     "per_min": r.records_per_min, "load": load0})
        for n in args.workers:
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, resources={resource_name(LABEL): 1},
                              dashboard_address=None, host="127.0.0.1") as lc:
                load0 = os.getloadavg()[0]
                spec = ClusterSpec(lc.scheduler_address, LABEL, batch_size=args.batch_size)
                r = run_campaign(Path(tmp) / f"w{n}", cluster=spec, **kw)
                # the first batch of each worker includes starting its measurement process (runtime import)
                rows.append({"setting": f"cluster, {n} worker{'s' if n > 1 else ''}", "workers": n,
                             "measured": r.measured, "elapsed_s": r.elapsed_s, "per_min": r.records_per_min,
                             "load": load0})
    print(f"{started}, {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.node()}; {args.backend} "
          f"threads={args.threads}, plan of {args.configs} configurations (seed {args.seed}), batch {args.batch_size}")
    print("| setting | configurations | wall s | configurations/min | load average at start |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['setting']} | {row['measured']} | {row['elapsed_s']:.1f} | {row['per_min']:.0f} | {row['load']:.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"date": started, "cpu": cpu_model(), "args": vars(args) | {"json": str(args.json)},
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
