"""Regenerate the README's accuracy figures: 18 torchvision models, measured and estimated.

Fixed settings: the 18 torchvision models of ``ZOO`` (16 CNN families from AlexNet to EfficientNet, plus
ConvNeXt-T and ViT-B/32; the full 80-model zoo is ``annette evaluate --zoo torchvision``), backend
onnxruntime, 1 thread, batch 1, 3 interleaved rounds, round order seed 0. Writes the report (report.html, summary.md,
results.json, PNGs) to ``--out`` (reruns resume from its measurements.jsonl) and prints the markdown table
with the date and machine.

    .venv/bin/python benchmarks/accuracy_zoo.py --hw HW [--out runs/accuracy_zoo]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from annette.evaluate.report import markdown_table, settings_line, write_report
from annette.evaluate.study import Progress, StudySettings, run_study

ZOO = (
    "alexnet", "vgg11", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "densenet121",
    "googlenet", "inception_v3", "squeezenet1_1", "shufflenet_v2_x1_0", "mobilenet_v2", "mobilenet_v3_large",
    "mnasnet1_0", "efficientnet_b0", "regnet_y_400mf", "convnext_tiny", "vit_b_32",
)  # fmt: skip

SETTINGS = StudySettings(backend="onnxruntime", threads=1, batch=1, rounds=3, seed=0, profile=True)


def show(p: Progress) -> None:
    where = f" round {p.round + 1}" if p.round >= 0 else ""
    print(f"[{p.phase}{where}] {p.done}/{p.total} {p.network}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hw", required=True, help="hardware model: shipped name or JSON file")
    parser.add_argument("--backend", default=SETTINGS.backend, help="backend that measures: onnxruntime or openvino")
    parser.add_argument("--out", default="runs/accuracy_zoo", help="report directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = run_study(
        [f"torchvision:{name}" for name in ZOO],
        args.hw,
        args.out,
        dataclasses.replace(SETTINGS, backend=args.backend),
        title=f"torchvision zoo accuracy ({len(ZOO)} models)",
        progress=show,
    )
    files = write_report(result, args.out)
    print()
    print(settings_line(result))
    print()
    print(markdown_table(result))
    print(f"\nreport: {files.html}")


if __name__ == "__main__":
    main()
