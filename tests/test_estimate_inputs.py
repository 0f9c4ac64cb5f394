"""What estimate()/estimate_many() take (Graph, path, spec, ModelProto, nn.Module) and how guessed layers (the
bundle's generic default model) are counted, shown and refused under strict (issue 14, items 4 and 5)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import onnx
import pytest
from onnx import helper

from annette.errors import ModelFileError, UnsupportedLayerError
from annette.estimate import estimate, estimate_many
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.hardware import HardwareModel, Overhead
from annette.importers import as_graph, load_model
from annette.importers.onnx import graph_from_onnx
from annette.mapping import MappingRules
from conftest import build_onnx
from test_estimate import TARGET, roofline

NB201 = "nb201:|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def T(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, tuple(shape))


@pytest.fixture
def hw() -> HardwareModel:
    """Conv has its own model; everything else falls to the generic default ``*``."""
    return HardwareModel(
        name="hand-generic",
        target=TARGET,
        rules=MappingRules(),
        layer_models={"Conv": {"roofline": roofline(1e9, 1e8, 0.002)}, "*": {"roofline": roofline(1e9, 1e9, 0.001)}},
        overhead=Overhead(per_node_ms=0.004, per_run_ms=0.010),
        default_type="*",
    )


def net() -> Graph:
    layers = (
        Layer("conv", "Conv", (T("x", 1, 3, 8, 8),), (T("c", 1, 4, 8, 8),), (T("w", 4, 3, 3, 3),),
              {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1)}),
        Layer("relu", "Relu", (T("c", 1, 4, 8, 8),), (T("r", 1, 4, 8, 8),)),
        Layer("sig", "Sigmoid", (T("r", 1, 4, 8, 8),), (T("y", 1, 4, 8, 8),)),
    )
    return Graph("net", (T("x", 1, 3, 8, 8),), layers, ("y",)).validate()


def test_generic_layers_are_counted_with_their_share(hw: HardwareModel) -> None:
    est = estimate(net(), hw, kind="roofline")
    guessed = [x for x in est.layers if x.generic]
    assert [x.name for x in guessed] == ["relu", "sig"] and not est.layers[0].generic
    assert est.n_generic == 2 and est.generic == tuple(guessed)
    assert est.generic_ms == pytest.approx(sum(x.time_ms or 0.0 for x in guessed))
    assert est.generic_share == pytest.approx(est.generic_ms / est.total_ms) and 0 < est.generic_share < 1
    doc = json.loads(json.dumps(est.to_dict()))
    assert doc["n_generic"] == 2 and doc["generic_ms"] == pytest.approx(est.generic_ms)
    assert [x["generic"] for x in doc["layers"]] == [False, True, True]
    # the vectorised path counts the same, graph by graph
    many = estimate_many([net(), net()], hw, kind="roofline")
    assert [(e.n_generic, e.generic_ms) for e in many] == [(est.n_generic, est.generic_ms)] * 2


def test_strict_refuses_generic_layers_unless_allowed(hw: HardwareModel) -> None:
    with pytest.raises(UnsupportedLayerError, match="generic default model.*Relu, Sigmoid.*--allow-generic"):
        estimate(net(), hw, kind="roofline", strict=True)
    est = estimate(net(), hw, kind="roofline", strict=True, allow_generic=True)
    assert est.n_generic == 2
    no_default = dataclasses.replace(hw, default_type=None)
    with pytest.raises(UnsupportedLayerError, match="no layer model"):  # then they are unsupported, as before
        estimate(net(), no_default, kind="roofline", strict=True, allow_generic=True)


def test_shipped_cpu_bundle_guesses_nothing_on_nb201_and_legacy_bundle_says_how_much() -> None:
    ort = estimate(NB201, "cpu-x86-ort-fp32-t1", kind="mixed", strict=True)
    assert ort.n_generic == 0 and ort.generic_ms == 0.0
    dnndk = estimate(NB201, "annette-dnndk", kind="refined")
    assert dnndk.n_generic > 0 and {x.type for x in dnndk.generic} >= {"Relu"}
    assert all("Base" in x.note for x in dnndk.generic)


def _onnx_net() -> onnx.ModelProto:
    import numpy as np

    return build_onnx(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name="relu")],
        [("x", ["N", 3, 8, 8])], ["y"], {"w": np.ones((4, 3, 3, 3), np.float32)}, name="onnxnet",
    )


def test_every_model_form_gives_the_same_estimate(tmp_path: Path, hw: HardwareModel) -> None:
    proto = _onnx_net()
    path = tmp_path / "onnxnet.onnx"
    onnx.save_model(proto, str(path))
    reference = estimate(graph_from_onnx(proto), hw, kind="roofline").total_ms
    for form in (proto, path, str(path), load_model(path)):
        assert estimate(form, hw, kind="roofline").total_ms == pytest.approx(reference, rel=1e-12), type(form)
    batched = estimate(proto, hw, kind="roofline", batch=4)
    assert batched.total_ms > reference
    many = estimate_many([proto, str(path), NB201], hw, kind="roofline")
    assert [e.total_ms for e in many[:2]] == pytest.approx([reference, reference], rel=1e-12)
    assert many[2].model.startswith("nb201") and many[2].n_executed > 10


def test_rejects_what_is_no_model_with_a_clear_error(hw: HardwareModel) -> None:
    with pytest.raises(ModelFileError, match="expected a Graph, a model spec or path"):
        estimate(42, hw)
    with pytest.raises(ModelFileError):  # a very long string is no file name, and says so (not OSError)
        estimate("x" * 5000 + ".onnx", hw)


def test_torch_module_with_example_input_or_shape(hw: HardwareModel) -> None:
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.ReLU())
    by_input = estimate(module, hw, kind="roofline", example_inputs=torch.zeros(1, 3, 8, 8))
    by_shape = estimate(module, hw, kind="roofline", input_shape=(1, 3, 8, 8))
    assert by_input.total_ms == pytest.approx(by_shape.total_ms, rel=1e-12)
    assert by_input.total_ms == pytest.approx(estimate(_onnx_net(), hw, kind="roofline").total_ms, rel=1e-9)
    assert [x.type for x in by_input.layers] == ["Conv", "Relu"]
    with pytest.raises(ModelFileError, match="example_inputs"):
        estimate(module, hw)
    assert as_graph(module, input_shape=(2, 3, 8, 8)).inputs[0].shape == (2, 3, 8, 8)
