"""The converted original-ANNETTE bundles: exact agreement with the legacy path where the semantics coincide,
every other difference explained, the shipped files regenerated exactly, and closed forms of the bundle
features the conversion needs (element bits, MAC work, replication, compute-bound-only refinement, Base)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from annette.convert.legacy_bundle import LEGACY_SOURCES, build_legacy_bundle
from annette.convert.legacy_check import compare
from annette.errors import HardwareModelError
from annette.estimate import estimate
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.hardware import HardwareModel
from annette.layers import LayerModel
from annette.layers.features import FEATURE_NAMES, Features

LEGACY = Path(__file__).resolve().parents[1].parent / "shared" / "legacy-annette"
needs_legacy = pytest.mark.skipif(not LEGACY.is_dir(), reason=f"shared legacy-annette data not found at {LEGACY}")

# (graph, bundle) pairs whose layers all have the same semantics in both paths: totals must agree exactly
# (up to float rounding) once the original's DataInput layers (graph inputs in annette) are left out.
EXACT = [
    ("vgg16-7", "annette-dnndk"), ("cf_landmark", "annette-dnndk"), ("tf_mobilenetv1", "annette-dnndk"),
    ("mobilenet_v1", "annette-dnndk"), ("Resnet_original", "annette-ncs2"), ("mobile100", "annette-ncs2"),
    ("shunt1", "annette-ncs2"),
]  # fmt: skip
# graphs with each kind of documented difference (Add/Concat first input only, ConvPool, PyTorch-exported
# depthwise kernels, Softplus split, constant operands, depthwise convolutions called Conv)
EXPLAINED = ["cf_resnet50", "cf_squeezenet", "pt_mnasnet0_5", "dk_yolov4", "MobileNetV3", "tf_mobilenetv2", "vgg16-7"]


def _files(bundle: str, kind: str) -> tuple[Path, Path]:
    src = LEGACY_SOURCES[bundle]
    return LEGACY / src.layer_models[kind], LEGACY / src.mapping


@needs_legacy
@pytest.mark.parametrize("kind", ["roofline", "refined"])
@pytest.mark.parametrize(("graph", "bundle"), EXACT)
def test_exact_agreement_where_semantics_coincide(graph: str, bundle: str, kind: str) -> None:
    c = compare(LEGACY / "graphs" / f"{graph}.json", HardwareModel.load(bundle), kind, *_files(bundle, kind))
    assert c.expected_exact, dict(c.reasons)
    assert c.legacy_input_ms > 0  # the original estimates its DataInput layer
    assert abs(c.rel_error) < 1e-9, (c.legacy_ms, c.legacy_input_ms, c.bundle_ms)


@needs_legacy
@pytest.mark.parametrize("bundle", list(LEGACY_SOURCES))
@pytest.mark.parametrize("graph", EXPLAINED)
def test_every_difference_is_explained(graph: str, bundle: str) -> None:
    hw = HardwareModel.load(bundle)
    for kind in ("roofline", "refined"):
        c = compare(LEGACY / "graphs" / f"{graph}.json", hw, kind, *_files(bundle, kind))
        assert c.n_unsupported == 0
        assert "unexplained" not in c.reasons and "fusion differs" not in c.reasons, c.diffs
        assert len(c.diffs) < 0.5 * c.n_layers  # most layers agree to 1e-9


@needs_legacy
def test_known_differences_are_reported() -> None:
    dnndk, ncs2 = HardwareModel.load("annette-dnndk"), HardwareModel.load("annette-ncs2")
    resnet = LEGACY / "graphs" / "cf_resnet50.json"
    c = compare(resnet, dnndk, "roofline", *_files("annette-dnndk", "roofline"))
    assert c.reasons["first input only"] == 16  # the 16 residual Adds: Base counts one input on DNNDK
    c = compare(resnet, ncs2, "roofline", *_files("annette-ncs2", "roofline"))
    assert c.reasons["ConvPool counts"] >= 1 and "first input only" not in c.reasons  # NCS2 has an Add entry
    yolo = compare(LEGACY / "graphs" / "dk_yolov4.json", ncs2, "roofline", *_files("annette-ncs2", "roofline"))
    assert "split layer" not in yolo.reasons  # Softplus = Exp + Power + Log, summed exactly


@needs_legacy
@pytest.mark.parametrize("bundle", list(LEGACY_SOURCES))
def test_shipped_file_is_what_the_converter_builds(bundle: str) -> None:
    assert build_legacy_bundle(bundle, LEGACY).to_dict() == HardwareModel.load(bundle).to_dict()


def test_dnndk_bundle_structure() -> None:
    hw = HardwareModel.load("annette-dnndk")
    assert hw.element_bits is not None and (hw.element_bits.activations, hw.element_bits.weights) == (8, 8)
    assert hw.default_type == "Base"
    ids = {r.id for r in (*hw.rules.removals, *hw.rules.fusions)}
    assert "remove:BatchNormalization@Conv" in ids and "fuse:Conv+Relu+MaxPool" in ids
    assert "fuse:Conv+Relu+AveragePool" not in ids  # ConvPool only for MAX pools on DNNDK
    assert "fuse:Conv+Relu+AveragePool" in {r.id for r in HardwareModel.load("annette-ncs2").rules.fusions}
    refined = hw.layer_models["Conv"]["refined"].to_dict()["learned"]
    # the original's h_par acts on output_shape[2] (NHWC width): annette dimension w
    assert refined["par"] == {"w": 8.0, "c": 16.0, "f": 16.0}
    assert hw.layer_models["Conv[dw]"]["roofline"].to_dict() == hw.layer_models["Base"]["roofline"].to_dict()


# -- closed forms of the bundle features used by the conversion ------------------------------------------------
def _conv_graph(cin: int, cout: int, hw_px: int, k: int = 3) -> Graph:
    x = TensorSpec("x", (1, cin, hw_px, hw_px))
    y = TensorSpec("y", (1, cout, hw_px, hw_px))
    r = TensorSpec("r", (1, cout, hw_px, hw_px))
    conv = Layer("conv", "Conv", (x,), (y,), (TensorSpec("w", (cout, cin, k, k)),),
                 {"kernel_shape": (k, k), "pads": (1, 1, 1, 1), "group": 1})
    relu = Layer("relu", "Relu", (y,), (r,))
    return Graph("g", (x,), (conv, relu), ("r",)).validate()


def test_dnndk_conv_relu_closed_form() -> None:
    """Conv+Relu on DNNDK: ops = 2·MACs of the conv only, bytes = (in + out + weights) at 8 bit."""
    hw = HardwareModel.load("annette-dnndk")
    cin, cout, px = 20, 24, 14
    macs = cout * cin * 9 * px * px
    nbytes = cin * px * px + cout * px * px + cout * cin * 9
    roofline = hw.layer_models["Conv"]["roofline"].to_dict()["learned"]["roofs"]
    op_s = 2 * roofline["peak_flops_per_s"]
    bw = roofline["bandwidth_bytes_per_s"]
    t = max(2 * macs / op_s, nbytes / bw) * 1000
    est = estimate(_conv_graph(cin, cout, px), hw, kind="roofline")
    assert est.n_executed == 1 and est.layers[0].covers == ("conv", "relu")
    assert math.isclose(est.total_ms, t, rel_tol=1e-12)
    # refined: compute-bound, so divided by the utilisation: w = 14 of par 8 (α .485896), c = 20 of 16 (α 1),
    # f = 24 of 16 (α .881308)
    refined = hw.layer_models["Conv"]["refined"].to_dict()["learned"]
    a = refined["alpha"]

    def eff(x: int, p: int, alpha: float) -> float:
        u = x / (math.ceil(x / p) * p)
        return 1 / ((1 - alpha) + alpha / u)

    e = eff(px, 8, a["w"]) * eff(cin, 16, a["c"]) * eff(cout, 16, a["f"])
    assert 2 * macs / op_s > nbytes / bw
    assert math.isclose(estimate(_conv_graph(cin, cout, px), hw, kind="refined").total_ms, t / e, rel_tol=1e-12)


def _model(params: dict, learned: dict, kind: str = "refined") -> LayerModel:
    return LayerModel.from_dict({"kind": kind, "params": params, "feature_names": list(FEATURE_NAMES),
                                 "n_samples": 0, "learned": learned})


def _row(**values: float) -> Features:
    x = np.zeros((1, len(FEATURE_NAMES)))
    for k, v in values.items():
        x[0, FEATURE_NAMES.index(k)] = v
    return Features(FEATURE_NAMES, x)


def test_replication_and_compute_bound_only() -> None:
    roofs = {"peak_flops_per_s": 1e9, "bandwidth_bytes_per_s": 1e9, "overhead_ms": 0.0}
    learned = {"roofs": roofs, "par": {"c": 16.0}, "alpha": {"c": 1.0}}
    base = {"overhead": False, "work": "macs", "traffic": ["bytes"]}
    plain = _model({**base}, learned)
    replicated = _model({**base, "replication": True}, learned)
    gated = _model({**base, "replication": True, "compute_bound_only": True}, learned)
    # c = 8 < par 16: utilisation 1/2 unless replicated
    row = _row(macs=1e6, bytes=1e5, in_c=8)
    assert plain.predict(row)[0] == pytest.approx(2.0)
    assert replicated.predict(row)[0] == pytest.approx(1.0)
    # c = 24: utilisation 24/32; unrefined compute 1 ms vs memory 0.9 ms -> refined; vs 1.2 ms -> not refined
    assert gated.predict(_row(macs=1e6, bytes=0.9e6, in_c=24))[0] == pytest.approx(1.0 / 0.75)
    assert gated.predict(_row(macs=1e6, bytes=1.2e6, in_c=24))[0] == pytest.approx(1.2)
    assert plain.predict(_row(macs=1e6, bytes=1.2e6, in_c=24))[0] == pytest.approx(1.0 / 0.75)


def test_traffic_columns_and_default_type() -> None:
    base = _model({"overhead": False, "traffic": ["input_bytes", "output_bytes"]},
                  {"roofs": {"peak_flops_per_s": None, "bandwidth_bytes_per_s": 1e6, "overhead_ms": 0.0}},
                  kind="roofline")
    # weights are not traffic for this model: 1000 + 500 bytes at 1 MB/s = 1.5 ms
    assert base.predict(_row(input_bytes=1000, output_bytes=500, weight_bytes=7000, bytes=8500))[0] == 1.5
    hw = HardwareModel.load("annette-ncs2")
    resolved = hw.resolve("LayerNormalization", "refined")
    assert resolved is not None and resolved.type == "Base" and "default" in resolved.note
    with pytest.raises(HardwareModelError, match="roof columns"):  # at load, before any predict
        _model({"overhead": False, "work": "nope"}, {"roofs": {"peak_flops_per_s": 1.0, "bandwidth_bytes_per_s": 1.0,
                                                           "overhead_ms": 0.0}}, kind="roofline").predict(_row())
