"""Closed forms of the roofline and refined-roofline models, and of the shared feature extractor."""

from __future__ import annotations

import numpy as np
import pytest

from annette.errors import HardwareModelError
from annette.graph.ir import Layer, TensorSpec
from annette.layers import RefinedRooflineModel, RooflineModel
from annette.layers.features import (
    ALL_FEATURE_NAMES,
    FEATURE_NAMES,
    FEATURES,
    Features,
    executed_type,
    extract,
    type_fallbacks,
)
from annette.layers.layertype import LayerType, member_key, member_op
from annette.layers.refined import dim_efficiency, efficiency
from annette.layers.roofline import Roofs
from annette.mapping.mapped import ExecutedLayer, inserted_layer


def test_dim_efficiency_closed_form() -> None:
    x = np.array([10, 16, 17, 1, 0])
    # 10 on 8 lanes: two passes of 8 → 10/16; 16 fills two passes; 17 needs three (24); 1 uses 1 of 8
    assert np.allclose(dim_efficiency(x, 8), [10 / 16, 1.0, 17 / 24, 1 / 8, 1.0])
    assert np.array_equal(dim_efficiency(x, 1), np.ones(5))


def test_efficiency_blends_with_alpha_and_multiplies_over_dimensions() -> None:
    sizes = {"c": np.array([10.0]), "f": np.array([20.0])}
    e_c, e_f = 10 / 16, 20 / 32
    assert efficiency(sizes, {"c": 8}, {"c": 0.0})[0] == 1.0
    assert efficiency(sizes, {"c": 8}, {"c": 1.0})[0] == pytest.approx(e_c)
    assert efficiency(sizes, {"c": 8}, {"c": 0.5})[0] == pytest.approx(1 / (0.5 + 0.5 / e_c))
    both = efficiency(sizes, {"c": 8, "f": 16}, {"c": 0.5, "f": 1.0})[0]
    assert both == pytest.approx(1 / (0.5 + 0.5 / e_c) * e_f)


def test_roofs_time_and_bound() -> None:
    roofs = Roofs(peak_flops_per_s=1e9, bandwidth_bytes_per_s=1e8, overhead_ms=0.01)
    flops, nbytes = np.array([2e6, 1e3, 0.0]), np.array([1e3, 1e6, 10.0])
    # 2e6/1e9 s = 2 ms compute; 1e6/1e8 s = 10 ms memory; the last is all overhead
    assert np.allclose(roofs.time_ms(flops, nbytes), [2.01, 10.01, 0.01 + 1e-4])
    assert list(roofs.bound(flops, nbytes)) == ["compute", "memory", "overhead"]


