"""Benchmark families (ONNX builders), their inverse, configurations, priors, refinement and the plan."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from annette.bench.blocks import FAMILIES, MAX_COST, build_model, family_params, sample_params
from annette.bench.campaign import plan_campaign
from annette.bench.sweeps import (
    config_id,
    family_weights,
    grid,
    load_priors,
    make_config,
    prior_configs,
    random_configs,
    refine,
)
from annette.errors import AnnetteError, UnknownNameError
from annette.graph.accounting import account
from annette.importers.onnx import graph_from_onnx

REQUIRED = {
    "conv", "gemm", "matmul", "maxpool", "avgpool", "globalavgpool", "add", "mul", "relu", "clip", "sigmoid",
    "hardswish", "hardsigmoid", "gelu", "silu", "tanh", "batchnorm", "softmax", "layernorm", "concat", "resize",
    "transpose", "reshape", "conv_bn_relu", "conv_relu_maxpool", "residual", "dwsep", "inverted_residual", "se",
    "attention", "mlp", "chain2",
}


def test_all_required_families_registered() -> None:
    assert REQUIRED <= set(FAMILIES.names())


@pytest.mark.parametrize("family", sorted(REQUIRED))
def test_family_builds_valid_named_onnx(family: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(2):
        params = sample_params(family, rng)
        assert 0 < FAMILIES.get(family).cost(params) <= MAX_COST
        model = build_model(family, params, name=f"{family}-x")
        onnx.checker.check_model(model, full_check=True)  # shape inference agrees with the tracked shapes
        names = [n.name for n in model.graph.node]
        assert all(names) and len(set(names)) == len(names)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        out = inferred.graph.output[0].type.tensor_type.shape
        assert all(d.dim_value > 0 for d in out.dim)
        graph = graph_from_onnx(model)
        assert [x.name for x in graph.layers] == names


def test_conv_builder_closed_form_macs() -> None:
    p = {"n": 1, "cin": 32, "h": 28, "w": 28, "cout": 64, "k": 3, "stride": 2, "pad": 1, "dilation": 1, "groups": 2}
    layer = graph_from_onnx(build_model("conv", p)).layers[0]
    assert layer.output.shape == (1, 64, 14, 14)
    assert account(layer).macs == 64 * 14 * 14 * (32 // 2) * 9


@pytest.mark.parametrize("family", [f for f in sorted(REQUIRED) if FAMILIES.get(f).kind == "micro" and f != "silu"])
def test_family_params_inverts_the_builder(family: str) -> None:
    rng = np.random.default_rng(3)
    params = sample_params(family, rng)
    graph = graph_from_onnx(build_model(family, params))
    assert len(graph.layers) == 1
    got = family_params(graph.layers[0])
    assert got is not None and got[0] == family
    expected = {k: v for k, v in params.items() if k != "dtype"}
    assert got[1] == expected


def test_fp16_builds() -> None:
    model = build_model("conv", {"n": 1, "cin": 4, "h": 8, "w": 8, "cout": 4, "k": 3, "stride": 1, "pad": 1,
                                 "dilation": 1, "groups": 4, "dtype": "float16"})
    onnx.checker.check_model(model, full_check=True)
    assert graph_from_onnx(model).layers[0].output.dtype == "float16"
    with pytest.raises(AnnetteError, match="dtype"):
        build_model("relu", {"shape": [1, 2], "dtype": "int8"})


def test_builder_errors_name_the_problem() -> None:
    with pytest.raises(AnnetteError, match="needs parameter 'cout'"):
        build_model("conv", {"n": 1, "cin": 4, "h": 8, "w": 8, "k": 3, "stride": 1, "pad": 1, "groups": 1})
    with pytest.raises(AnnetteError, match="groups=3 must divide"):
        build_model("conv", {"n": 1, "cin": 4, "h": 8, "w": 8, "cout": 4, "k": 3, "stride": 1, "pad": 1, "groups": 3})
    with pytest.raises(UnknownNameError, match="benchmark family 'deconv'"):
        build_model("deconv", {})


def test_config_ids_are_stable_and_target_specific() -> None:
    a = make_config("relu", {"shape": [1, 8]}, "t1")
    assert a.config_id == config_id("relu", {"shape": [1, 8]}, "t1") == make_config("relu", {"shape": [1, 8]}, "t1").config_id
    assert a.config_id != make_config("relu", {"shape": [1, 8]}, "t2").config_id
    assert a.config_id != make_config("relu", {"shape": [1, 9]}, "t1").config_id
    assert a.model_name == f"relu-{a.config_id}" and a.kind == "micro"


def test_grid_and_random() -> None:
    base = {"n": 1, "cin": 16, "h": 14, "w": 14, "pad": 0, "dilation": 1, "groups": 1, "stride": 1}
    g = grid("conv", "t", base, cout=[16, 32], k=[1, 3, 5])
    assert len(g) == 6 and {c.params["k"] for c in g} == {1, 3, 5} and all(c.source == "grid" for c in g)
    r = random_configs("gemm", 20, "t", seed=1)
    assert len(r) == 20 and r == random_configs("gemm", 20, "t", seed=1)
    assert all(FAMILIES.get("gemm").cost(c.params) <= MAX_COST for c in r)


def test_priors_come_from_real_networks() -> None:
    priors = load_priors()
    assert "resnet50" in priors["models"] and priors["op_counts"]["Conv"] > 500
    convs = prior_configs("conv", "t")
    # resnet's stem: 3 -> 64, 7x7 stride 2 on 224x224
    assert any(c.params == {"n": 1, "cin": 3, "h": 224, "w": 224, "cout": 64, "k": 7, "stride": 2, "pad": 3,
                            "dilation": 1, "groups": 1} for c in convs)
    assert any(c.params["groups"] == c.params["cin"] == c.params["cout"] > 1 for c in convs)  # depthwise
    weights = family_weights()
    assert set(weights) == {n for n in FAMILIES.names() if FAMILIES.get(n).kind == "micro"} and sum(weights.values()) == pytest.approx(1.0)
    assert weights["conv"] == max(weights.values()) and min(weights.values()) > 0


def test_refine_samples_near_the_worst_points() -> None:
    configs = random_configs("conv", 60, "t", seed=2)

    def error(c):  # a model that errs only on wide depthwise-free convolutions
        return 1.0 if c.params["cin"] > 256 and c.params["groups"] == 1 else 0.01

    new = refine(configs, error, "t", n=30, seed=0)
    assert len(new) == 30 and all(c.source == "refine" for c in new)
    assert not {c.config_id for c in new} & {c.config_id for c in configs}
    assert np.median([c.params["cin"] for c in new]) > 150  # near the seeds (cin > 256), not the population
    assert all(FAMILIES.get("conv").cost(c.params) <= MAX_COST for c in new)


def test_plan_is_seeded_shuffled_and_mixed() -> None:
    plan = plan_campaign("t", seed=5, size=800)
    assert plan == plan_campaign("t", seed=5, size=800)
    assert plan != plan_campaign("t", seed=6, size=800)
    assert len({c.config_id for c in plan}) == 800
    kinds = Counter(c.kind for c in plan)
    assert 0.70 < kinds["micro"] / 800 < 0.80
    families = Counter(c.family for c in plan)
    assert families.most_common(1)[0][0] == "conv" and len(families) >= 28
    assert Counter(c.source for c in plan)["prior"] > 100
