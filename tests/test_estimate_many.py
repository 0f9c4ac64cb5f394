"""The batch path: ``estimate_many`` (lean mapping plans, features and predictions per distinct row, lazy tables)
gives exactly what one-by-one ``estimate`` gives, and distinct rows never merge layers whose features differ."""

from __future__ import annotations

import gc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from annette.estimate import estimate, estimate_many
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.hardware import HardwareModel, Overhead
from annette.importers.onnx import graph_from_onnx
from annette.layers import LayerModel
from annette.layers.features import ALL_FEATURE_NAMES, DistinctRows, extract, row_key
from annette.layers.mixed import MixedModel
from annette.layers.statistical import StatisticalModel
from annette.mapping.apply import Mapper, apply
from annette.mapping.mapped import ExecutedLayer
from annette.mapping.rules import FusionRule, InsertionRule, MappingRules, RemovalRule, ShapeCondition
from annette.records import Target
from annette.spaces.nb201 import graph_from_arch, sample_archs

TARGET = Target("simulated", "cpu", "test", "none", "0", "none", 1, "fp32")
RULES = MappingRules(
    fusions=(
        FusionRule(("Conv", "BatchNormalization", "Relu")),
        FusionRule(("Conv", "BatchNormalization")),
        FusionRule(("Conv", "Relu"), shape_conditions=(ShapeCondition("in_c", "mod", 8),)),
        FusionRule(("Gemm", "Relu")),
    ),
    removals=(RemovalRule("Flatten"),),
    insertions=(
        InsertionRule("ReorderInput", "Conv", "before", ("<input>", "Relu", "MaxPool"),
                      conditions=(ShapeCondition("in_c", "ge", 16),)),
        InsertionRule("ReorderOutput", "AveragePool", "after", ("Add", "<output>")),
        InsertionRule("ReorderOutput", "Conv", "after", ("Add",), count=2),
    ),
)


