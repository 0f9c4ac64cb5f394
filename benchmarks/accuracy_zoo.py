"""Regenerate the README's accuracy figures: 18 torchvision models, measured and estimated.

Fixed settings: the 18 torchvision models of ``ZOO`` (16 CNN families from AlexNet to EfficientNet, plus
ConvNeXt-T and ViT-B/32; the full 80-model zoo is ``annette evaluate --zoo torchvision``), backend
onnxruntime, 1 thread, batch 1, 3 interleaved rounds, round order seed 0. Writes the report (report.html, summary.md,
results.json, PNGs) to ``--out`` (reruns resume from its measurements.jsonl) and prints the markdown table
with the date and machine.

    .venv/bin/python benchmarks/accuracy_zoo.py --hw HW [--out runs/accuracy_zoo]
"""

from __future__ import annotations

import _study  # benchmarks/_study.py: the shared command line

ZOO = (
    "alexnet", "vgg11", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "densenet121",
    "googlenet", "inception_v3", "squeezenet1_1", "shufflenet_v2_x1_0", "mobilenet_v2", "mobilenet_v3_large",
    "mnasnet1_0", "efficientnet_b0", "regnet_y_400mf", "convnext_tiny", "vit_b_32",
)  # fmt: skip


def main() -> None:
    _study.main(
        __doc__,
        [f"torchvision:{name}" for name in ZOO],
        f"torchvision zoo accuracy ({len(ZOO)} models)",
        "runs/accuracy_zoo",
    )


if __name__ == "__main__":
    main()
