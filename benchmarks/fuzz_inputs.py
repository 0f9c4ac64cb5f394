"""Fuzz annette's input paths: seeded mutants of small valid ONNX models and hardware-model bundles, each run in a
crash-isolated child process with a memory limit (``annette.fuzz``); prints the counts by outcome, the peak memory
per case and every defect (an exception that is not an annette error, a crash, a timeout) with its seed and index.

    nice -n 19 .venv/bin/python benchmarks/fuzz_inputs.py --n 5000 --seed 0 [--json out.json]

Exit status 1 when any defect was found. Reproduce one with ``--only INDEX`` (same seed): it prints the case
(the mutant as base64 ONNX or as bundle JSON) to stdout.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from annette import fuzz


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                    platform.processor())
    except OSError:
        return platform.processor()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="number of mutants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bundle-share", type=float, default=0.25, help="share of bundle mutants (the rest: ONNX)")
    ap.add_argument("--mem-limit-mb", type=int, default=1024, help="address space a case may add (RLIMIT_AS)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--nice", type=int, default=19, help="niceness of the child")
    ap.add_argument("--json", type=Path, help="also write the counts and defects here")
    ap.add_argument("--only", type=int, help="print case INDEX of this seed and exit")
    args = ap.parse_args()

    if args.only is not None:
        for i, case in enumerate(fuzz.cases(args.seed, args.only + 1, args.bundle_share)):
            if i == args.only:
                print(json.dumps(case))
        return 0

    start = time.time()
    defects: list[dict[str, object]] = []
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    peaks: list[int] = []
    slowest = (0.0, -1)

    def on_result(i: int, case: dict[str, str], r: fuzz.Result) -> None:
        nonlocal slowest
        by_kind[case["kind"]][r.outcome] += 1
        peaks.append(r.peak_kb)
        slowest = max(slowest, (r.seconds, i))
        if fuzz.is_defect(r.outcome):
            defects.append({"index": i, "kind": case["kind"], "outcome": r.outcome})
            print(f"DEFECT {i} ({case['kind']}): {r.outcome}", file=sys.stderr, flush=True)
        if (i + 1) % 500 == 0:
            print(f"{i + 1} cases, {len(defects)} defects, {time.time() - start:.0f} s", file=sys.stderr, flush=True)

    results = fuzz.run_cases(fuzz.cases(args.seed, args.n, args.bundle_share), timeout_s=args.timeout,
                             mem_limit_bytes=args.mem_limit_mb * 2**20, nice=args.nice, on_result=on_result)
    elapsed = time.time() - start
    total = collections.Counter(r.outcome for r in results)
    peaks_sorted = sorted(peaks)
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start)),
        "cpu": cpu_model(),
        "seed": args.seed,
        "n": len(results),
        "elapsed_s": round(elapsed, 1),
        "mem_limit_mb": args.mem_limit_mb,
        "counts": dict(total.most_common()),
        "counts_by_kind": {k: dict(v.most_common()) for k, v in by_kind.items()},
        "defects": defects,
        "peak_rss_mb": {"max": round(peaks_sorted[-1] / 1024, 1), "median": round(peaks_sorted[len(peaks) // 2] / 1024, 1)},
        "slowest_case_s": round(slowest[0], 2),
    }
    print(f"{doc['n']} mutants (seed {args.seed}) in {elapsed:.0f} s on {doc['cpu']}, {doc['date']}")
    for kind, counts in doc["counts_by_kind"].items():  # type: ignore[attr-defined]
        print(f"  {kind}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    n_defects = sum(v for k, v in total.items() if fuzz.is_defect(k))
    print(f"  defects: {n_defects} (crashes {sum(v for k, v in total.items() if k.startswith('crash'))}, "
          f"other exceptions {sum(v for k, v in total.items() if k.startswith('exception'))}, "
          f"timeouts {total['timeout']})")
    print(f"  peak resident memory per case: max {doc['peak_rss_mb']['max']} MB, "  # type: ignore[index]
          f"median {doc['peak_rss_mb']['median']} MB (limit: +{args.mem_limit_mb} MB address space); slowest case "
          f"{doc['slowest_case_s']} s")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 1 if n_defects else 0


if __name__ == "__main__":
    sys.exit(main())