# -- graphs --------------------------------------------------------------------------------------------------
def small_cnn() -> Graph:
    """A torchvision-like ONNX network: stem, a residual block, max pool, depthwise conv, pooled classifier."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def init(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
        return name

    def conv(x: str, name: str, c_in: int, c_out: int, k: int, group: int = 1) -> str:
        w = init(f"{name}.w", c_out, c_in // group, k, k)
        nodes.append(helper.make_node("Conv", [x, w], [name], name=name, kernel_shape=[k, k],
                                      pads=[k // 2] * 4, group=group))
        return name

    def bn(x: str, name: str, c: int) -> str:
        params = [init(f"{name}.{p}", c) for p in ("scale", "bias", "mean")]
        var = f"{name}.var"
        inits.append(numpy_helper.from_array(np.ones(c, dtype=np.float32), var))
        nodes.append(helper.make_node("BatchNormalization", [x, *params, var], [name], name=name))
        return name

    def op(kind: str, inputs: list[str], name: str, **attrs: object) -> str:
        nodes.append(helper.make_node(kind, inputs, [name], name=name, **attrs))
        return name

    x = op("Relu", [bn(conv("x", "stem", 3, 16, 3), "stem_bn", 16)], "stem_relu")
    y = bn(conv(op("Relu", [bn(conv(x, "b1", 16, 16, 3), "b1_bn", 16)], "b1_relu"), "b2", 16, 16, 3), "b2_bn", 16)
    x = op("Relu", [op("Add", [x, y], "add")], "add_relu")
    x = op("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    x = op("Relu", [conv(x, "dw", 16, 16, 3, group=16)], "dw_relu")
    x = op("Flatten", [op("GlobalAveragePool", [x], "gap")], "flat", axis=1)
    fc = op("Gemm", [x, init("fc.w", 10, 16), init("fc.b", 10)], "fc", transB=1)
    graph = helper.make_graph(
        nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info(fc, TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return graph_from_onnx(onnx.shape_inference.infer_shapes(model), name="small_cnn")


@pytest.fixture(scope="module")
def graphs() -> list[Graph]:
    return [graph_from_arch(arch) for arch in sample_archs(5, seed=3)] + [small_cnn()]


# -- a hardware model with every kind of rule and model, LightGBM ones included ------------------------------
def roofline(peak: float, bw: float) -> LayerModel:
    return LayerModel.from_dict({
        "kind": "roofline", "params": {"overhead": True}, "feature_names": list(ALL_FEATURE_NAMES),
        "learned": {"roofs": {"peak_flops_per_s": peak, "bandwidth_bytes_per_s": bw, "overhead_ms": 0.001}},
    })


@pytest.fixture(scope="module")
def hw(graphs: list[Graph]) -> HardwareModel:
    layers = [ex for g in graphs for ex in apply(g, RULES).executed]
    X = extract(layers)
    # a smooth synthetic latency law: what the models learn does not matter, only that they predict per row
    y = 1e-3 + X.column("flops") / 2e10 + X.column("bytes") / 5e9 + 1e-4 * np.log1p(X.column("in_c"))
    stat = StatisticalModel(n_estimators=20, min_child_samples=3).fit(X, y)
    mixed = MixedModel(n_estimators=20, min_child_samples=3).fit(X, y)
    return HardwareModel(
        name="synthetic", target=TARGET, rules=RULES,
        layer_models={
            "Conv": {"statistical": stat, "mixed": mixed},
            "Conv+BatchNormalization": {"mixed": mixed},
            "Relu": {"roofline": roofline(4e9, 6e9)},
            "ReorderInput": {"roofline": roofline(1e12, 5e9)},
            "AveragePool": {"statistical": stat},
            # Add, Gemm, MaxPool, ReorderOutput, GlobalAveragePool: unsupported (listed, left out of totals)
        },
        overhead=Overhead(per_node_ms=0.004, per_run_ms=0.01),
        feature_names=ALL_FEATURE_NAMES,
    )


# -- tests ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["roofline", "statistical", "mixed"])
def test_estimate_many_equals_estimate_exactly(graphs: list[Graph], hw: HardwareModel, kind: str) -> None:
    many = estimate_many(graphs, hw, kind=kind)
    assert len(many) == len(graphs)
    for g, e in zip(graphs, many, strict=True):
        one = estimate(g, hw, kind=kind)
        assert e.total_ms == one.total_ms  # bitwise: same rows, same models, same sums
        assert e.to_dict() == one.to_dict()
        assert e.n_executed == len(apply(g, RULES).executed) == len(e.layers)
    # the mix exercises what the batch path shares between graphs: fusions, insertions, unsupported layers
    types = {x.type for e in many for x in e.layers}
    assert {"Conv+BatchNormalization", "Conv+BatchNormalization+Relu", "Conv[dw]+Relu", "ReorderInput", "Add"} <= types
    assert "ReorderOutput" in types and all(e.n_unsupported > 0 for e in many)
    assert all(x.time_ms is None for e in many for x in e.unsupported)
    assert many[-1].removed == ("flat",)


def test_estimate_many_in_any_order_and_repeated(graphs: list[Graph], hw: HardwareModel) -> None:
    forward = estimate_many(graphs, hw)
    backward = estimate_many([*graphs[::-1], graphs[0]], hw)[::-1]
    assert backward[0].to_dict() == forward[0].to_dict()
    for a, b in zip(forward, backward[1:], strict=True):
        assert a.total_ms == b.total_ms and a.layers == b.layers


def test_one_mapper_for_many_graphs_maps_each_as_apply_does(graphs: list[Graph]) -> None:
    mapper = Mapper(RULES)
    for g in [*graphs, *graphs]:  # memos filled by other graphs must not change a graph's mapping
        assert mapper.map(g) == apply(g, RULES)
        assert mapper.plan(g).mapped() == apply(g, RULES)


def test_distinct_rows_never_merge_layers_whose_features_differ(graphs: list[Graph]) -> None:
    layers = [ex for g in graphs for ex in apply(g, RULES).executed]
    together = extract(layers)
    alone = np.vstack([extract([ex]).values for ex in layers])
    np.testing.assert_array_equal(together.values, alone)
    assert len({row_key(ex.members, ex.bypassed) for ex in layers if not ex.inserted}) < len(layers) / 5


def T(name: str, *shape: int, dtype: str = "float32") -> TensorSpec:
    return TensorSpec(name, tuple(shape), dtype)


def test_row_keys_tell_apart_what_features_read() -> None:
    def conv(name: str, w: TensorSpec, dtype: str = "float32", **attrs: object) -> ExecutedLayer:
        layer = Layer(name, "Conv", (T(f"{name}.x", 1, 8, 8, 8, dtype=dtype),), (T(f"{name}.y", 1, 8, 8, 8, dtype=dtype),),
                      (w,), {"kernel_shape": (3, 3), **attrs})  # type: ignore[dict-item]
        return ExecutedLayer(name, (layer,))

    w3 = T("w", 8, 8, 3, 3)
    layers = [
        conv("a", w3),
        conv("same_as_a", T("other_name", 8, 8, 3, 3)),  # names never matter
        conv("fp16", w3, dtype="float16"),
        conv("strided", w3, strides=(2, 2)),
        conv("unit_strides", w3, strides=(1, 1)),  # the features of "a", but another key: computed again, equal
        conv("dilated", w3, dilations=(2, 2)),  # an attribute the features may not read is still told apart
        conv("1x1", T("w", 8, 8, 1, 1), kernel_shape=(1, 1)),
    ]
    distinct = DistinctRows()
    rows = []
    for ex in layers:
        key = row_key(ex.members)
        u = distinct.get(key)
        rows.append(distinct.add(key, ex) if u is None else u)
    assert rows == [0, 0, 1, 2, 3, 4, 5] and len(distinct) == 6
    assert distinct.rows[3] == distinct.rows[0] and distinct.rows[2] != distinct.rows[0]
    assert distinct.layers[0] is layers[0]
    # one input and one weight vs two inputs: counts are part of the key
    two_inputs = Layer("add", "Add", (T("p", 1, 8), T("q", 1, 8)), (T("r", 1, 8),))
    one_weight = Layer("add", "Add", (T("p", 1, 8),), (T("r", 1, 8),), (T("q", 1, 8),))
    assert row_key((two_inputs,)) != row_key((one_weight,))


def test_no_executed_layer_outlives_the_batch(graphs: list[Graph], hw: HardwareModel) -> None:
    def alive() -> int:
        gc.collect()
        return sum(isinstance(o, ExecutedLayer) for o in gc.get_objects())

    before = alive()
    ests = estimate_many(graphs * 3, hw)
    kept = alive() - before
    n_layers = sum(e.n_executed for e in ests)
    assert kept < n_layers / 10  # only the first layer of each distinct row, not one per executed layer
    assert len(ests[0].layers) == ests[0].n_executed  # tables are rebuilt on demand
