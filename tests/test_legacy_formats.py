"""Parsed legacy layer-model and mapping-model files as plain data (``annette.legacy.formats``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annette.errors import LegacyFormatError
from annette.legacy import load_mapping_model
from annette.legacy.formats import (
    layer_model_entries,
    layer_model_to_dict,
    mapping_model_to_dict,
    mapping_rules,
)

LEGACY = Path(__file__).resolve().parents[1].parent / "shared" / "legacy-annette"
pytestmark = pytest.mark.skipif(not LEGACY.is_dir(), reason=f"shared legacy ANNETTE data not found at {LEGACY}")
LAYER = LEGACY / "models" / "layer"
MAPPING = LEGACY / "models" / "mapping"


def test_refined_entry_parameters() -> None:
    entries = {e.layer_type: e for e in layer_model_entries(LAYER / "ncs2-ref_roofline.json")}
    conv = entries["Conv"]
    assert (conv.est_type, conv.op_s, conv.bandwidth, conv.bit_act, conv.bit_weights) == (
        "refined_roofline", 319543476297.96844, 5679437699.6805105, 16, 16)
    assert {d: (p.par, p.alpha) for d, p in conv.dims.items()} == {
        "h": (64.0, 0), "w": (32.0, 0), "c": (32.0, 0.14579841511696096), "f": (32.0, 0.7046765447791339)}
    assert entries["Log"].bandwidth == 3279437699.0  # duplicate key: the last one
    assert conv.layer_class == "Conv" and entries["Tanh"].layer_class == "Base"


def test_effective_values_where_the_file_is_silent_or_ignored() -> None:
    dnndk = {e.layer_type: e for e in layer_model_entries(LAYER / "dnndk-roofline.json")}
    assert (dnndk["Base"].bit_act, dnndk["Base"].bit_weights, dict(dnndk["Base"].dims)) == (8, 8, {})
    stat = {e.layer_type: e for e in layer_model_entries(LAYER / "dnndk-statistical.json")}
    # the original never passes a statistical entry's architecture on: no unrolling, default bits
    assert stat["Conv"].architecture_ignored and dict(stat["Conv"].dims) == {}
    assert stat["Conv"].est_model == "models/layer/dnndk-stat/conv2d_all.sav"
    doc = layer_model_to_dict(LAYER / "dnndk-mixed.json")
    json.dumps(doc)  # JSON-ready
    conv = next(e for e in doc["entries"] if e["layer_type"] == "Conv")
    assert conv["dims"]["h"] == {"par": 8.0, "alpha": 0.485896} and conv["y_val"] == "ops/s"


def test_mapping_rules_in_order() -> None:
    rules = mapping_rules(MAPPING / "ov.json")
    assert [r.key for r in rules] == [
        "ConvBatch", "DepthwiseConvBatch", "DepthwiseConvRelu", "DepthwiseConvRelu6", "ConvRelu", "ConvRelu6",
        "ConvLeakyRelu", "ConvPool", "Softplus"]
    assert rules[-1].kind == "splitter" and rules[-1].out_type == ("Exp", "Power", "Log")
    pool = mapping_rules(MAPPING / "dnndk.json")[-1]
    assert (pool.kind, pool.prim_type, pool.sec_type, pool.out_type) == ("fuser", "Conv", "Pool", "ConvPool")
    cond = pool.secondary_conditions[0]
    assert (cond.name, cond.op, cond.value, cond.index) == ("pooling_type", "==", "MAX", None)


def test_classifier_rules_are_data_but_not_runnable() -> None:
    doc = mapping_model_to_dict(MAPPING / "ov2.json")
    json.dumps(doc)
    assert [r["est_model"] for r in doc["rules"] if r["est_model"]] == [
        "models/mapping/ov2-stat/convrelu.sav", "models/mapping/ov2-stat/convpool.sav"]
    with pytest.raises(LegacyFormatError, match="convrelu.sav"):
        load_mapping_model(MAPPING / "ov2.json")


def test_malformed_rules() -> None:
    with pytest.raises(LegacyFormatError, match="out_type"):
        load_mapping_model({"name": "m", "R": {"prim_type": "Softplus", "sec_type": None, "out_type": "Exp"}})
    bad_cond = {"primary": {"0": {"name": "num_ops", "cond": "!=", "val": "1"}}, "secondary": {}}
    with pytest.raises(LegacyFormatError, match="'cond' should be one of"):
        load_mapping_model({"R": {"prim_type": "Conv", "sec_type": "Relu", "out_type": "Conv", "fuse_cond": bad_cond}})
