"""Extract the layer configurations of real networks into ``src/annette/data/layer_priors.json``.

Run once (needs torch/torchvision): ``.venv/bin/python scripts/extract_layer_priors.py``. Each torchvision
model (random weights, batch 1, its native input size) is exported to ONNX, imported into the annette IR
and every layer that a micro benchmark family can rebuild (``annette.bench.blocks.family_params``) is
recorded; the counts of layer types weight the campaign's family mix.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time
from collections import Counter
from pathlib import Path

MODELS = {
    "resnet18": 224, "resnet50": 224, "mobilenet_v2": 224, "mobilenet_v3_large": 224, "mobilenet_v3_small": 224,
    "efficientnet_b0": 224, "densenet121": 224, "vgg16": 224, "squeezenet1_1": 224, "shufflenet_v2_x1_0": 224,
    "googlenet": 224, "mnasnet1_0": 224, "regnet_y_400mf": 224, "convnext_tiny": 224, "vit_b_16": 224,
    "inception_v3": 299, "resnext50_32x4d": 224, "efficientnet_b3": 300,
}
log = logging.getLogger("extract_layer_priors")


def main() -> None:
    import onnx
    import torch
    import torchvision

    from annette.bench.blocks import canonical, family_params
    from annette.importers.onnx import graph_from_onnx

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "src/annette/data/layer_priors.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    families: dict[str, dict[str, dict]] = {}
    family_counts: Counter[str] = Counter()
    op_counts: Counter[str] = Counter()
    for name, size in MODELS.items():
        t0 = time.time()
        kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
        model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
        buf = io.BytesIO()
        torch.onnx.export(model, (torch.randn(1, 3, size, size),), buf, dynamo=False, opset_version=17)
        graph = graph_from_onnx(onnx.load_from_string(buf.getvalue()), name=name)
        matched = 0
        for layer in graph.layers:
            op_counts[layer.op] += 1
            fp = family_params(layer)
            if fp is None:
                continue
            family, params = fp
            matched += 1
            family_counts[family] += 1
            families.setdefault(family, {})[canonical(params)] = params
        log.info("%s: %d layers, %d matched, %.1f s", name, len(graph.layers), matched, time.time() - t0)
    data = {
        "schema": "annette.layer_priors",
        "schema_version": 1,
        "source": f"torchvision {torchvision.__version__} (torch {torch.__version__}), random weights, batch 1",
        "models": MODELS,
        "op_counts": dict(op_counts.most_common()),
        "family_counts": dict(family_counts.most_common()),
        "families": {f: [configs[k] for k in sorted(configs)] for f, configs in sorted(families.items())},
    }
    lines = ["{"]
    head = {k: v for k, v in data.items() if k != "families"}
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "families": {')
    fams = list(data["families"].items())
    for i, (f, configs) in enumerate(fams):
        body = ",\n".join(f"   {json.dumps(c, sort_keys=True)}" for c in configs)
        lines.append(f"  {json.dumps(f)}: [\n{body}\n  ]" + ("," if i < len(fams) - 1 else ""))
    lines.append(" }")
    lines.append("}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    log.info("wrote %s: %d unique configurations", args.out, sum(len(c) for c in data["families"].values()))


if __name__ == "__main__":
    main()
