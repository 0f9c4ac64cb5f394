"""Bad hardware-model bundles: malformed LightGBM texts, invalid numbers and wrongly typed parts are refused at
load with the file, the layer type and the parameter named; LightGBM never sees an unchecked text."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hwsynth
from annette.errors import HardwareModelError
from annette.fit import fit_records
from annette.hardware import HardwareModel
from annette.layers.lgbm_text import checked_model_text, compact_model_text


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    hw, _ = fit_records(hwsynth.campaign(n_conv=20), kinds=("roofline", "refined", "statistical"), holdout=0.0)
    return hw.to_dict()


def write(tmp_path: Path, doc: Any, name: str = "hw.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def lgbm_text(bundle: dict[str, Any]) -> str:
    return str(bundle["layer_models"]["Conv"]["statistical"]["learned"]["lightgbm_model"])


def with_text(bundle: dict[str, Any], text: str) -> dict[str, Any]:
    doc = copy.deepcopy(bundle)
    doc["layer_models"]["Conv"]["statistical"]["learned"]["lightgbm_model"] = text
    return doc


def first_token(key: str, value: str) -> Callable[[str], str]:
    """Replace the first value of the first ``key=`` line that has values."""
    return lambda t: re.sub(rf"(\n{key}=)-?[0-9.e+-]+", rf"\g<1>{value}", t, count=1)


def drop_last_token(key: str) -> Callable[[str], str]:
    return lambda t: re.sub(rf"(\n{key}=[^\n]*) [^ \n]+\n", r"\1\n", t, count=1)


MUTATIONS: dict[str, Callable[[str], str]] = {
    "halved": lambda t: t[: len(t) // 2],
    "split_feature out of range": first_token("split_feature", "999"),
    "negative split_feature": first_token("split_feature", "-1"),
    "left_child out of range": first_token("left_child", "999"),
    "leaf index out of range": first_token("right_child", "-999"),
    "root as a child (cycle)": first_token("left_child", "0"),
    "a leaf value missing": drop_last_token("leaf_value"),
    "a threshold missing": drop_last_token("threshold"),
    "non-integer index": first_token("split_feature", "1.5"),
    "overflowing leaf value": first_token("leaf_value", "1e999"),
    "huge num_leaves": lambda t: t.replace("\nnum_leaves=", "\nnum_leaves=9999999", 1),
    "categorical split": first_token("decision_type", "1"),
    "tab separator": lambda t: re.sub(r"(\nleft_child=-?\d+) ", "\\1\t", t, count=1),
    "other objective": lambda t: t.replace("objective=regression", "objective=multiclass num_class:3"),
    "feature count": lambda t: re.sub(r"max_feature_idx=\d+", "max_feature_idx=3", t),
    "no end": lambda t: t.replace("end of trees", ""),
    "not a string": lambda t: 5,  # type: ignore[return-value,arg-type]
}


def test_checked_text_is_the_text_and_predicts(bundle: dict[str, Any]) -> None:
    import lightgbm as lgb

    text = lgbm_text(bundle)
    assert checked_model_text(text) == text
    rng = np.random.default_rng(0)
    X, y = rng.random((200, 4)), rng.random(200)
    full = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=5).model_to_string()
    checked = checked_model_text(full)  # training-only keys are compacted first
    assert checked == compact_model_text(full)
    assert np.array_equal(lgb.Booster(model_str=checked).predict(X), lgb.Booster(model_str=full).predict(X))


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_malformed_lightgbm_text_is_refused_at_load(bundle: dict[str, Any], tmp_path: Path, mutation: str) -> None:
    text = MUTATIONS[mutation](lgbm_text(bundle))
    assert text != lgbm_text(bundle)
    path = write(tmp_path, with_text(bundle, text))
    with pytest.raises(HardwareModelError, match=rf"{re.escape(str(path))}: layer model Conv/statistical.*LightGBM|string"):
        HardwareModel.load(path)


def test_cli_with_a_halved_lightgbm_text_gives_one_line_not_a_crash(bundle: dict[str, Any], tmp_path: Path) -> None:
    """Before: LightGBM parsed the halved text at the first predict and the process died (SIGSEGV, exit 139)."""
    doc = copy.deepcopy(bundle)
    for kinds in doc["layer_models"].values():
        if "statistical" in kinds:
            learned = kinds["statistical"]["learned"]
            learned["lightgbm_model"] = learned["lightgbm_model"][: len(learned["lightgbm_model"]) // 2]
    hw_path = write(tmp_path, doc)
    b = hwsynth.Builder("cli_net", (1, 8, 16, 16))
    graph_path = tmp_path / "net.json"
    b.graph(b.relu(b.conv(b.input, 16))).to_json(graph_path)
    res = subprocess.run(
        [sys.executable, "-m", "annette.cli.main", "estimate", str(graph_path), "--hw", str(hw_path),
         "--kind", "statistical"],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "HardwareModelError" in lines[0] and "statistical" in lines[0], res.stderr


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("overhead", "per_run_ms"), float("nan"), "overhead.per_run_ms must be a finite number"),
        (("overhead", "per_run_ms"), -1.0, "overhead.per_run_ms must not be negative"),
        (("overhead", "per_node_ms"), float("inf"), "overhead.per_node_ms must be a finite number"),
        (("overhead", "per_node_ms"), "1", "overhead.per_node_ms must be a number"),
        (("layer_models", "Conv", "roofline", "learned", "roofs", "overhead_ms"), -0.5, "Conv/roofline.*overhead_ms must not be negative"),
        (("layer_models", "Conv", "roofline", "learned", "roofs", "peak_flops_per_s"), 0.0, "Conv/roofline.*peak_flops_per_s must be positive"),
        (("layer_models", "Conv", "roofline", "learned", "roofs", "peak_flops_per_s"), -5e9, "peak_flops_per_s must be positive"),
        (("layer_models", "Conv", "roofline", "learned", "roofs", "bandwidth_bytes_per_s"), float("inf"), "bandwidth_bytes_per_s must be a finite"),
        (("layer_models", "Conv", "roofline", "learned", "roofs", "bandwidth_bytes_per_s"), float("nan"), "bandwidth_bytes_per_s must be a finite"),
        (("layer_models", "Conv", "refined", "learned", "alpha", "c"), 1.5, "Conv/refined.*alpha.c must be within"),
        (("layer_models", "Conv", "refined", "learned", "par", "c"), 0, "Conv/refined.*par.c must be positive"),
        (("layer_models", "Conv", "refined", "learned", "par", "q"), 4, "unknown dimensions"),
        (("cache",), {"capacity_bytes": 1e6, "bandwidth_bytes_per_s": float("inf")}, "cache.bandwidth_bytes_per_s must be a finite"),
        (("cache",), {"capacity_bytes": -1, "bandwidth_bytes_per_s": 1e9}, "cache.capacity_bytes must be positive"),
        # wrongly typed parts
        (("fallbacks",), 5, "fallbacks must be an object, got the number 5"),
        (("features",), "abc", "features must be an object"),
        (("features", "names"), "abc", "features.names must be a list"),
        (("layer_models",), [1], "layer_models must be an object, got a list"),
        (("layer_models", "Conv"), "x", "layer_models.Conv must be an object"),
        (("layer_models", "Conv", "roofline"), "x", "layer_models.Conv.roofline must be an object, got the string"),
        (("layer_models", "Conv", "roofline", "learned", "roofs"), [], "roofs must be an object"),
        (("mapping",), "x", "mapping must be an object"),
        (("mapping", "fusions"), 3, "malformed mapping rules"),
        (("target", "runtime"), "", "target.runtime must not be empty"),
        (("target", "threads"), "one", "target.threads must be an integer"),
        (("name",), 7, "name must be a string"),
        (("schema_version",), "1", "expected the integer 1, not a string"),
        (("layer_models", "Conv", "roofline", "n_samples"), float("inf"), "Conv/roofline.*infinity"),  # fuzzer
    ],
)
def test_invalid_numbers_and_parts_are_named(
    bundle: dict[str, Any], tmp_path: Path, path: tuple[str, ...], value: Any, message: str
) -> None:
    doc = copy.deepcopy(bundle)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    p = tmp_path / "hw.json"
    p.write_text(json.dumps(doc))  # NaN and Infinity as Python's json writes them
    with pytest.raises(HardwareModelError, match=message) as info:
        HardwareModel.load(p)
    assert str(p) in str(info.value)


def test_mixed_parts_with_other_features_found_by_the_fuzzer(tmp_path: Path) -> None:
    """A mixed model whose refined part lacks a dimension's column failed at the first estimate (ValueError)."""
    from annette.fuzz import seed_bundle

    doc = seed_bundle()
    refined = doc["layer_models"]["Conv"]["mixed"]["learned"]["refined"]
    refined["feature_names"] = [n for n in refined["feature_names"] if n != "out_w"]
    with pytest.raises(HardwareModelError, match="Conv/mixed.*(other feature names|out_w)"):
        HardwareModel.load(write(tmp_path, doc))


def test_one_op_fusion_pattern_found_by_the_fuzzer(tmp_path: Path) -> None:
    """A fusion pattern of one op type failed in the mapper at the first estimate (IndexError)."""
    from annette.fuzz import seed_bundle

    doc = seed_bundle()
    doc["mapping"]["fusions"][0]["pattern"] = ["Conv"]
    with pytest.raises(HardwareModelError, match=r"fusion pattern \['Conv'\] must chain at least two"):
        HardwareModel.load(write(tmp_path, doc))


def test_element_bits_beyond_64_found_by_the_fuzzer(bundle: dict[str, Any], tmp_path: Path) -> None:
    """element_bits.weights = 1e308 loaded and made every estimate infinite."""
    doc = copy.deepcopy(bundle)
    doc["element_bits"] = {"activations": 8.0, "weights": 1e308}
    with pytest.raises(HardwareModelError, match=r"element_bits.weights must be at most 64.0, got 1e\+308"):
        HardwareModel.load(write(tmp_path, doc))
