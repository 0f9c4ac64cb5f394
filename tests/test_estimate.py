"""Estimates on hand-built graphs and bundles: closed-form roofline totals, unsupported layers, strict mode."""

from __future__ import annotations

import gc
import json
import math

import numpy as np
import pytest

import hwsynth
from annette.errors import HardwareModelError, ShapeError, UnknownNameError, UnsupportedLayerError
from annette.estimate import estimate, estimate_many
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.hardware import HardwareModel, Overhead
from annette.layers import LayerModel
from annette.layers.features import FEATURE_NAMES
from annette.mapping import MappingRules
from annette.mapping.apply import Mapper, Plan
from annette.mapping.rules import FusionRule, RemovalRule
from annette.records import Target

TARGET = Target("simulated", "cpu", "test", "none", "0", "none", 1, "fp32")


def roofline(peak: float, bw: float, overhead_ms: float) -> LayerModel:
    return LayerModel.from_dict({
        "kind": "roofline", "params": {"overhead": True}, "feature_names": list(FEATURE_NAMES),
        "learned": {"roofs": {"peak_flops_per_s": peak, "bandwidth_bytes_per_s": bw, "overhead_ms": overhead_ms}},
    })


@pytest.fixture
def hw() -> HardwareModel:
    return HardwareModel(
        name="hand",
        target=TARGET,
        rules=MappingRules(fusions=(FusionRule(("Conv", "Relu")),), removals=(RemovalRule("Flatten"),)),
        layer_models={"Conv": {"roofline": roofline(1e9, 1e8, 0.002)}, "Gemm": {"roofline": roofline(5e8, 2e8, 0.001)}},
        overhead=Overhead(per_node_ms=0.004, per_run_ms=0.010),
    )


def T(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, tuple(shape))


def small_net(extra: Layer | None = None) -> Graph:
    layers = [
        Layer("conv", "Conv", (T("x", 1, 3, 8, 8),), (T("c", 1, 4, 8, 8),), (T("w", 4, 3, 3, 3), T("b", 4)),
              {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1)}),
        Layer("relu", "Relu", (T("c", 1, 4, 8, 8),), (T("r", 1, 4, 8, 8),)),
        Layer("flat", "Flatten", (T("r", 1, 4, 8, 8),), (T("f", 1, 256),), (), {"axis": 1}),
        Layer("fc", "Gemm", (T("f", 1, 256),), (T("y", 1, 10),), (T("fw", 10, 256), T("fb", 10)), {"transB": 1}),
    ]
    if extra is not None:
        layers.append(extra)
    return Graph("small", (T("x", 1, 3, 8, 8),), tuple(layers), (layers[-1].outputs[0].name,)).validate()


def test_closed_form_roofline_total(hw: HardwareModel) -> None:
    est = estimate(small_net(), hw, kind="roofline")
    # Conv+Relu: 2·(4·64·3·9) + 256 flops; bytes: x in, weights, relu out (the conv output stays inside)
    conv_flops = 2 * 4 * 64 * 27 + 256
    conv_bytes = 4 * (3 * 64) + 4 * (4 * 27 + 4) + 4 * 256
    conv_ms = max(conv_flops / 1e9, conv_bytes / 1e8) * 1e3 + 0.002
    gemm_flops, gemm_bytes = 2 * 10 * 256, 4 * (256 + 10 * 256 + 10 + 10)
    gemm_ms = max(gemm_flops / 5e8, gemm_bytes / 2e8) * 1e3 + 0.001
    expected = conv_ms + gemm_ms + 2 * 0.004 + 0.010
    assert est.total_ms == pytest.approx(expected, rel=1e-12)
    assert [x.covers for x in est.layers] == [("conv", "relu"), ("fc",)]
    assert est.removed == ("flat",) and est.n_executed == 2 and not est.unsupported
    conv = est.layers[0]
    assert conv.type == "Conv+Relu" and conv.model == "Conv/roofline" and "Conv+Relu→Conv" in conv.note
    assert conv.flops == conv_flops and conv.bytes == conv_bytes and conv.bound == "memory"
    assert conv.time_ms == pytest.approx(conv_ms + 0.004)


