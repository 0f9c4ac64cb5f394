"""Legacy ANNETTE graph JSON <-> annette IR: conversion, round trip, and what cannot be converted."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from annette.errors import LegacyFormatError, UnsupportedOperatorError
from annette.graph.accounting import account
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.importers.legacy import graph_from_legacy, graph_to_legacy, is_legacy_graph
from annette.legacy import estimate_legacy, load_graph

LEGACY = Path(__file__).resolve().parents[1].parent / "shared" / "legacy-annette"
needs_legacy = pytest.mark.skipif(not LEGACY.is_dir(), reason=f"shared legacy ANNETTE data not found at {LEGACY}")


def _graph(name: str) -> Path:
    return LEGACY / "graphs" / f"{name}.json"


@needs_legacy
def test_is_legacy_graph() -> None:
    import json

    assert is_legacy_graph(json.loads(_graph("cf_resnet50").read_text()))
    assert not is_legacy_graph({"schema": "annette.graph", "layers": []})
    assert not is_legacy_graph({"layers": {}})


@needs_legacy
def test_resnet50_layers_in_onnx_terms() -> None:
    g = graph_from_legacy(_graph("cf_resnet50"))
    assert [t.shape for t in g.inputs] == [(1, 3, 224, 224)]
    conv1 = g.layer("conv1")
    assert conv1.op == "Conv" and conv1.output.shape == (1, 64, 112, 112)
    assert conv1.weights[0].shape == (64, 3, 7, 7)
    assert dict(conv1.attrs) == {"kernel_shape": (7, 7), "strides": (2, 2), "pads": (3, 3, 3, 3), "group": 1}
    assert account(conv1).macs == 112 * 112 * 64 * 3 * 7 * 7
    pool = g.layer("pool1")
    assert pool.op == "MaxPool" and pool.attrs["pads"] == (0, 0, 1, 1)
    fc = g.layer("fc1000_1")
    assert fc.op == "Gemm" and fc.weights[0].shape == (1000, 2048) and account(fc).macs == 2048 * 1000
    add = g.layer("res2a")
    assert add.op == "Add" and [g.producer[t.name] for t in add.inputs] == ["res2a_branch1", "res2a_branch2c"]


@needs_legacy
def test_mobilenet_depthwise_relu6_batchnorm() -> None:
    g = graph_from_legacy(_graph("tf_mobilenetv1"))
    dw = g.layer("MobilenetV1/MobilenetV1/Conv2d_1_depthwise/depthwise")
    assert dw.op == "Conv" and dw.attrs["group"] == 32 and dw.weights[0].shape == (32, 1, 3, 3)
    assert account(dw).macs == 112 * 112 * 32 * 9
    relu6 = g.layer("MobilenetV1/MobilenetV1/Conv2d_0/Relu6")
    assert relu6.op == "Clip" and (relu6.attrs["min"], relu6.attrs["max"]) == (0.0, 6.0)
    bn = g.layer("MobilenetV1/MobilenetV1/Conv2d_0/BatchNorm/FusedBatchNorm")
    assert bn.op == "BatchNormalization" and [w.shape for w in bn.weights] == [(32,)] * 4
    squeeze = g.layer("MobilenetV1/Logits/SpatialSqueeze")
    assert squeeze.op == "Squeeze" and squeeze.attrs["axes"] == (2, 3)


def _edges(layers: dict[str, Any]) -> dict[str, tuple[list[str], set[str]]]:
    return {n: (list(layer["parents"]), set(layer["children"])) for n, layer in layers.items()}


@needs_legacy
@pytest.mark.parametrize("name", ["cf_resnet50", "tf_mobilenetv1", "cf_inceptionv1", "cf_cityscapes", "tf_mobilenetv2"])
def test_round_trip_preserves_types_shapes_edges_and_estimates(name: str) -> None:
    original = load_graph(_graph(name)).layers
    back = graph_to_legacy(graph_from_legacy(_graph(name)))["layers"]
    assert set(back) == set(original)
    assert _edges(back) == _edges(original)
    for n, layer in original.items():
        b = back[n]
        assert b["type"] == layer["type"], n
        assert b["output_shape"][1:] == layer["output_shape"][1:], n
        if "input_shape" in layer:
            assert b["input_shape"][1:] == layer["input_shape"][1:], n
        if layer["type"] in ("Conv", "DepthwiseConv", "ConvTranspose", "Pool"):
            assert b["kernel_shape"] == layer["kernel_shape"], n
            assert b["strides"] == layer["strides"] and b["pads"] == layer["pads"], n
    for layer_model, mapping in (("dnndk-ref_roofline", "dnndk"), ("ncs2-ref_roofline", "ov")):
        lm, mm = LEGACY / "models" / "layer" / f"{layer_model}.json", LEGACY / "models" / "mapping" / f"{mapping}.json"
        a, b = estimate_legacy(_graph(name), lm, mm), estimate_legacy({"layers": back}, lm, mm)
        assert b.n_layers == a.n_layers and math.isclose(b.total_ms, a.total_ms, rel_tol=1e-12)


@needs_legacy
def test_depthwise_conv_written_as_conv_comes_back_canonical() -> None:
    original = load_graph(_graph("MobileNetV3")).layers
    back = graph_to_legacy(graph_from_legacy(_graph("MobileNetV3")))["layers"]
    changed = {n for n in original if back[n]["type"] != original[n]["type"]}
    assert changed and all(original[n]["type"] == "Conv" and back[n]["type"] == "DepthwiseConv" for n in changed)
    assert all(original[n]["kernel_shape"][2] == 1 for n in changed)


@needs_legacy
@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("bvlcalexnet-9", UnsupportedOperatorError, "'norm1_1' of type 'LRN'"),
        ("cf_mobilenetv2", UnsupportedOperatorError, r"\(DataInput\) has parents"),
        ("tf_deeplabv3", UnsupportedOperatorError, "SpaceToBatchND"),
        ("annette_bench1", LegacyFormatError, "symbolic value 'batch_size'"),
        ("yolov5simplified_old", LegacyFormatError, "unknown dimension -1"),
    ],
)
def test_not_convertible(name: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        graph_from_legacy(_graph(name))


def test_ir_to_legacy_and_estimate() -> None:
    def t(name: str, shape: tuple[int, ...]) -> TensorSpec:
        return TensorSpec(name, shape)

    layers = (
        Layer("conv", "Conv", (t("x", (1, 3, 8, 8)),), (t("c", (1, 16, 8, 8)),), (t("w", (16, 3, 3, 3)),),
              {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1), "strides": (1, 1)}),
        Layer("relu", "Relu", (t("c", (1, 16, 8, 8)),), (t("r", (1, 16, 8, 8)),)),
        Layer("gap", "GlobalAveragePool", (t("r", (1, 16, 8, 8)),), (t("g", (1, 16, 1, 1)),)),
        Layer("flat", "Flatten", (t("g", (1, 16, 1, 1)),), (t("f", (1, 16)),), attrs={"axis": 1}),
        Layer("fc", "Gemm", (t("f", (1, 16)),), (t("y", (1, 10)),), (t("fw", (10, 16)),), {"transB": 1}),
    )
    graph = Graph("tiny", (t("x", (1, 3, 8, 8)),), layers, ("y",)).validate()
    legacy = graph_to_legacy(graph)
    L = legacy["layers"]
    assert L["x"] == {"type": "DataInput", "parents": [], "children": ["conv"], "output_shape": [1, 8, 8, 3]}
    assert L["conv"]["kernel_shape"] == [3, 3, 3, 16] and L["conv"]["pads"] == [0, 1, 1, 0, 0, 1, 1, 0]
    assert (L["gap"]["type"], L["gap"]["kernel_shape"], L["gap"]["pooling_type"]) == ("Pool", [1, 8, 8, 1], "AVG")
    assert L["fc"]["type"] == "FullyConnected" and L["fc"]["input_shape"] == [1, 16]
    model = {"name": "m", "Base": {"name": "Base", "layer_type": "Base", "est_type": "roofline", "op_s": 1e9, "bandwidth": 1e9},
             "Conv": {"name": "Conv", "layer_type": "Conv", "est_type": "roofline", "op_s": 1e9, "bandwidth": 1e9}}
    est = estimate_legacy(legacy, model)
    assert est.n_layers == 6
    assert est.layers[1].num_ops == 3 * 3 * 3 * 16 * 8 * 8 * 2
    # converting back gives the same IR shapes
    again = graph_from_legacy(legacy)
    assert {layer.name: layer.output.shape for layer in again.layers} == {layer.name: layer.output.shape for layer in graph.layers}
