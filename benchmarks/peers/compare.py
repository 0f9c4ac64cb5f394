"""annette beside nn-Meter on the same ONNX files, the same machine, one set of measurements.

    compare.py --hw HW --nnm-workspace WS (--networks FILE.onnx ... | --set NAME) [--calibration ...] --out DIR

Runs in annette's environment; nn-Meter predicts in its own (``--nnm-python``, the interpreter of the venv
``benchmarks/peers/README.md`` describes) through ``nnmeter.py predict``, on the very files annette estimates.

1. Networks: any list of ONNX files (``--networks``), or a built-in set (``--set``, exported to ONNX under
   ``DIR/networks`` first; :data:`SETS`). The sets only name networks to compare on: nothing is tuned on them.
2. nn-Meter: ``nnmeter.py predict`` with the predictor ``nnmeter.py build`` made in ``--nnm-workspace``;
   every kernel it leaves out of its sum (counted as 0 ms) is listed per network.
3. Ground truth: annette's study (``annette.evaluate.study.run_study``): every network measured end to end
   with annette's network protocol, ``--rounds`` interleaved rounds in a shuffled order, label = the minimum
   over all rounds' samples; the same run estimates each network with every kind of the ``--hw`` bundle.
   ``DIR/study/measurements.jsonl`` lets a rerun resume.
4. Baselines in the same table: FLOPs-proportional (t = s * FLOPs, one scale fitted by least squares on
   relative errors, either on ``--calibration`` networks measured in the same rounds, or leave-one-out over
   the compared networks, which the table says), and annette's plain roofline kind (t = max(ops / peak,
   bytes / bandwidth) per executed layer, from the same bundle).
5. Metrics over the networks every method estimated (MAPE, RMSPE, +-10 % accuracy, Spearman, Kendall;
   ``annette.evaluate.metrics``), plus what each method cost to build: build time, measurements, the fusion
   rules it found; and the noise floor (round 1 against round 2). Writes ``DIR/compare.md`` and
   ``DIR/compare.json`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from annette.evaluate.metrics import Metrics, compute_metrics, noise_floor_rounds
from annette.evaluate.study import Progress, StudySettings, run_study

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 1
DEFAULT_NNM_PYTHON = "/work/nnm-venv/bin/python"

# Built-in network sets (names only; nothing is fitted or tuned on them). "torchvision-18" is the README's
# accuracy set (benchmarks/accuracy_zoo.py); nb201-N are N NAS-Bench-201 cells drawn with seed 1 (the
# README's fidelity study draws with seed 0).
SETS: dict[str, tuple[str, ...]] = {
    "torchvision-mini": tuple(f"torchvision:{n}" for n in (
        "resnet18", "mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x1_0", "mnasnet1_0", "googlenet")),
    "torchvision-18": tuple(f"torchvision:{n}" for n in (
        "alexnet", "vgg11", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "densenet121",
        "googlenet", "inception_v3", "squeezenet1_1", "shufflenet_v2_x1_0", "mobilenet_v2", "mobilenet_v3_large",
        "mnasnet1_0", "efficientnet_b0", "regnet_y_400mf", "convnext_tiny", "vit_b_32")),
}  # fmt: skip
NB201_SEED = 1


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def set_specs(name: str) -> list[str]:
    if name in SETS:
        return list(SETS[name])
    if name.startswith("nb201-") and name[len("nb201-"):].isdigit():
        from annette.spaces.nb201 import sample_archs

        return [f"nb201:{a}" for a in sample_archs(int(name[len("nb201-"):]), seed=NB201_SEED)]
    raise SystemExit(f"unknown set {name!r}; valid: {', '.join(SETS)}, nb201-N")


def export_set(specs: Sequence[str], folder: Path) -> list[Path]:
    """Each spec's ONNX form as ``folder/<name>.onnx`` (kept: both estimators and the runtime read these)."""
    import onnx

    from annette.evaluate.study import display_name
    from annette.importers import model_to_onnx

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for spec in specs:
        path = folder / f"{display_name(spec)}.onnx"
        if not path.exists():
            onnx.save(model_to_onnx(spec, batch=1), str(path))
        out.append(path)
    return out


