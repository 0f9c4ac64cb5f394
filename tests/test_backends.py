"""Backends: one contract for every registered backend, plus each runtime's rewrites seen in its profile (the
raw executed nodes linked to the graph by ``annette.mapping.observed``)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from annette.backends import BACKENDS, get_backend
from annette.backends.base import random_inputs
from annette.backends.simulated import simulate
from annette.bench.blocks import build_model
from annette.errors import BackendError, UnknownNameError
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.importers.onnx import graph_from_onnx
from annette.mapping.observed import link_layers, link_profile, resolve_runtime_name
from annette.records import ExecutedNode, NodeProfile, Target

CBR = {"n": 1, "cin": 8, "h": 16, "w": 16, "cout": 16, "k": 3, "stride": 1, "pad": 1, "dilation": 1, "groups": 1,
       "act": "relu"}
ONNX_BACKENDS = [n for n in BACKENDS.names() if n != "torch"]


def _available(name: str) -> bool:
    return bool(BACKENDS.get(name)().is_available())


def _linked_profile(backend: Any, model: Any, runs: int) -> tuple[NodeProfile, ...]:
    graph = graph_from_onnx(model)
    return link_profile(graph, backend.prepare(model, graph).profile(runs))


@pytest.mark.parametrize("name", ONNX_BACKENDS)
def test_backend_contract(name: str) -> None:
    if not _available(name):
        pytest.skip(f"{name} runtime not installed")
    backend = get_backend(name, threads=1)
    target = backend.describe()
    assert isinstance(target, Target)
    assert target.backend == name and target.threads == 1 and target.batch == 1
    assert target.runtime_version and target.device_model and target.precision == "fp32"
    model = build_model("conv_bn_relu", CBR, name="cbr")
    graph = graph_from_onnx(model)
    prepared = backend.prepare(model, graph)
    prepared.run()
    raw = prepared.profile(3)
    assert raw and all(isinstance(p, ExecutedNode) and all(t >= 0 for t in p.times_ms) for p in raw)
    profile = link_profile(graph, raw)
    assert profile and all(isinstance(p, NodeProfile) and p.time_ms >= 0 for p in profile)
    assert [p.node for p in profile] == [p.node for p in raw if p.ran]
    covered = [layer for p in profile for layer in p.covers]
    assert set(covered) <= set(graph.by_name)
    assert len(covered) == len(set(covered)), "a layer is covered by two executed nodes"
    # every runtime fuses Conv+BN+Relu into the node that runs the convolution
    conv_node = next(p for p in profile if "conv" in p.covers)
    assert set(conv_node.covers) == {"conv", "bn", "relu"}


def test_unknown_backend_lists_names() -> None:
    with pytest.raises(UnknownNameError, match="onnxruntime.*openvino.*simulated.*torch"):
        get_backend("tensorrt")


def test_bad_options_raise() -> None:
    with pytest.raises(BackendError, match="threads"):
        get_backend("onnxruntime", threads=0)
    with pytest.raises(BackendError, match="opt_level"):
        get_backend("onnxruntime", opt_level="max")
    with pytest.raises(BackendError, match="precision"):
        get_backend("openvino", precision="int4")


def test_onnx_backends_refuse_non_onnx() -> None:
    with pytest.raises(BackendError, match="onnx.ModelProto"):
        get_backend("onnxruntime").prepare("torchvision:resnet18")


def test_random_inputs_shapes_and_symbolic_dims() -> None:
    from onnx import TensorProto, helper

    model = build_model("add", {"n": 1, "c": 3, "h": 4, "w": 5, "broadcast": 1})
    feeds = random_inputs(model)
    assert {k: v.shape for k, v in feeds.items()} == {"x": (1, 3, 4, 5), "y": (1, 3, 1, 1)}
    assert all(v.dtype.name == "float32" and abs(v).max() <= 1.0 for v in feeds.values())
    sym = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])]))
    with pytest.raises(BackendError, match="symbolic"):
        random_inputs(sym)


def test_onnxruntime_profile_shows_nchwc_reorders_and_residual_fusion() -> None:
    model = build_model("residual", {"n": 1, "c": 16, "h": 14, "w": 14}, name="res")
    profile = _linked_profile(get_backend("onnxruntime"), model, 3)
    by_cover = {layer: p for p in profile for layer in p.covers}
    # BN folded into each Conv, the first Relu fused; the inserted layout reorders implement no layer
    assert set(by_cover["conv"].covers) == {"conv", "bn", "relu"}
    assert {"conv1", "bn1"} <= set(by_cover["conv1"].covers)
    inserted = [p for p in profile if not p.covers]
    assert inserted and all(p.op_type.startswith("Reorder") for p in inserted)
    assert all(p.exec_type.startswith(("com.microsoft", "ai.onnx")) for p in profile)


def test_onnxruntime_split_and_swish_fusion_are_linked() -> None:
    ort = get_backend("onnxruntime")
    # ORT runs HardSwish as two kernels (HardSigmoid, Mul): both implement the one layer
    split = _linked_profile(ort, build_model("hardswish", {"shape": [1, 16, 8, 8]}, name="hs"), 2)
    assert len(split) == 2 and all(p.covers == ("hardswish",) for p in split)
    # x * sigmoid(x) after a Conv+BN: the Sigmoid and the Mul end in one fused node
    prof = _linked_profile(ort, build_model("conv_bn_relu", {**CBR, "act": "silu"}, name="cbs"), 2)
    assert sorted(p.covers for p in prof if p.covers) == [("conv", "bn"), ("silu_sigmoid", "silu_mul")]


def test_openvino_runs_f32_and_reports_fusions() -> None:
    if not _available("openvino"):
        pytest.skip("openvino not installed")
    prepared = get_backend("openvino").prepare(build_model("conv_bn_relu", CBR, name="cbr"))
    assert str(prepared.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
    assert get_backend("openvino", precision="bf16").describe().precision == "bf16"


def test_simulated_closed_form_and_fusion() -> None:
    # conv 8->16, 3x3 on 16x16 (pad 1): MACs = 16*16*16*8*9 = 294912, FLOPs = 589824
    graph = graph_from_onnx(build_model("conv_bn_relu", CBR, name="cbr"))
    nodes = simulate(graph, peak_gflops=1.0, bandwidth_gbs=1e9, overhead_ms=0.01)
    assert [n.covers for n in nodes] == [("conv", "bn", "relu")]
    flops = 589824 + 2 * 16 * 16 * 16 + 16 * 16 * 16  # conv + BN (2/elem) + Relu (1/elem)
    assert math.isclose(nodes[0].time_ms, 0.01 + flops / 1e6, rel_tol=1e-9)
    sim = get_backend("simulated", scale=0.2, call_ms=0.01)
    prepared = sim.prepare(build_model("conv_bn_relu", CBR, name="cbr"), graph)
    # the profile misses the per-call overhead, as real runtimes' profiles do
    profile = link_profile(graph, prepared.profile(1))
    assert math.isclose(sum(p.time_ms for p in profile) + 0.2 * 0.01, prepared.latency_ms)
    assert [p.covers for p in profile] == [("conv", "bn", "relu")]
    assert sim.prepare(graph).latency_ms == prepared.latency_ms  # the Graph alone
    with pytest.raises(BackendError, match="annette graph"):
        sim.prepare(build_model("conv_bn_relu", CBR, name="cbr"))
    assert "for tests only" in get_backend("simulated").describe().device_model


def _residual_graph() -> tuple[Graph, dict[str, TensorSpec]]:
    """conv -> bn -> relu -> conv2 -> add(conv2, relu) -> relu2, and its tensors by name."""
    t = {n: TensorSpec(n, (1, 4, 8, 8)) for n in ("x", "c", "b", "r", "c2", "a", "r2")}
    w = (TensorSpec("w", (4, 4, 3, 3)),)
    graph = Graph("g", (t["x"],), (
        Layer("conv", "Conv", (t["x"],), (t["c"],), w),
        Layer("bn", "BatchNormalization", (t["c"],), (t["b"],)),
        Layer("relu", "Relu", (t["b"],), (t["r"],)),
        Layer("conv2", "Conv", (t["r"],), (t["c2"],), w),
        Layer("add", "Add", (t["c2"], t["r"]), (t["a"],)),
        Layer("relu2", "Relu", (t["a"],), (t["r2"],)),
    ), ("r2",)).validate()
    return graph, t


def test_link_layers_on_runtime_names() -> None:
    graph, t = _residual_graph()
    # ORT NCHWc names a Conv node after its output tensor: "r_nchwc" is the Conv+BN+Relu chain ending in r
    assert resolve_runtime_name("r_nchwc", graph, "Conv") == {"conv", "bn", "relu"}
    assert resolve_runtime_name("fused conv2", graph, "FusedConv") == {"conv2"}
    assert resolve_runtime_name("ReorderInput", graph, "ReorderInput") == set()
    ops = {"ReorderInput": "ReorderInput", "r_nchwc": "Conv", "c2_nchwc": "Conv"}
    covers = link_layers(graph, {"ReorderInput": set(), "r_nchwc": {"conv", "bn", "relu"}, "c2_nchwc": {"conv2"}}, ops,
                         inserted={"ReorderInput"})
    # Add and Relu fused into the producing Conv (its only consumer)
    assert covers == {"ReorderInput": set(), "r_nchwc": {"conv", "bn", "relu"}, "c2_nchwc": {"conv2", "add", "relu2"}}
    # OpenVINO renames a Conv when it folds the BN: the unnamed Conv joins its consumer's node
    ops = {"Multiply_1": "Convolution", "conv2": "Convolution"}
    covers = link_layers(graph, {"Multiply_1": {"bn", "relu"}, "conv2": {"conv2", "add", "relu2"}}, ops)
    assert covers["Multiply_1"] == {"conv", "bn", "relu"}
    # ... and one whose BatchNorm and activation names are lost too: the orphan Convolution node takes the
    # first unnamed Conv after the nodes before it, and the BN (its only consumer) joins it
    ops = {"R": "Reorder", "Multiply_1": "Convolution", "Multiply_2": "Convolution", "r": "Reshape"}
    covers = link_layers(graph, {"R": set(), "Multiply_1": {"relu"}, "Multiply_2": set(), "r": set()}, ops,
                         inserted={"R"})
    assert covers == {"R": set(), "Multiply_1": {"conv", "bn", "relu"}, "Multiply_2": {"conv2", "add", "relu2"},
                      "r": set()}
    # a layer run as two kernels (HardSwish -> HardSigmoid + Mul): both nodes cover it
    hs = Graph("h", (t["x"],), (Layer("hs", "HardSwish", (t["x"],), (t["r"],)),), ("r",)).validate()
    covers = link_layers(hs, {"HardSigmoid_1": set(), "Mul_2": set()}, {"HardSigmoid_1": "HardSigmoid", "Mul_2": "Mul"})
    assert covers == {"HardSigmoid_1": {"hs"}, "Mul_2": {"hs"}}


def test_link_profile_reads_each_naming() -> None:
    graph, t = _residual_graph()
    # ONNX Runtime: nodes under their own names, resolved with their op type; an inserted reorder covers none;
    # the label is the minimum over the profiled runs
    ort = [ExecutedNode("ReorderInput", "ReorderInput", (0.1,), ("ReorderInput",), "node", inserted=True),
           ExecutedNode("r_nchwc", "Conv", (1.0, 0.8), ("r_nchwc",), "node"),
           ExecutedNode("c2_nchwc", "Conv", (2.0,), ("c2_nchwc",), "node", exec_type="com.microsoft.nchwc:Conv")]
    profile = link_profile(graph, ort)
    assert [(p.node, p.time_ms, p.covers) for p in profile] == [
        ("ReorderInput", 0.1, ()), ("r_nchwc", 0.8, ("conv", "bn", "relu")), ("c2_nchwc", 2.0, ("conv2", "add", "relu2"))]
    assert profile[2].exec_type == "com.microsoft.nchwc:Conv"
    # OpenVINO: the member names of each node; a renamed Conv joins its consumers' node; the layers of a node
    # that did not run were removed, and that node is not in the profile
    ov = [ExecutedNode("Multiply_1", "Convolution", (1.0,), ("bn", "relu")),
          ExecutedNode("conv2", "Convolution", (1.0,), ("conv2", "add")),
          ExecutedNode("relu2", "Eltwise", (), ("relu2",))]
    assert [(p.node, p.covers) for p in link_profile(graph, ov)] == [
        ("Multiply_1", ("conv", "bn", "relu")), ("conv2", ("conv2", "add"))]
    # names that are not the model's link to nothing
    torch_like = [ExecutedNode("0", "Conv2d", (1.0,), naming="none"), ExecutedNode("1", "ReLU", (1.0,), naming="none")]
    assert [p.covers for p in link_profile(graph, torch_like)] == [(), ()]


def test_an_unnamed_add_joins_the_conv_that_feeds_it_not_a_pool() -> None:
    """ORT's blocked Conv takes an Add as its Sum input, even where a pool is the Add's first operand (a NAS cell
    node: avgpool(x) + conv(y)); the Add's node is gone from the profile."""
    t = {n: TensorSpec(n, (1, 4, 8, 8)) for n in ("x", "y", "p", "c", "b", "a")}
    w = (TensorSpec("w", (4, 4, 1, 1)),)
    graph = Graph("g", (t["x"], t["y"]), (
        Layer("pool", "AveragePool", (t["x"],), (t["p"],), attrs={"kernel_shape": (3, 3)}),
        Layer("conv", "Conv", (t["y"],), (t["c"],), w),
        Layer("bn", "BatchNormalization", (t["c"],), (t["b"],)),
        Layer("add", "Add", (t["p"], t["b"]), (t["a"],)),
    ), ("a",)).validate()
    ops = {"p_nchwc": "AveragePool", "b_nchwc": "Conv"}
    covers = link_layers(graph, {"p_nchwc": {"pool"}, "b_nchwc": {"conv", "bn"}}, ops)
    assert covers == {"p_nchwc": {"pool"}, "b_nchwc": {"conv", "bn", "add"}}
    # a stored ORT profile linked by an older rule is read as today's linker links it
    from annette.mapping.learn import relinked

    stored = (NodeProfile("p_nchwc", "AveragePool", 0.005, ("pool", "add")), NodeProfile("b_nchwc", "Conv", 0.01, ("conv", "bn")))
    assert [n.covers for n in relinked("onnxruntime", graph, stored)] == [("pool",), ("conv", "bn", "add")]
    assert relinked("openvino", graph, stored) == stored  # OpenVINO's origins are not in a stored profile


@pytest.mark.slow
def test_torch_backend_modules_and_refuses_onnx() -> None:
    torch = pytest.importorskip("torch")
    backend = get_backend("torch", threads=1)
    with pytest.raises(BackendError, match="cannot be run by PyTorch"):
        backend.prepare(build_model("relu", {"shape": [1, 4]}))
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    prepared = backend.prepare((module, torch.randn(1, 3, 16, 16)))
    prepared.run()
    assert prepared.time_calls(3) > 0
    profile = prepared.profile(2)
    assert [(p.node, p.op_type) for p in profile] == [("0", "Conv2d"), ("1", "ReLU")]
    # module paths name no graph layer: linked, the nodes cover none
    graph = graph_from_onnx(build_model("conv_bn_relu", CBR, name="cbr"))
    assert [p.covers for p in link_profile(graph, profile)] == [(), ()]
    target = backend.describe()
    assert (target.runtime, target.provider, target.device) == ("torch", "eager", "cpu")
    with pytest.raises(BackendError, match="fp16"):
        get_backend("torch", precision="fp16")