def test_kind_falls_back_per_layer_and_says_so(hw: HardwareModel) -> None:
    est = estimate(small_net(), hw, kind="mixed")
    assert est.total_ms == pytest.approx(estimate(small_net(), hw, kind="roofline").total_ms)
    assert all("kind mixed→roofline" in x.note for x in est.layers)
    with pytest.raises(UnknownNameError, match="valid"):
        estimate(small_net(), hw, kind="cubic")


def test_unsupported_layers_are_listed_not_zero(hw: HardwareModel) -> None:
    sm = Layer("sm", "Softmax", (T("y", 1, 10),), (T("p", 1, 10),), (), {"axis": 1})
    est = estimate(small_net(sm), hw, kind="roofline")
    assert [u.name for u in est.unsupported] == ["sm"] and est.n_unsupported == 1
    assert est.layers[-1].time_ms is None and "no layer model for Softmax" in est.layers[-1].note
    assert est.total_ms == pytest.approx(estimate(small_net(), hw, kind="roofline").total_ms)
    doc = json.loads(json.dumps(est.to_dict()))
    assert doc["unsupported"][0]["name"] == "sm" and doc["layers"][-1]["time_ms"] is None
    with pytest.raises(UnsupportedLayerError, match="sm"):
        estimate(small_net(sm), hw, kind="roofline", strict=True)


def test_declared_zero_cost_layer_costs_node_overhead_only(hw: HardwareModel) -> None:
    rs = Layer("rs", "Reshape", (T("y", 1, 10),), (T("z", 10),))
    est = estimate(small_net(rs), hw, kind="roofline", strict=True)
    last = est.layers[-1]
    assert last.time_ms == 0.004 and last.bound == "overhead" and "zero-cost" in last.note


def test_estimate_many_equals_one_by_one_and_tables(hw: HardwareModel) -> None:
    graphs = [small_net(), small_net(Layer("sm", "Softmax", (T("y", 1, 10),), (T("p", 1, 10),)))]
    many = estimate_many(graphs, hw, kind="roofline")
    for g, e in zip(graphs, many, strict=True):
        one = estimate(g, hw, kind="roofline")
        assert e.total_ms == one.total_ms and e.layers == one.layers
    df = many[1].to_pandas()
    assert list(df["name"]) == ["conv", "fc", "sm"] and df["time_ms"].isna().tolist() == [False, False, True]


