"""The torchvision zoo: reference MACs/params, and one model of every family fully costed (slow)."""

from __future__ import annotations

import pytest

pytest.importorskip("torchvision", reason="torchvision is not installed (pip install annette[torch])")

from annette.graph.accounting import ZERO_COST_OPS, account_graph, supported_ops  # noqa: E402
from annette.importers import load_model, model_to_onnx  # noqa: E402
from annette.torchvision_models import TORCHVISION_MODELS  # noqa: E402

pytestmark = pytest.mark.slow

FAMILY_REPRESENTATIVES = [
    "resnext50_32x4d", "wide_resnet50_2", "vgg11_bn", "alexnet", "squeezenet1_1", "densenet121", "googlenet",
    "inception_v3", "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5", "efficientnet_b0",
    "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf", "convnext_tiny", "swin_t", "swin_v2_t", "maxvit_t",
    "vit_b_32",
]
# families whose export materialises no constant tables: parameter counts equal PyTorch's exactly
EXACT_PARAMS = {"resnext50_32x4d", "wide_resnet50_2", "vgg11_bn", "alexnet", "squeezenet1_1", "densenet121",
                "googlenet", "inception_v3", "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5",
                "efficientnet_b0", "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf", "convnext_tiny"}


def torch_params(name: str) -> int:
    import torchvision

    from annette.importers.zoo import _CONSTRUCTOR_OPTIONS

    module = torchvision.models.get_model(name, weights=None, **_CONSTRUCTOR_OPTIONS.get(name, {}))
    return sum(p.numel() for p in module.parameters())


def test_resnet50_reference_macs_and_exact_params() -> None:
    g = load_model("torchvision:resnet50")
    total = account_graph(g).total
    assert total.macs == pytest.approx(4.1e9, rel=0.01)
    assert total.params == 25_557_032
    assert sum(1 for layer in g.layers if layer.op == "BatchNormalization") == 53  # BN kept for the mapping model
    assert g.inputs[0].shape == (1, 3, 224, 224)


@pytest.mark.parametrize(("name", "gmacs"), [("mobilenet_v2", 0.30), ("vgg16", 15.5), ("vit_b_16", 17.6)])
def test_reference_macs(name: str, gmacs: float) -> None:
    assert account_graph(load_model(f"torchvision:{name}")).total.macs == pytest.approx(gmacs * 1e9, rel=0.02)


def test_batch_scales_macs_and_onnx_form_is_cached() -> None:
    b1 = account_graph(load_model("torchvision:squeezenet1_1")).total
    b2 = account_graph(load_model("torchvision:squeezenet1_1", batch=2)).total
    assert b2.macs == 2 * b1.macs and b2.params == b1.params
    proto = model_to_onnx("torchvision:squeezenet1_1", batch=2)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_every_layer_is_costed_or_zero_cost(name: str) -> None:
    size = TORCHVISION_MODELS[name]
    g = load_model(f"torchvision:{name}")
    assert g.inputs[0].shape == (1, 3, size, size)
    costs = account_graph(g)  # raises UnsupportedOperatorError on any op it cannot cost
    assert len(costs.layers) == len(g.layers)
    for layer in g.layers:
        assert layer.op in supported_ops(), layer.name
        cost = costs.layers[layer.name]
        assert cost.zero_cost == (layer.op in ZERO_COST_OPS)
        if not cost.zero_cost:
            assert cost.output_bytes > 0, f"{layer.name} ({layer.op}) moves no data"
    assert costs.total.macs > 1e7
    expected = torch_params(name)
    if name in EXACT_PARAMS:
        assert costs.total.params == expected
    else:  # relative-position tables and class tokens are materialised at their expanded size
        assert costs.total.params == pytest.approx(expected, rel=0.05)


def test_graph_from_module_keeps_batchnorm_and_counts_params_exactly() -> None:
    import torch

    from annette.importers.torch import graph_from_module

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    g = graph_from_module(module, (torch.zeros(2, 3, 32, 32),), name="tiny")
    assert g.name == "tiny" and g.inputs[0].shape == (2, 3, 32, 32)
    ops = [layer.op for layer in g.layers]
    assert ops[:3] == ["Conv", "BatchNormalization", "Relu"]
    conv = g.layers[0]
    assert [w.shape for w in conv.weights] == [(16, 3, 3, 3)]  # the exporter's zero bias is removed again
    assert conv.attr("strides") == (2, 2) and conv.attr("pads") == (1, 1, 1, 1)
    total = account_graph(g).total
    assert total.params == sum(p.numel() for p in module.parameters())
    assert total.macs == 2 * 16 * 16 * 16 * 27 + 2 * 10 * 16


def test_zoo_lists_every_torchvision_classification_model() -> None:
    import torchvision

    assert set(TORCHVISION_MODELS) == set(torchvision.models.list_models(module=torchvision.models))