def _table(flops: np.ndarray, nbytes: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> Features:
    X = np.zeros((len(flops), len(FEATURE_NAMES)))
    X[:, FEATURE_NAMES.index("flops")] = flops
    X[:, FEATURE_NAMES.index("bytes")] = nbytes
    for name, values in (extra or {}).items():
        X[:, FEATURE_NAMES.index(name)] = values
    return Features(FEATURE_NAMES, X)


def test_roofline_fit_recovers_peak_bandwidth_and_overhead() -> None:
    rng = np.random.default_rng(3)
    flops, nbytes = rng.uniform(1e4, 1e9, 200), rng.uniform(1e3, 1e8, 200)
    y = np.maximum(flops / 5e10, nbytes / 2e10) * 1e3 + 0.003
    m = RooflineModel().fit(_table(flops, nbytes), y)
    assert m.roofs_.peak_flops_per_s == pytest.approx(5e10, rel=1e-4)
    assert m.roofs_.bandwidth_bytes_per_s == pytest.approx(2e10, rel=1e-4)
    assert m.roofs_.overhead_ms == pytest.approx(0.003, rel=1e-3)


def test_roofline_without_flops_has_no_compute_roof() -> None:
    nbytes = np.linspace(1e4, 1e7, 50)
    m = RooflineModel().fit(_table(np.zeros(50), nbytes), nbytes / 4e9 * 1e3 + 0.001)
    assert m.roofs_.peak_flops_per_s is None
    assert m.roofs_.bandwidth_bytes_per_s == pytest.approx(4e9, rel=1e-4)


def test_refined_fit_recovers_par_and_alpha() -> None:
    rng = np.random.default_rng(4)
    n = 300
    c, f = rng.integers(1, 100, n).astype(float), rng.integers(1, 130, n).astype(float)
    flops, nbytes = rng.uniform(1e6, 1e9, n), rng.uniform(1e3, 1e5, n)
    eff = efficiency({"c": c, "f": f}, {"c": 8, "f": 16}, {"c": 0.6, "f": 1.0})
    y = np.maximum(flops / (4e10 * eff), nbytes / 1e10) * 1e3 + 0.002
    m = RefinedRooflineModel().fit(_table(flops, nbytes, {"in_c": c, "out_c": f, "out_h": 7, "out_w": 7}), y)
    assert m.par_ == {"c": 8.0, "f": 16.0}
    assert m.alpha_["c"] == pytest.approx(0.6, abs=1e-3) and m.alpha_["f"] == pytest.approx(1.0, abs=1e-3)
    assert m.roofs_.peak_flops_per_s == pytest.approx(4e10, rel=1e-3)


# -- features ------------------------------------------------------------------------------------------------
def T(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, tuple(shape))


CONV = Layer("conv", "Conv", (T("x", 1, 3, 8, 8),), (T("c", 1, 4, 8, 8),), (T("w", 4, 3, 3, 3), T("b", 4)),
             {"kernel_shape": (3, 3), "strides": (1, 1), "pads": (1, 1, 1, 1), "group": 1})
RELU = Layer("relu", "Relu", (T("c", 1, 4, 8, 8),), (T("y", 1, 4, 8, 8),))


def test_fused_row_counts_external_traffic_only() -> None:
    X = extract([ExecutedLayer("conv", (CONV, RELU))])
    row = dict(zip(X.names, X.values[0], strict=True))
    macs = 4 * 8 * 8 * 3 * 9
    assert row["macs"] == macs and row["flops"] == 2 * macs + 4 * 64  # conv + one op per relu element
    assert row["input_bytes"] == 4 * 3 * 64  # the intermediate tensor "c" never reaches memory
    assert row["output_bytes"] == 4 * 4 * 64
    assert row["weight_bytes"] == 4 * (4 * 3 * 9 + 4)
    assert row["bytes"] == row["input_bytes"] + row["output_bytes"] + row["weight_bytes"]
    assert (row["in_c"], row["in_h"], row["out_c"], row["kernel_h"], row["stride_w"]) == (3, 8, 4, 3, 1)
    assert (row["n_members"], row["n_inputs"], row["batch"]) == (2, 1, 1)
    assert (row["in_c_align"], row["out_c_align"]) == (1, 4)  # 3 and 4 channels
    assert X.names == ALL_FEATURE_NAMES == tuple(FEATURES) and all(FEATURES[n][0] for n in ALL_FEATURE_NAMES)
    assert set(FEATURE_NAMES) < set(ALL_FEATURE_NAMES)


def test_inserted_row_moves_its_tensor() -> None:
    ex = ExecutedLayer("conv", (CONV,))
    reorder = inserted_layer("ReorderInput", ex, "before", "r0")
    row = dict(zip(ALL_FEATURE_NAMES, extract([reorder]).values[0], strict=True))
    assert row["flops"] == 0 and row["bytes"] == 2 * 4 * 3 * 64 and row["n_members"] == 0
    assert executed_type(reorder) == "ReorderInput" and reorder.covers == () and reorder.anchor == "conv"


def test_rows_that_cannot_be_accounted_are_nan_and_reported() -> None:
    odd = Layer("odd", "MysteryOp", (T("x", 1, 4),), (T("y", 1, 4),))
    X = extract([ExecutedLayer("odd", (odd,)), ExecutedLayer("relu", (RELU,))])
    assert np.isnan(X.values[0]).all() and "MysteryOp" in X.errors[0]
    assert 1 not in X.errors and X.column("flops")[1] == 256


def test_alignment_and_column_selection() -> None:
    wide = Layer("c", "Conv", (T("x", 1, 48, 4, 4),), (T("y", 1, 96, 4, 4),), (T("w", 96, 48, 1, 1),))
    X = extract([ExecutedLayer("c", (wide,))])
    assert (X.column("in_c_align")[0], X.column("out_c_align")[0]) == (16, 32)
    old = X.select(FEATURE_NAMES)  # a model fitted on the first feature set takes just its columns
    assert old.names == FEATURE_NAMES and old.column("flops")[0] == X.column("flops")[0]
    with pytest.raises(HardwareModelError, match="warp"):
        X.select(("flops", "warp"))


def test_identical_layers_give_identical_rows() -> None:
    other = Layer("relu2", "Relu", (T("p", 1, 4, 8, 8),), (T("q", 1, 4, 8, 8),))
    X = extract([ExecutedLayer("relu", (RELU,)), ExecutedLayer("relu2", (other,))])
    assert np.array_equal(X.values[0], X.values[1])


def test_types_and_fallbacks() -> None:
    dw = Layer("dw", "Conv", (T("x", 1, 8, 8, 8),), (T("y", 1, 8, 8, 8),), (T("w", 8, 1, 3, 3),), {"group": 8})
    grouped = Layer("g", "Conv", (T("x", 1, 8, 8, 8),), (T("y", 1, 8, 8, 8),), (T("w", 8, 4, 3, 3),), {"group": 2})
    assert executed_type(ExecutedLayer("dw", (dw, RELU))) == "Conv[dw]+Relu"
    assert executed_type(ExecutedLayer("g", (grouped,))) == "Conv[grouped]"
    assert type_fallbacks("Conv[dw]+Relu") == ["Conv[dw]+Relu", "Conv[dw]", "Conv"]
    assert type_fallbacks("Gemm") == ["Gemm"]


def test_layer_type_builds_and_parses_type_strings() -> None:
    t = LayerType.parse("Conv[dw]+Relu")
    assert t == LayerType(("Conv[dw]", "Relu")) and str(t) == "Conv[dw]+Relu"
    assert (t.primary, t.base_op) == ("Conv[dw]", "Conv")
    assert t.fallbacks() == type_fallbacks("Conv[dw]+Relu")
    assert str(LayerType.joined(["Conv+BatchNormalization", "Relu"])) == "Conv+BatchNormalization+Relu"
    assert member_key("Conv", "grouped") == "Conv[grouped]" and member_key("Relu") == "Relu"
    assert member_op("Conv[grouped]") == "Conv" and member_op("Gemm") == "Gemm"
    single = LayerType.parse("ReorderInput")
    assert single.members == ("ReorderInput",) and single.fallbacks() == ["ReorderInput"]