def resolve(files: Sequence[str] | None, set_name: str | None, folder: Path) -> list[Path]:
    if files:
        paths = [Path(f).resolve() for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise SystemExit(f"not found: {', '.join(missing)}")
        bad = [str(p) for p in paths if p.suffix.lower() != ".onnx"]
        if bad:
            raise SystemExit(f"not ONNX files: {', '.join(bad)}")
        stems = Counter(p.stem for p in paths)
        twice = sorted(s for s, c in stems.items() if c > 1)
        if twice:
            raise SystemExit(f"two files share a name (tables are by file name): {', '.join(twice)}")
        return paths
    if set_name:
        return [p.resolve() for p in export_set(set_specs(set_name), folder)]
    return []


# -- nn-Meter -------------------------------------------------------------------------------------------
def nnmeter_predict(python: str, workspace: Path, files: Sequence[Path], out: Path) -> dict[str, Any]:
    cmd = [python, "-W", "ignore", str(HERE / "nnmeter.py"), "predict", "--workspace", str(workspace),
           "--out", str(out), *map(str, files)]  # fmt: skip
    log(f"nn-Meter predicts {len(files)} networks ({python})")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"nnmeter.py predict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def nnmeter_build_info(workspace: Path) -> dict[str, Any]:
    path = workspace / "predictor" / "build.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: build nn-Meter's predictor first (benchmarks/peers/README.md)")
    return json.loads(path.read_text())


def nnmeter_rules(build: dict[str, Any]) -> list[str]:
    """Obeyed pair rules ``BF_a_b`` as ``a+b``."""
    return ["+".join(r.split("_")[1:]) for r in build["fusion_rules"]["obeyed"] if r.startswith("BF_")]


# -- annette --------------------------------------------------------------------------------------------
def annette_build_info(hw: Any) -> dict[str, Any]:
    prov = dict(hw.provenance)
    records = int(prov.get("records_total", 0))
    # cache-pressure records count apart only where they came from a separate store (the shipped bundles)
    cache = hw.cache.n_records if hw.cache is not None and prov.get("cache_store") else 0
    info = prov.get("build")  # `annette build` records its budget and elapsed time
    if isinstance(info, dict) and "elapsed_min" in info:
        build = f"{float(info['elapsed_min']):.1f} min (budget {float(info.get('budget_min', math.nan)):g})"
    else:
        start, end = str(prov.get("measured_from", "?")), str(prov.get("measured_to", "?"))
        build = f"measured {start[:16].replace('T', ' ')}–{end[11:16]}" if len(end) >= 16 else f"measured {start}–{end}"
    return {"records": records, "cache_records": cache, "measurements": records + cache, "build": build,
            "fusions": ["+".join(f.pattern) for f in hw.rules.fusions],
            "removals": len(hw.rules.removals), "insertions": len(hw.rules.insertions),
            "merges": len(hw.rules.merges), "provenance": prov}  # fmt: skip


def flops_of(path: Path) -> float:
    from annette.graph.accounting import account_graph
    from annette.importers import load_model

    return float(account_graph(load_model(str(path))).total.flops)


def fit_scale(flops: Sequence[float], measured: Sequence[float]) -> float:
    """argmin_s sum(((s f - m) / m)^2) = sum(f / m) / sum((f / m)^2)."""
    r = np.asarray(flops, dtype=float) / np.asarray(measured, dtype=float)
    return float(r.sum() / (r**2).sum())


def flops_baseline(flops: Sequence[float], measured: Sequence[float],
                   calib: tuple[Sequence[float], Sequence[float]] | None) -> tuple[list[float], str]:  # fmt: skip
    if calib is not None and len(calib[0]) > 0:
        s = fit_scale(*calib)
        return [s * f for f in flops], f"one scale fitted on {len(calib[0])} calibration networks"
    out = []
    for i in range(len(flops)):
        rest = [j for j in range(len(flops)) if j != i]
        out.append(fit_scale([flops[j] for j in rest], [measured[j] for j in rest]) * flops[i] if rest else math.nan)
    return out, "one scale, leave-one-out over the compared networks"


# -- table ----------------------------------------------------------------------------------------------
def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def metrics_row(name: str, m: Metrics, build: str, measurements: str, rules: str) -> list[str]:
    return [name, str(m.n), fmt(m.mape_pct), fmt(m.rmspe_pct), fmt(m.within10_pct, 1), fmt(m.spearman, 3),
            fmt(m.kendall, 3), build, measurements, rules]  # fmt: skip


