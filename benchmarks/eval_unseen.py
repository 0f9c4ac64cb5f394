"""Accuracy on networks no fitting and no design decision used: the project's evaluation set.

timm architectures (``pip install timm``; random weights, built from code, exported to ONNX once into a cache
folder), at batch 1-8 and several resolutions, and NAS-Bench-201 networks drawn with a seed no build stage uses.
None of them is a benchmark family, a calibration network or a network the project tuned on (the torchvision
zoo of ``accuracy_zoo.py`` was looked at during development; these were not).

Each network is measured once per round in interleaved rounds (label: the minimum over rounds; the noise floor:
round 1 against round 2), then estimated with every bundle given (the measurements are shared, and resumed from
``OUT/SET/measurements.jsonl``):

    .venv/bin/python benchmarks/eval_unseen.py --hw cpu-x86-ort-fp32-t1 --hw runs/my-cpu/hardware.json \\
        --set timm-cnn --set timm-mix --set nb201 [--backend onnxruntime] [--rounds 3] [--out runs/eval-unseen]

Prints one table per set (MAPE, RMSPE, ±10 %, Spearman, Kendall per bundle and kind, and the noise floor) and
writes ``OUT/summary.md`` and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

# (timm name, batch, resolution): CNNs at batch 1, then a mix of transformers, hybrids, batch > 1, other sizes
EVAL_SETS: dict[str, list[tuple[str, int, int]]] = {
    "timm-cnn": [
        ("ghostnet_100", 1, 224), ("mixnet_s", 1, 224), ("rexnet_100", 1, 224), ("dla34", 1, 224),
        ("dpn68", 1, 224), ("cspresnet50", 1, 224), ("repvgg_a2", 1, 224), ("efficientnet_lite0", 1, 224),
        ("hrnet_w18_small", 1, 224), ("resnet26d", 1, 224), ("regnety_008", 1, 224), ("semnasnet_100", 1, 224),
        ("mobilenetv3_small_100", 1, 224), ("tinynet_a", 1, 192),
    ],
    "timm-mix": [
        ("deit_tiny_patch16_224", 1, 224), ("vit_small_patch16_224", 1, 224), ("poolformer_s12", 1, 224),
        ("convnext_atto", 1, 224), ("levit_128s", 1, 224), ("mobilevit_xs", 1, 256), ("fastvit_t8", 1, 256),
        ("resnet50d", 4, 160), ("mobilenetv2_100", 8, 160), ("efficientnet_b0", 4, 288), ("regnetx_004", 8, 224),
        ("convnext_atto", 4, 288),
    ],
}
NB201_SEED = 424_242  # no build stage, calibration or validation draws with it
NB201_N = 30


def cache_dir() -> Path:
    root = os.environ.get("ANNETTE_CACHE_DIR") or str(Path.home() / ".cache" / "annette")
    return Path(root) / "timm"


def export_timm(name: str, batch: int, size: int) -> Path:
    """The ONNX file of a timm architecture with random weights (static shapes), exported once."""
    path = cache_dir() / f"{name}-b{batch}-{size}.onnx"
    if path.is_file():
        return path
    import timm
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(batch, 3, size, size)
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(tmp), opset_version=17, dynamo=False, do_constant_folding=True,
                          input_names=["input"], output_names=["output"])
    tmp.replace(path)
    return path


def specs_of(set_name: str) -> dict[int, list[str]]:
    """The set's model specs by batch size (static exports: each batch is its own study)."""
    if set_name == "nb201":
        from annette.evaluate.study import nb201_specs

        return {1: nb201_specs(NB201_N, seed=NB201_SEED)}
    out: dict[int, list[str]] = {}
    for name, batch, size in EVAL_SETS[set_name]:
        try:
            out.setdefault(batch, []).append(str(export_timm(name, batch, size)))
        except Exception as exc:  # a timm model this torch cannot export is reported and left out
            print(f"skipped {name} b{batch} {size}px: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
    return out


def run(hws: list[str], sets: list[str], *, backend: str = "onnxruntime", threads: int = 1, rounds: int = 3,
        kinds: tuple[str, ...] = ("mixed", "statistical"), out: str = "runs/eval-unseen") -> dict[str, Any]:
    """Measure the sets once (resumable), estimate them with every bundle; write OUT/summary.md and results.json."""
    from annette.backends.base import cpu_model
    from annette.evaluate.metrics import compute_metrics, noise_floor
    from annette.evaluate.study import StudySettings, run_study

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    import warnings

    warnings.simplefilter("ignore")  # the target-mismatch warning is the point of some comparisons
    settings = StudySettings(backend=backend, threads=threads, batch=1, rounds=rounds, seed=0, profile=False)
    cpu = cpu_model()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu,
                               "backend": backend, "threads": threads, "rounds": rounds, "sets": {}}
    lines = [f"Measured {results['date']} on {cpu}, {backend}, {threads} thread(s), label = min of "
             f"{rounds} interleaved rounds; noise floor = round 1 vs round 2.", ""]
    for set_name in sets:
        groups = specs_of(set_name)
        rows = []
        noise = None
        for hw in hws:
            t0 = time.time()
            nets = []
            failed: dict[str, str] = {}
            for batch, specs in sorted(groups.items()):
                res = run_study(specs, hw, Path(out) / set_name / f"b{batch}",
                                dataclasses.replace(settings, batch=batch), title=f"{set_name} on {hw}")
                nets += list(res.networks)
                failed.update(res.failed)
            measured = [n.measured_ms for n in nets]
            metrics = {k: compute_metrics(measured, [n.estimated_ms[k] for n in nets])
                       for k in kinds if nets and all(k in n.estimated_ms for n in nets)}
            noise = noise_floor([n.rounds_ms[0] for n in nets], [n.rounds_ms[1] for n in nets]) \
                if nets and rounds > 1 else None
            rows += [(hw, k, m) for k, m in metrics.items()]
            results["sets"].setdefault(set_name, {})[hw] = {
                "metrics": {k: v.to_dict() for k, v in metrics.items()},
                "noise_floor": None if noise is None else noise.to_dict(),
                "networks": [n.to_dict() for n in nets], "failed": failed, "elapsed_s": time.time() - t0,
            }
        n_specs = sum(len(v) for v in groups.values())
        lines += [f"**{set_name}** ({n_specs} networks)", "",
                  "| bundle | kind | n | MAPE % | RMSPE % | ±10 % acc. % | mean signed % | Spearman | Kendall |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for hw, kind, m in rows:
            lines.append(f"| {hw} | {kind} | {m.n} | {m.mape_pct:.2f} | {m.rmspe_pct:.2f} | {m.within10_pct:.1f} | "
                         f"{m.mean_signed_pct:+.1f} | {m.spearman:.3f} | {m.kendall:.3f} |")
        if noise is not None:
            lines.append(f"| noise floor | round 1 vs 2 | {noise.n} | {noise.mape_pct:.2f} | {noise.rmspe_pct:.2f} | "
                         f"{noise.within10_pct:.1f} | {noise.mean_signed_pct:+.1f} | {noise.spearman:.3f} | "
                         f"{noise.kendall:.3f} |")
        lines.append("")
        print("\n".join(lines[-(len(rows) + 5):]), flush=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "summary.md").write_text("\n".join(lines) + "\n")
    (Path(out) / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {out}/summary.md")
    results["lines"] = lines
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hw", action="append", required=True, help="bundle (repeatable): shipped name or JSON file")
    parser.add_argument("--set", action="append", dest="sets", choices=[*EVAL_SETS, "nb201"], required=True)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default="mixed,statistical", help="kinds reported (of those each bundle has)")
    parser.add_argument("--out", default="runs/eval-unseen")
    args = parser.parse_args()
    run(args.hw, args.sets, backend=args.backend, threads=args.threads, rounds=args.rounds,
        kinds=tuple(args.kinds.split(",")), out=args.out)


if __name__ == "__main__":
    main()