def test_one_estimate_maps_its_graph_once(hw: HardwareModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """estimate keeps the plan for its per-layer table; estimate_many maps again when a table is read."""
    calls: list[str] = []
    plan = Mapper.plan

    def counted(self: Mapper, graph: Graph) -> Plan:
        calls.append(graph.name)
        return plan(self, graph)

    monkeypatch.setattr(Mapper, "plan", counted)
    one = estimate(small_net(), hw, kind="roofline")
    assert [x.name for x in one.layers] == ["conv", "fc"] and calls == ["small"]
    many = estimate_many([small_net()], hw, kind="roofline")
    assert many[0].layers == one.layers and calls == ["small", "small", "small"]


def test_the_garbage_collector_is_paused_only_while_estimating(hw: HardwareModel,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """estimate_many runs with the cyclic collector off and gives it back as it found it, also on an error."""
    seen: list[bool] = []
    plan = Mapper.plan

    def watched(self: Mapper, graph: Graph) -> Plan:
        seen.append(gc.isenabled())
        return plan(self, graph)

    monkeypatch.setattr(Mapper, "plan", watched)
    assert gc.isenabled()
    estimate_many([small_net()], hw, kind="roofline")
    assert seen == [False] and gc.isenabled()
    with pytest.raises(UnknownNameError):
        estimate_many([small_net()], hw, kind="nope")
    assert gc.isenabled()
    gc.disable()
    try:
        estimate(small_net(), hw, kind="roofline")
        assert not gc.isenabled()  # the caller's choice stays
    finally:
        gc.enable()


def test_batch_mismatch_on_a_built_graph(hw: HardwareModel) -> None:
    with pytest.raises(ShapeError, match="re-import"):
        estimate(small_net(), hw, batch=4)


def test_insertions_are_estimated_and_marked() -> None:
    records = hwsynth.campaign(n_conv=30)
    from annette.fit import fit_records

    fitted, _ = fit_records(records, kinds=("roofline", "refined"), holdout=0.0)
    b = hwsynth.Builder("net", (1, 8, 16, 16))
    graph = b.graph(b.relu(b.conv(b.input, 16)))
    est = estimate(graph, fitted, kind="refined")
    assert [(x.type, x.inserted, x.anchor) for x in est.layers] == [
        ("ReorderInput", True, "conv_0"), ("Conv+Relu", False, ""), ("ReorderOutput", True, "conv_0")]
    measured = hwsynth.record(graph, "network", "net", np.random.default_rng(0)).measurement
    assert measured is not None
    assert est.total_ms == pytest.approx(measured.label_ms, rel=1e-3)  # noise-free synthetic target


def test_sparse_types_use_their_primary_type_before_the_generic_model(hw: HardwareModel) -> None:
    from dataclasses import replace

    generic = roofline(1e7, 1e7, 0.5)
    sparse = replace(hw, layer_models={**hw.layer_models, "*": {"roofline": generic}},
                     fallbacks={"Conv+Relu": "*", "Softmax": "*"})
    conv = sparse.resolve("Conv+Relu", "roofline")
    assert conv is not None and conv.type == "Conv" and "too little data" in conv.note
    soft = sparse.resolve("Softmax", "mixed")
    assert soft is not None and soft.type == "*" and soft.kind == "roofline"
    assert sparse.resolve("Softplus", "roofline") is None


def test_a_fused_model_predicts_only_within_its_data() -> None:
    # "Conv+Relu" was fitted on small convolutions only (its coverage): a layer of 100x their flops is costed by
    # its primary's model, the same kernel without the post-op, and the per-layer table says which model and why.
    small = 2 * 4 * 64 * 27 + 256
    fused = LayerModel.from_dict({**roofline(1e7, 1e6, 0.5).to_dict(), "coverage": {"flops": [small / 2, small]}})
    assert LayerModel.from_dict(json.loads(json.dumps(fused.to_dict()))).coverage_ == fused.coverage_
    hw = HardwareModel(name="cov", target=TARGET, rules=MappingRules(fusions=(FusionRule(("Conv", "Relu")),)),
                       layer_models={"Conv+Relu": {"roofline": fused}, "Conv": {"roofline": roofline(1e9, 1e8, 0.002)}},
                       overhead=Overhead(0.0, 0.0))
    inside = estimate(small_net(), hw, kind="roofline").layers[0]
    assert inside.model == "Conv+Relu/roofline" and inside.note == ""
    big = Graph("big", (T("x", 1, 3, 80, 80),), (
        Layer("conv", "Conv", (T("x", 1, 3, 80, 80),), (T("c", 1, 4, 80, 80),), (T("w", 4, 3, 3, 3), T("b", 4)),
              {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1)}),
        Layer("relu", "Relu", (T("c", 1, 4, 80, 80),), (T("r", 1, 4, 80, 80),))), ("r",)).validate()
    beyond = estimate(big, hw, kind="roofline").layers[0]
    assert beyond.type == "Conv+Relu" and beyond.model == "Conv/roofline" and "beyond the data" in beyond.note
    plain = HardwareModel(name="plain", target=TARGET, rules=hw.rules, layer_models={"Conv": hw.layer_models["Conv"]},
                          overhead=Overhead(0.0, 0.0))
    assert beyond.time_ms == estimate(big, plain, kind="roofline").layers[0].time_ms
    with pytest.raises(HardwareModelError, match="coverage of 'flops'"):
        LayerModel.from_dict({**fused.to_dict(), "coverage": {"flops": [5.0, 1.0]}})


def test_fit_records_the_sizes_its_data_spans() -> None:
    from annette.layers import LAYER_MODELS
    from annette.layers.features import Features

    names = tuple(FEATURE_NAMES)
    X = np.ones((4, len(names)))
    X[:, names.index("flops")] = [10, 100, 1000, 50]
    X[:, names.index("bytes")] = [5, 50, 500, 20]
    model = LAYER_MODELS.get("roofline")().fit(Features(names, X), np.array([1.0, 2.0, 3.0, math.nan]))
    assert model.coverage_ == {"flops": (10.0, 1000.0), "bytes": (5.0, 500.0)}  # the NaN-timed row left out
    probe = X[:3].copy()
    probe[:, names.index("flops")] = [5, 2000, 2001]  # within a factor 2 below and above, then beyond
    assert model.covers(Features(names, probe)).tolist() == [True, True, False]
