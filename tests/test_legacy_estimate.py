"""The original ANNETTE estimation path: reference totals, all shipped graphs, documented quirks, closed forms."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from annette.errors import LegacyFormatError
from annette.legacy import estimate_legacy, load_graph, load_layer_model
from annette.legacy.layers import dim_efficiency

LEGACY = Path(__file__).resolve().parents[1].parent / "shared" / "legacy-annette"
needs_legacy = pytest.mark.skipif(not LEGACY.is_dir(), reason=f"shared legacy ANNETTE data not found at {LEGACY}")

MODELS = {  # the four roofline-type layer models and the mapping model of their target
    "dnndk-roofline": "dnndk",
    "dnndk-ref_roofline": "dnndk",
    "ncs2-roofline": "ov",
    "ncs2-ref_roofline": "ov",
}
TEMPLATES = {f.stem for f in (LEGACY / "graphs").glob("annette_bench*.json")} | {"cf_inceptionv1_mod"}
UNKNOWN_DIMS = {"tc-resnet_block", "yolov5simplified_old"}  # non-batch -1 dimensions in counted shapes


def _run(graph: str, layer_model: str, mapping: str | None = None) -> Any:
    mapping = MODELS[layer_model] if mapping is None else mapping
    return estimate_legacy(
        LEGACY / "graphs" / f"{graph}.json",
        LEGACY / "models" / "layer" / f"{layer_model}.json",
        None if mapping == "none" else LEGACY / "models" / "mapping" / f"{mapping}.json",
    )


def _vectors() -> list[dict[str, str]]:
    if not LEGACY.is_dir():
        return []
    with open(LEGACY / "test_vectors.csv") as f:
        return list(csv.DictReader(f))


# -- reference values ------------------------------------------------------------------------------------
@needs_legacy
@pytest.mark.parametrize("row", _vectors(), ids=lambda r: f"{r['graph']}-{r['layer_model']}")
def test_reproduces_reference_totals(row: dict[str, str]) -> None:
    est = _run(row["graph"], row["layer_model"], row["mapping_model"])
    ref = float(row["total_ms"])
    assert abs(est.total_ms - ref) / ref < 1e-9
    assert est.n_layers == int(row["n_layers_after_mapping"])
    assert est.warnings == ()


@needs_legacy
def test_test_vectors_cover_sixteen_rows() -> None:
    assert len(_vectors()) == 16


@needs_legacy
def test_every_shipped_graph_under_every_roofline_model() -> None:
    graphs = sorted(p.stem for p in (LEGACY / "graphs").glob("*.json"))
    assert len(graphs) == 66
    estimated = 0
    for g in graphs:
        for lm in MODELS:
            if g in TEMPLATES | UNKNOWN_DIMS:
                with pytest.raises(LegacyFormatError, match="symbolic value" if g in TEMPLATES else "unknown dimension"):
                    _run(g, lm)
                continue
            est = _run(g, lm)
            assert math.isfinite(est.total_ms) and est.total_ms > 0, (g, lm)
            assert all(math.isfinite(r.time_ms) and r.time_ms >= 0 for r in est.layers), (g, lm)  # rank-1 shapes count 0
            assert est.n_layers >= 1 and est.warnings == ()
            estimated += 1
    assert estimated == (66 - len(TEMPLATES) - len(UNKNOWN_DIMS)) * 4 == 212


# -- documented quirks -----------------------------------------------------------------------------------
@needs_legacy
def test_empty_children_visits_only_the_input() -> None:
    est = _run("resnet18-v1-7", "ncs2-roofline")
    assert [(r.name, r.type) for r in est.layers] == [("data", "DataInput")]
    assert est.layers[0].num_outputs == 224 * 224 * 3 and est.layers[0].num_inputs == 0


@needs_legacy
def test_orphan_child_is_visited_twice() -> None:
    graph = load_graph(LEGACY / "graphs" / "pt_mnasnet0_5.json")
    assert len(graph.topological_sort) == len(graph.layers) + 1
    est = _run("pt_mnasnet0_5", "dnndk-roofline")
    visits = [r for r in est.layers if r.name == "node315"]
    assert len(visits) == 2 and visits[0].time_ms == visits[1].time_ms > 0


@needs_legacy
def test_inner_data_inputs_are_estimated_and_block_fusion() -> None:
    est = _run("cf_mobilenetv2", "dnndk-roofline")
    graph = load_graph(LEGACY / "graphs" / "cf_mobilenetv2.json")
    assert est.n_layers == len(graph.topological_sort) == 102  # no Conv->Relu fusion: the Relus are DataInputs
    inner = [r for r in est.layers if r.type == "DataInput" and graph.layers[r.name]["parents"]]
    assert len(inner) == 35
    assert all(r.num_inputs == 0 and r.num_outputs > 0 and r.time_ms > 0 for r in inner)


@needs_legacy
def test_cityscapes_ncs2_roofline_is_dominated_by_pools() -> None:
    est = _run("cf_cityscapes", "ncs2-roofline")
    assert round(est.total_ms, 2) == 68.57
    assert round(sum(r.time_ms for r in est.layers if r.type == "Pool"), 1) == 29.7


@needs_legacy
def test_conv_pool_fusion_and_its_own_efficiency() -> None:
    def conv1(layer_model: str) -> Any:
        return next(r for r in _run("cf_resnet50", layer_model).layers if r.name == "conv1")

    roof, refined, ncs2 = conv1("dnndk-roofline"), conv1("dnndk-ref_roofline"), conv1("ncs2-roofline")
    assert roof.type == refined.type == ncs2.type == "ConvPool"
    assert roof.fused == ("conv1_relu", "pool1")
    assert round(roof.time_ms, 4) == 0.2011 and round(refined.time_ms, 4) == 1.0727
    # ConvPool does not replicate under-filled dimensions: c = 3 of c_par 16 with alpha 1 -> 3/16
    assert refined.eff == pytest.approx(3 / 16, rel=1e-12)
    assert refined.time_ms == pytest.approx(roof.time_ms / (3 / 16), rel=1e-12)
    # NCS2 layer models have no ConvPool entry: the Base entry, 0 ops, 16-bit data roof only
    assert (ncs2.entry, ncs2.num_ops, ncs2.bound) == ("Base", 0, "data")
    assert round(ncs2.time_ms, 4) == 0.3357


@needs_legacy
def test_duplicate_json_key_last_one_wins() -> None:
    model = load_layer_model(LEGACY / "models" / "layer" / "ncs2-roofline.json")
    assert model.duplicate_keys == ("Log",)
    assert model.entries["Log"].bandwidth == 3279437699.0


@needs_legacy
def test_ov2_needs_unpublished_classifiers() -> None:
    with pytest.raises(LegacyFormatError, match="never published"):
        _run("cf_resnet50", "ncs2-roofline", "ov2")


@needs_legacy
def test_template_error_names_layer_and_value() -> None:
    with pytest.raises(LegacyFormatError, match=r"layer 'Placeholder'.*'width'"):
        _run("annette_bench0", "dnndk-roofline")


@needs_legacy
def test_mixed_models_keep_the_roofline_value_and_say_so() -> None:
    est = _run("cf_resnet50", "dnndk-mixed", "dnndk")
    assert len(est.warnings) == 2 and all("not available" in w for w in est.warnings)
    ref = _run("cf_resnet50", "dnndk-ref_roofline", "dnndk")
    # mixed == refined roofline where both entries have the same numbers (the ConvPool entries do)
    mixed_pool = {r.name: r.time_ms for r in est.layers if r.type == "ConvPool"}
    ref_pool = {r.name: r.time_ms for r in ref.layers if r.type == "ConvPool"}
    assert mixed_pool.keys() == ref_pool.keys() and mixed_pool
    # ConvPool's mixed refinement divides by h*c*f only; w has no par in DNNDK, so it equals the refined value
    assert all(mixed_pool[n] == pytest.approx(ref_pool[n], rel=1e-12) for n in mixed_pool)


# -- closed forms on a hand-made graph -------------------------------------------------------------------
def _chain(pooling: str = "MAX") -> dict[str, Any]:
    def act(t: str, parent: str, child: str | None, shape: list[int]) -> dict[str, Any]:
        return {"type": t, "parents": [parent], "children": [child] if child else [], "input_shape": shape, "output_shape": shape}

    return {
        "name": "chain",
        "layers": {
            "in": {"type": "DataInput", "parents": [], "children": ["conv"], "output_shape": [-1, 8, 8, 4]},
            "conv": {
                "type": "Conv", "parents": ["in"], "children": ["bn"], "input_shape": [-1, 8, 8, 4],
                "output_shape": [-1, 8, 8, 16], "kernel_shape": [3, 3, 4, 16], "strides": [1, 1, 1, 1],
                "pads": [0, 1, 1, 0, 0, 1, 1, 0],
            },
            "bn": act("BatchNorm", "conv", "relu", [-1, 8, 8, 16]),
            "relu": act("Relu", "bn", "pool", [-1, 8, 8, 16]),
            "pool": {
                "type": "Pool", "parents": ["relu"], "children": [], "input_shape": [-1, 8, 8, 16],
                "output_shape": [-1, 4, 4, 16], "kernel_shape": [1, 2, 2, 1], "strides": [1, 2, 2, 1],
                "pads": [0, 0, 0, 0, 0, 0, 0, 0], "pooling_type": pooling,
            },
        },
    }


def _model(est_type: str = "roofline", **arch: float) -> dict[str, Any]:
    def entry(t: str, kind: str = "roofline", a: dict[str, float] | None = None) -> dict[str, Any]:
        e: dict[str, Any] = {"name": t, "layer_type": t, "est_type": kind, "op_s": 1e9, "bandwidth": 1e9}
        if a is not None:
            e["architecture"] = {"bit_act": 8, "bit_weights": 8, **a}
        if kind in ("mixed", "statistical"):
            e.update(est_model="models/x.sav", est_dict={"0": "num_ops"})
        return e

    return {
        "name": "unit", "op_s": 1, "bandwidth": 1, "architecture": None,
        "Base": entry("Base"), "Pool": entry("Pool"),
        "Conv": entry("Conv", est_type, dict(arch)), "ConvPool": entry("ConvPool", est_type, dict(arch)),
    }


DNNDK_LIKE = {
    "name": "m",
    "ConvBatch": {"name": "ConvBatch", "prim_type": "Conv", "sec_type": "BatchNorm", "out_type": "Conv"},
    "ConvRelu": {"name": "ConvRelu", "prim_type": "Conv", "sec_type": "Relu", "out_type": "Conv"},
    "ConvPool": {
        "name": "ConvPool", "prim_type": "Conv", "sec_type": "Pool", "out_type": "ConvPool",
        "fuse_cond": {"primary": {}, "secondary": {"0": {"name": "pooling_type", "cond": "==", "val": "MAX"}}},
    },
}


def test_roofline_closed_form_without_mapping() -> None:
    est = estimate_legacy(_chain(), _model())
    by = {r.name: r for r in est.layers}
    assert (by["conv"].num_ops, by["conv"].num_weights) == (3 * 3 * 4 * 16 * 8 * 8 * 2, 576)
    assert by["conv"].time_ms == pytest.approx(73728 / 1e9 * 1000, rel=1e-15)  # op-bound
    assert by["in"].time_ms == pytest.approx(256 / 1e9 * 1000, rel=1e-15)  # outputs only, 8 bit
    assert by["bn"].time_ms == pytest.approx(2048 / 1e9 * 1000, rel=1e-15)  # Base: data roof of in + out
    assert by["pool"].num_ops == 256 * 2 * 2 * 2  # outputs * kh * kw * 2
    assert est.total_ms == pytest.approx((256 + 73728 + 2048 + 2048 + 2048) / 1e6, rel=1e-12)


def test_chain_collapses_into_conv_pool_across_passes() -> None:
    est = estimate_legacy(_chain(), _model(), DNNDK_LIKE)
    assert [(r.name, r.type) for r in est.layers] == [("in", "DataInput"), ("conv", "ConvPool")]
    conv = est.layers[1]
    assert conv.fused == ("bn", "relu", "pool")
    # ConvPool: outputs from the fused pool, inputs rebuilt as H*W*C*prod(strides)
    assert (conv.num_outputs, conv.num_inputs, conv.num_ops) == (4 * 4 * 16, 8 * 8 * 4, 73728)


def test_refinement_replicates_only_outside_conv_pool() -> None:
    arch = {"c_par": 16.0, "c_alpha": 1.0, "h_par": 8.0, "h_alpha": 1.0}
    plain = estimate_legacy(_chain(), _model("refined_roofline", **arch))
    assert plain.layers[1].eff == 1.0  # Conv: c = 4 < 16 is replicated, h = 8 fills h_par
    fused = estimate_legacy(_chain(), _model("refined_roofline", **arch), DNNDK_LIKE)
    assert fused.layers[1].eff == pytest.approx(4 / 16, rel=1e-15)
    assert fused.layers[1].time_ms == pytest.approx(0.073728 / 0.25, rel=1e-12)


def test_statistical_and_mixed_fall_back_with_a_warning() -> None:
    arch = {"c_par": 16.0, "c_alpha": 1.0}
    refined = estimate_legacy(_chain(), _model("refined_roofline", **arch), DNNDK_LIKE)
    mixed = estimate_legacy(_chain(), _model("mixed", **arch), DNNDK_LIKE)
    stat = estimate_legacy(_chain(), _model("statistical", **arch), DNNDK_LIKE)
    roof = estimate_legacy(_chain(), _model("roofline", **arch), DNNDK_LIKE)
    assert mixed.total_ms == refined.total_ms and stat.total_ms == roof.total_ms < refined.total_ms
    assert refined.warnings == () and len(mixed.warnings) == 1 and "models/x.sav" in mixed.warnings[0]


def test_dim_efficiency_closed_form() -> None:
    assert dim_efficiency(20, 16, 1.0, True, "t") == 20 / 32
    assert dim_efficiency(20, 16, 0.5, True, "t") == pytest.approx(1 / (0.5 + 0.5 / 0.625), rel=1e-15)
    assert dim_efficiency(3, 16, 1.0, True, "t") == 1.0  # replication: under-filled is free
    assert dim_efficiency(3, 16, 1.0, False, "t") == 3 / 16
    assert dim_efficiency(3, 16, 0.0, False, "t") == 1.0  # alpha 0: no effect
    assert dim_efficiency(3, None, 1.0, False, "t") == 1.0  # no par: alpha ignored


def test_avg_pool_fuses_only_without_condition() -> None:
    dnndk = estimate_legacy(_chain("AVG"), _model(), DNNDK_LIKE)
    assert [r.type for r in dnndk.layers] == ["DataInput", "Conv", "Pool"]
    no_cond = copy.deepcopy(DNNDK_LIKE)
    no_cond["ConvPool"]["fuse_cond"] = None
    assert [r.type for r in estimate_legacy(_chain("AVG"), _model(), no_cond).layers] == ["DataInput", "ConvPool"]


def test_numeric_fuse_condition_uses_counts() -> None:
    mapping = copy.deepcopy(DNNDK_LIKE)
    cond = {"0": {"name": "num_ops", "cond": ">", "val": "1e5"}}
    mapping["ConvBatch"]["fuse_cond"] = {"primary": cond, "secondary": {}}
    assert [r.name for r in estimate_legacy(_chain(), _model(), mapping).layers] == ["in", "conv", "bn", "relu", "pool"]
    cond["0"]["val"] = "1000"
    assert [r.name for r in estimate_legacy(_chain(), _model(), mapping).layers] == ["in", "conv"]


def test_fusion_needs_a_single_child() -> None:
    g = _chain()
    g["layers"]["conv"]["children"].append("side")
    g["layers"]["side"] = {"type": "Relu", "parents": ["conv"], "children": [], "output_shape": [-1, 8, 8, 16]}
    names = [r.name for r in estimate_legacy(g, _model(), DNNDK_LIKE).layers]
    assert names == ["in", "conv", "bn", "side", "relu", "pool"]  # two children: nothing fuses into conv


def test_remover_and_splitter() -> None:
    g = _chain()
    g["layers"]["bn"]["type"] = "Dropout"
    g["layers"]["pool"]["type"] = "Softplus"
    mapping = {
        "name": "m",
        "Drop": {"name": "Drop", "prim_type": "Dropout", "sec_type": None, "out_type": None},
        "Split": {"name": "Split", "prim_type": "Softplus", "sec_type": None, "out_type": ["Exp", "Power", "Log"]},
        "ConvRelu": DNNDK_LIKE["ConvRelu"],
    }
    est = estimate_legacy(g, _model(), mapping)
    assert [(r.name, r.type) for r in est.layers] == [
        ("in", "DataInput"), ("conv", "Conv"), ("pool_Exp", "Exp"), ("pool_Power", "Power"), ("pool_Log", "Log"),
    ]
    assert est.layers[1].fused == ("relu",)
    # without a later fusion the original's sort stays stale after a split, and it fails: so do we
    del mapping["ConvRelu"]
    with pytest.raises(LegacyFormatError, match="stale"):
        estimate_legacy(g, _model(), mapping)


# -- malformed input -------------------------------------------------------------------------------------
def test_malformed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LegacyFormatError, match="not valid JSON"):
        load_graph(bad)
    with pytest.raises(LegacyFormatError, match="file not found"):
        load_graph(tmp_path / "missing.json")
    with pytest.raises(LegacyFormatError, match="'layers'"):
        load_graph({"name": "x"})
    g = _chain()
    del g["layers"]["bn"]["type"]
    with pytest.raises(LegacyFormatError, match="layer 'bn' has no 'type'"):
        load_graph(g)
    g = _chain()
    g["layers"]["relu"]["parents"] = ["ghost"]
    with pytest.raises(LegacyFormatError, match="parent 'ghost'"):
        load_graph(g)
    g = _chain()
    g["layers"]["relu"]["children"] = ["ghost"]
    with pytest.raises(LegacyFormatError, match="child 'ghost'"):
        load_graph(g)
    g = _chain()
    del g["layers"]["conv"]["kernel_shape"]
    with pytest.raises(LegacyFormatError, match="'kernel_shape'"):
        estimate_legacy(g, _model())
    model = _model()
    del model["Base"]
    with pytest.raises(LegacyFormatError, match="no 'Base' entry"):
        estimate_legacy(_chain(), model)
    layer_file = tmp_path / "model.json"
    layer_file.write_text(json.dumps({"name": "m", "Conv": {"layer_type": "Conv", "est_type": "refined_roofline"}}))
    with pytest.raises(LegacyFormatError, match="missing key 'architecture'"):
        load_layer_model(layer_file)


def test_walk_that_never_ends_is_an_error() -> None:
    g = {
        "layers": {
            "a": {"type": "DataInput", "parents": [], "children": ["b"], "output_shape": [1, 2]},
            "b": {"type": "Relu", "parents": [], "children": ["b"], "output_shape": [1, 2]},
        }
    }
    with pytest.raises(LegacyFormatError, match="does not terminate"):
        load_graph(g)
