"""The H200 PyTorch-eager bundles: eager mapping (no fusions, views removed, a launch per op), generic model
for types absent from the data, precision-true bytes, recorded held-out accuracy, and a held-out fit on a
subset of the fp32 table that must reach the accuracy measured for it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from annette.bench.external import h200_records
from annette.convert.h200 import GENERIC, LABEL, heldout_accuracy, relabel, repeatability, split
from annette.errors import UnsupportedLayerError
from annette.estimate import estimate
from annette.graph.ir import Graph, Layer, TensorSpec
from annette.hardware import HardwareModel

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "h200-torch-eager"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared H200 tables not found at {DATA}")
BUNDLES = ("h200-torch-eager-fp16", "h200-torch-eager-fp32")
# held-out MAPE (%) of the mixed model on the subset of test_heldout_fit_on_a_subset: measured 18.7 (seed 0;
# 18.7-19.5 over seeds 0-2; roofline 21-24). The table's own repeatability (configurations it holds twice)
# is 24-35 % MAPE, so the bound leaves a margin for library changes, not for noise in the test.
SUBSET_MIXED_MAPE_BOUND = 25.0


def _net(dtype: str = "float32") -> Graph:
    x = TensorSpec("x", (2, 16, 8, 8), dtype)
    c = TensorSpec("c", (2, 32, 8, 8), dtype)
    r = TensorSpec("r", (2, 32, 8, 8), dtype)
    f = TensorSpec("f", (2, 2048), dtype)
    s = TensorSpec("s", (2, 2048), dtype)
    conv = Layer("conv", "Conv", (x,), (c,), (TensorSpec("w", (32, 16, 3, 3), dtype),),
                 {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1), "group": 1})
    layers = (
        conv,
        Layer("relu", "Relu", (c,), (r,)),
        Layer("flatten", "Flatten", (r,), (f,), attrs={"axis": 1}),
        Layer("softmax", "Softmax", (f,), (s,), attrs={"axis": 1}),
    )
    return Graph("net", (x,), layers, ("s",)).validate()


@pytest.mark.parametrize("name", BUNDLES)
def test_eager_mapping_and_generic_fallback(name: str) -> None:
    hw = HardwareModel.load(name)
    with pytest.raises(UnsupportedLayerError, match="generic default model"):  # a guess, refused under strict
        estimate(_net(), hw, kind="mixed", strict=True)
    est = estimate(_net(), hw, kind="mixed", strict=True, allow_generic=True)
    # eager: Conv and Relu are two launches, Flatten is a view (removed), Softmax has no data -> generic model
    assert [x.type for x in est.layers] == ["Conv", "Relu", "Softmax"]
    assert est.removed == ("flatten",)
    softmax = est.layers[-1]
    assert softmax.model == f"{GENERIC}/roofline" and GENERIC in softmax.note
    assert softmax.generic and est.n_generic == 1 and est.generic_ms == softmax.time_ms
    generic = hw.layer_models[GENERIC]["roofline"].to_dict()["learned"]["roofs"]
    assert generic["overhead_ms"] > 0.003  # every eager call pays a launch (the tables' fastest calls: ~13 µs)
    assert softmax.time_ms is not None and softmax.time_ms >= generic["overhead_ms"]
    assert not hw.rules.fusions
    assert hw.resolve("MatMul", "mixed") is not None and hw.resolve("MatMul", "mixed").type == "Gemm"  # type: ignore[union-attr]


@pytest.mark.parametrize("name", BUNDLES)
def test_bytes_at_the_bundle_precision(name: str) -> None:
    """The target runs at its own precision: an fp32 and an fp16 graph of one network estimate the same."""
    hw = HardwareModel.load(name)
    assert hw.element_bits is not None and hw.element_bits.activations == (16 if name.endswith("16") else 32)
    a = estimate(_net("float32"), hw, kind="roofline")
    b = estimate(_net("float16"), hw, kind="roofline")
    assert a.total_ms == pytest.approx(b.total_ms, rel=1e-12)


@pytest.mark.parametrize("name", BUNDLES)
def test_recorded_heldout_accuracy(name: str) -> None:
    q = HardwareModel.load(name).quality
    held = q.heldout
    assert held is not None and held.label == LABEL == "median" and held.fraction == 0.2
    assert set(held.by_kind) == {"roofline", "refined", "statistical", "mixed"}
    for kind, per in held.by_kind.items():
        assert {"all", "conv", "gemm", "add", "relu"} <= set(per), kind
        assert 0 < (per["all"].mape_pct or 0) < 60 and (per["all"].spearman or 0) > 0.7
    # the mixed model is the best overall (the paper's finding)
    mixed, roofline = held.by_kind["mixed"]["all"].mape_pct, held.by_kind["roofline"]["all"].mape_pct
    assert mixed is not None and roofline is not None and mixed <= roofline
    assert q.end_to_end["mixed"].mape == pytest.approx(mixed / 100)


def test_split_is_seeded_and_per_kind() -> None:
    from annette.records import BenchRecord, Target

    t = Target("external", "cuda:0", "x", "torch", "0", "eager", 1, "fp32")
    recs = [BenchRecord(f"id{i}", "micro", "conv" if i % 3 else "add", {}, t, "ok") for i in range(60)]
    train, test = split(recs, 0.2, seed=3)
    assert split(recs, 0.2, seed=3) == (train, test) and split(recs, 0.2, seed=4) != (train, test)
    assert sorted(train + test) == list(range(60))
    assert sum(1 for i in test if recs[i].family == "add") == 4 and len(test) == 12


@needs_data
def test_repeatability_of_the_table() -> None:
    noise = repeatability(DATA / "micro_fp32.csv")
    assert noise["n_pairs"] >= 5
    assert noise["median_ms"]["n"] == noise["n_pairs"] and noise["median_ms"]["mape_pct"] > 0


@needs_data
@pytest.mark.slow
def test_heldout_fit_on_a_subset(tmp_path: Path) -> None:
    """Fit on 80 % of a subset of the fp32 table (every non-conv row, every 6th conv row), score the rest."""
    src = DATA / "micro_fp32.csv"
    subset = tmp_path / "subset.csv"
    with src.open(newline="") as fin, subset.open("w", newline="") as fout:
        reader = csv.DictReader(fin)
        writer = csv.DictWriter(fout, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for i, row in enumerate(reader):
            if row["kind"] != "conv2d" or i % 6 == 0:
                writer.writerow(row)
    records = list(h200_records(subset))
    assert all(relabel(r).measurement.label_ms == r.measurement.median_ms for r in records)  # type: ignore[union-attr]
    res = heldout_accuracy(records, fraction=0.2, seed=0, kinds=("roofline", "mixed"))
    mixed, roofline = res["by_kind"]["mixed"]["all"], res["by_kind"]["roofline"]["all"]
    assert mixed["mape_pct"] < SUBSET_MIXED_MAPE_BOUND, mixed
    assert mixed["spearman"] > 0.8 and roofline["spearman"] > 0.7
    assert np.isfinite(roofline["mape_pct"])