def md_table(head: list[str], rows: list[list[str]], numeric: range) -> str:
    align = ["---:" if i in numeric else "---" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def dropped_summary(dropped: list[dict[str, str]]) -> str:
    if not dropped:
        return "0"
    ops = Counter(d["op"] for d in dropped)
    return f"{len(dropped)} ({', '.join(f'{op} x{c}' if c > 1 else op for op, c in ops.most_common())})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hw", required=True, help="annette hardware model: shipped name or bundle JSON")
    parser.add_argument("--kind", default="mixed", help="annette's layer-model kind for its row (default mixed)")
    parser.add_argument("--nnm-workspace", required=True, type=Path, help="the workspace nnmeter.py build made")
    parser.add_argument("--nnm-python", default=DEFAULT_NNM_PYTHON, help="python of nn-Meter's environment")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--networks", nargs="+", help="ONNX files to compare on")
    group.add_argument("--set", help=f"built-in set: {', '.join(SETS)}, nb201-N")
    cal = parser.add_mutually_exclusive_group()
    cal.add_argument("--calibration", nargs="+", help="ONNX files that fit the FLOPs scale (default: leave-one-out)")
    cal.add_argument("--calibration-set", help="built-in set that fits the FLOPs scale")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="round order seed")
    parser.add_argument("--out", required=True, type=Path, help="report directory")
    parser.add_argument("--annette-build", help="annette's build time as stated in the table (default: from the bundle)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from annette.backends.base import cpu_model
    from annette.hardware import HardwareModel

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = resolve(args.networks, args.set, out / "networks")
    calib = resolve(args.calibration, args.calibration_set, out / "calibration")
    overlap = sorted({p.stem for p in files} & {p.stem for p in calib})
    if overlap:
        raise SystemExit(f"calibration networks must be separate from the compared ones: {', '.join(overlap)}")
    hw = HardwareModel.load(args.hw)
    if args.kind not in hw.kinds:
        raise SystemExit(f"hardware model {hw.name!r} has no {args.kind!r} kind (has {', '.join(hw.kinds)})")
    nnm_ws = args.nnm_workspace.resolve()
    nnm_build = nnmeter_build_info(nnm_ws)

    started = datetime.now(timezone.utc)
    nnm = nnmeter_predict(args.nnm_python, nnm_ws, files, out / "nnmeter_predictions.json")
    nnm_by_file = {str(Path(r["file"]).resolve()): r for r in nnm["networks"]}

    def show(p: Progress) -> None:
        where = f" round {p.round + 1}" if p.round >= 0 else ""
        log(f"{p.phase}{where}: {p.done}/{p.total} {p.network}")

    settings = StudySettings(backend="onnxruntime", threads=1, batch=1, rounds=args.rounds, seed=args.seed,
                             profile=False)  # fmt: skip
    specs = [str(p) for p in [*files, *calib]]
    study = run_study(specs, hw, out / "study", settings, title="annette vs nn-Meter", progress=show)
    finished = datetime.now(timezone.utc)
    by_spec = {n.spec: n for n in study.networks}

    # FLOPs baseline
    calib_ok = [p for p in calib if str(p) in by_spec]
    calib_fit = ([flops_of(p) for p in calib_ok], [by_spec[str(p)].measured_ms for p in calib_ok]) if calib else None

    failed: dict[str, str] = {Path(s).stem: e for s, e in study.failed.items()}
    rows: list[dict[str, Any]] = []
    for p in files:
        name = p.stem
        net = by_spec.get(str(p))
        pred = nnm_by_file.get(str(p))
        if net is None:
            failed.setdefault(name, "not measured")
            continue
        if pred is None or pred.get("predicted_ms") is None:
            failed[name] = f"nn-Meter: {pred.get('error') if pred else 'no prediction'}"
            continue
        rows.append({
            "network": name, "file": str(p), "measured_ms": net.measured_ms, "rounds_ms": list(net.rounds_ms),
            "flops": flops_of(p), "annette_ms": net.estimated_ms[args.kind],
            "roofline_ms": net.estimated_ms.get("roofline", math.nan),
            "annette_unsupported": net.unsupported.get(args.kind, 0),
            "nnmeter_ms": float(pred["predicted_ms"]), "nnmeter_kernels": pred["kernels"],
            "nnmeter_dropped": pred["dropped"], "flags": list(net.flags),
            "annette_all_kinds_ms": dict(net.estimated_ms),
        })  # fmt: skip
    if len(rows) < 2:
        raise SystemExit(f"fewer than 2 networks estimated by every method; failed: {json.dumps(failed, indent=1)}")
    measured = [r["measured_ms"] for r in rows]
    flops_est, flops_how = flops_baseline([r["flops"] for r in rows], measured, calib_fit)
    for r, f in zip(rows, flops_est, strict=True):
        r["flops_ms"] = f

    methods = {
        f"annette ({args.kind})": "annette_ms",
        "nn-Meter 2.0": "nnmeter_ms",
        "FLOPs-proportional": "flops_ms",
        "roofline (annette's)": "roofline_ms",
    }
    metrics = {m: compute_metrics(measured, [r[key] for r in rows]) for m, key in methods.items()}
    floor = noise_floor_rounds([[r["rounds_ms"][i] for r in rows] for i in range(2)]) if args.rounds >= 2 else None

    ann = annette_build_info(hw)
    ann_build = args.annette_build or ann["build"]
    nnm_rules = nnmeter_rules(nnm_build)
    n_cal = len(calib_ok)
    flops_meas = f"{n_cal} calibration networks" if calib_fit else f"{len(rows) - 1} networks per estimate (LOO)"
    build_cols = {
        f"annette ({args.kind})": (ann_build, f"{ann['measurements']:,}",
                                   f"{len(ann['fusions'])} fusions, {ann['removals']} removals, "
                                   f"{ann['insertions']} insertions, {ann['merges']} merges"),
        "nn-Meter 2.0": (f"{nnm_build['build_s'] / 60:.1f} min (budget {nnm_build['budget_min']:g})",
                         f"{nnm_build['measurements']:,}", f"{len(nnm_rules)} of {nnm_build['fusion_rules']['testcases']} pairs fuse"),
        "FLOPs-proportional": ("-", flops_meas, "none"),
        "roofline (annette's)": (ann_build, f"{ann['measurements']:,} (same bundle)", "annette's"),
    }  # fmt: skip
    head = ["method", "n", "MAPE %", "RMSPE %", "±10 % acc. %", "Spearman ρ", "Kendall τ", "build time",
            "measurements", "fusion rules"]  # fmt: skip
    table = [metrics_row(m, metrics[m], *build_cols[m]) for m in methods]
    if floor is not None:
        table.append(metrics_row("noise floor (round 1 vs 2)", floor, "-", "-", "-"))

    net_head = ["network", "measured ms", f"annette ({args.kind})", "nn-Meter", "FLOPs", "roofline",
                "nn-Meter kernels dropped (0 ms)"]  # fmt: skip

    def err(r: dict[str, Any], key: str) -> str:
        return f"{(r[key] - r['measured_ms']) / r['measured_ms'] * 100:+.1f} %"

    net_rows = [[r["network"], f"{r['measured_ms']:.3f}", err(r, "annette_ms"), err(r, "nnmeter_ms"), err(r, "flops_ms"),
                 err(r, "roofline_ms"), f"{dropped_summary(r['nnmeter_dropped'])} of {r['nnmeter_kernels']}"]
                for r in rows]  # fmt: skip

    cpu = cpu_model()
    rules_md = [
        f"- annette ({hw.name}): {', '.join(ann['fusions']) or 'none'}",
        f"- nn-Meter (pairs whose t(A)+t(B)-t(A->B) > 0.5 min(t)): {', '.join(nnm_rules) or 'none'}",
    ]
    settings_md = (
        f"{started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC on {cpu} ({platform.node()}), load average "
        f"{os.getloadavg()[0]:.1f}; ONNX Runtime {study.measured_target.get('runtime_version', '?')}, 1 thread, "
        f"batch 1; {args.rounds} interleaved rounds, label = minimum; annette bundle {hw.name} "
        f"({study.hw_target}); nn-Meter predictor {nnm_build['predictor']['name']} built {nnm_build['date']} on "
        f"{nnm_build['cpu']}; FLOPs baseline: {flops_how}."
    )
    cmd = "nice -n 19 .venv/bin/python benchmarks/peers/compare.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = "\n\n".join([
        "## annette vs nn-Meter", settings_md, f"`{cmd}`", md_table(head, table, range(1, 7)), md_table(net_head, net_rows, range(1, 6)),
        "Fusion rules found:\n" + "\n".join(rules_md),
        "Not compared (failed): " + (", ".join(f"{k} ({v})" for k, v in failed.items()) or "none"),
    ])  # fmt: skip
    report = {
        "schema": "annette.peers.compare", "schema_version": SCHEMA_VERSION,
        "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
        "cpu": cpu, "host": platform.node(), "command": cmd, "rounds": args.rounds, "label": "min",
        "hw": hw.name, "hw_target": study.hw_target, "measured_target": dict(study.measured_target),
        "kind": args.kind, "flops_baseline": flops_how,
        "calibration": [{"file": str(p), "flops": f, "measured_ms": m}
                        for p, f, m in zip(calib_ok, *(calib_fit or ([], [])), strict=False)],
        "overall": {m: v.to_dict() for m, v in metrics.items()},
        "noise_floor": floor.to_dict() if floor is not None else None,
        "build": {"annette": {k: v for k, v in ann.items() if k != "provenance"} | {"build": ann_build},
                  "nnmeter": nnm_build},
        "fusion_rules": {"annette": ann["fusions"], "nnmeter": nnm_rules},
        "networks": rows, "failed": failed, "nnmeter_shims": nnm.get("shims", []),
    }  # fmt: skip
    (out / "compare.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (out / "compare.md").write_text(md + "\n", encoding="utf-8")
    print(md)
    log(f"wrote {out / 'compare.md'} and {out / 'compare.json'}")


if __name__ == "__main__":
    main()
