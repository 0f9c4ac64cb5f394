"""Hardware models of PyTorch eager on an NVIDIA H200, fitted from the single-layer tables in
``shared/data/h200-torch-eager`` (``micro_fp16.csv``, ``micro_fp32.csv``; see that folder's README).

Pipeline: the tables are imported with the bench importer (format ``h200-torch-eager``: one micro record
per row, its graph the matching single-layer network), relabelled with the row's **median** (see
:data:`LABEL`), and fitted with :func:`annette.fit.fit_records` over all batch sizes at once (batch is a
feature), with what eager mode is known to do as its recipe (:class:`annette.fit.Recipe`):

- mapping: nothing is fused in eager mode, and view ops (:data:`VIEW_OPS`: Reshape, Flatten, ...) launch no
  kernel, so they are removal rules;
- every other op pays a launch: types absent from the data use the :data:`GENERIC` model (the bundle's
  ``default_type``), a bandwidth roof plus a per-call overhead fitted on the elementwise and data-movement
  kinds of the table (add, concat, relu, sigmoid, hardswish, batchnorm); each estimated layer says so in its
  note. MatMul and Einsum (nn.Linear on 3-D inputs, attention) use the Gemm models.
- bytes are counted at the table's precision (``element_bits`` 16 or 32), whatever the dtype of the graph
  being estimated (torchvision exports fp32 graphs).

:func:`heldout_accuracy` holds out a seeded share of the rows of every kind, fits on the rest and scores
every layer-model kind on the held-out rows (MAPE, ±10 % share, Spearman); the build script stores those
figures in the bundle's ``quality["heldout"]``.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from annette.bench.external import import_table
from annette.bench.store import BenchStore
from annette.errors import HardwareModelError
from annette.estimate import estimate_many
from annette.evaluate.metrics import compute_metrics
from annette.fit import FitReport, Recipe, fit_records, held_out
from annette.hardware import HardwareModel
from annette.layers import KINDS, RooflineModel
from annette.layers.features import ElementBits, extract
from annette.mapping.apply import apply
from annette.mapping.rules import MappingRules, RemovalRule
from annette.records import BenchRecord

logger = logging.getLogger(__name__)

FORMAT = "h200-torch-eager"
TABLES: Mapping[str, str] = {"h200-torch-eager-fp16": "micro_fp16.csv", "h200-torch-eager-fp32": "micro_fp32.csv"}
PRECISION_BITS: Mapping[str, float] = {"fp16": 16.0, "fp32": 32.0}

# The label: the median of the 25 per-call times. A network in eager mode runs each op once per inference, so
# its latency is a sum of one call per op: its typical value is the sum of typical (median) calls, while the
# sum of minima is biased low by the median/min gap of every op (5-8 % per kind in these tables). Between
# configurations that the tables hold twice, median and minimum repeat about equally badly (launch-bound
# calls switch between two levels), so repeatability does not favour the minimum here.
LABEL = "median"

VIEW_OPS: tuple[str, ...] = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
GENERIC = "eager-generic"
GENERIC_FAMILIES: tuple[str, ...] = ("add", "concat", "relu", "sigmoid", "hardswish", "batchnorm")
# Types the tables lack whose work is a matrix product: estimated by the Gemm models
MAC_FALLBACKS: Mapping[str, str] = {"MatMul": "Gemm", "Einsum": "Gemm"}


def read_records(csv_path: str | Path, store_dir: str | Path | None = None) -> list[BenchRecord]:
    """The table's records through the bench importer and a store (``store_dir``, else a temporary one)."""
    if store_dir is None:
        with tempfile.TemporaryDirectory(prefix="annette-h200-") as tmp:
            return read_records(csv_path, tmp)
    import_table(csv_path, store_dir, format=FORMAT)
    with BenchStore(store_dir, create=False) as store:
        return list(store.records(status=None))


def relabel(record: BenchRecord, statistic: str = LABEL) -> BenchRecord:
    """The record with its label set to the table's ``median`` or ``min`` statistic."""
    m = record.measurement
    if m is None:
        return record
    values = {"median": m.median_ms, "min": m.min_ms}
    if statistic not in values:
        raise HardwareModelError(f"label statistic {statistic!r} is not one of {sorted(values)}")
    return replace(record, measurement=replace(m, label_ms=values[statistic]))


def _precision(records: Sequence[BenchRecord]) -> str:
    found = sorted({r.target.precision for r in records})
    if len(found) != 1 or found[0] not in PRECISION_BITS:
        raise HardwareModelError(f"expected the records of one table (fp16 or fp32), got precisions {found}")
    return found[0]


def fit_generic(records: Sequence[BenchRecord], rules: MappingRules) -> RooflineModel:
    """The model for types without data: bandwidth roof + per-call overhead on the elementwise kinds."""
    layers, times = [], []
    for r in records:
        if r.status != "ok" or r.family not in GENERIC_FAMILIES or r.graph is None or r.measurement is None:
            continue
        executed = apply(r.graph, rules).executed
        if len(executed) == 1:
            layers.append(executed[0])
            times.append(r.measurement.label_ms)
    if len(layers) < 10:
        raise HardwareModelError(f"only {len(layers)} records of {GENERIC_FAMILIES} to fit the generic model")
    # memory-bound: the compute roof counts MACs, which elementwise kernels have none of
    model = RooflineModel(overhead=True, work="macs", traffic=("bytes",))
    model.fit(extract(layers), np.asarray(times))
    return model


def eager_rules() -> MappingRules:
    """Eager mode's fixed mapping: nothing is fused, view ops launch no kernel (removed)."""
    return MappingRules(removals=tuple(RemovalRule(op) for op in VIEW_OPS),
                        settings={"eager": "no fusions; view ops launch no kernel (removed)"})


def fit_h200(
    records: Sequence[BenchRecord],
    *,
    name: str,
    seed: int = 0,
    holdout: float = 0.0,
    kinds: Sequence[str] = KINDS,
    provenance: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[HardwareModel, FitReport]:
    """Fit one table's records (all batch sizes) into an eager-mode bundle (see the module docstring)."""
    precision = _precision(records)
    labelled = [relabel(r) for r in records]
    rules = eager_rules()
    bits = PRECISION_BITS[precision]
    recipe = Recipe(rules=rules, models={GENERIC: {"roofline": fit_generic(labelled, rules)}},
                    fallbacks=MAC_FALLBACKS, default_type=GENERIC, element_bits=ElementBits(bits, bits))
    return fit_records(
        labelled,
        kinds=kinds,
        seed=seed,
        holdout=holdout,
        target_key=f"external/cuda:0/{precision}/b*/t1",
        name=name,
        provenance={"label_statistic": LABEL, **dict(provenance or {})},
        progress=progress,
        recipe=recipe,
    )


# -- held-out accuracy -----------------------------------------------------------------------------------
def split(records: Sequence[BenchRecord], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, test): a seeded ``fraction`` of the ok records of every family (the table's kind),
    families drawn in order of name (:func:`annette.fit.held_out`)."""
    ok = [i for i, r in enumerate(records) if r.status == "ok"]
    test = {ok[j] for j in held_out([records[i] for i in ok], fraction, seed, by_name=True)}
    return [i for i in ok if i not in test], sorted(test)


def heldout_accuracy(
    records: Sequence[BenchRecord],
    *,
    fraction: float = 0.2,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit on all but a seeded ``fraction`` of each kind's rows; score every layer-model kind on the rest.

    Returns ``{"label", "fraction", "seed", "n_train", "n_test", "by_kind": {model kind: {"all": metrics,
    "<table kind>": metrics, ...}}}`` with metrics as :meth:`Metrics.to_dict` (MAPE and ±10 % in percent,
    Spearman), each held-out row estimated end to end (its single-layer graph through the bundle).
    """
    train_idx, test_idx = split(records, fraction, seed)
    hw, _ = fit_h200([records[i] for i in train_idx], name="heldout", seed=seed, kinds=kinds, progress=progress)
    test = [relabel(records[i]) for i in test_idx]
    graphs = [r.graph for r in test]
    if any(g is None for g in graphs):
        raise HardwareModelError("held-out records without graphs")
    measured = np.array([r.measurement.label_ms for r in test if r.measurement is not None])
    families = np.array([r.family for r in test])
    out: dict[str, Any] = {}
    for kind in kinds:
        est = np.array([e.total_ms for e in estimate_many([g for g in graphs if g is not None], hw, kind=kind)])
        per: dict[str, Any] = {"all": compute_metrics(measured, est).to_dict()}
        for family in sorted(set(families.tolist())):
            sel = families == family
            per[family] = compute_metrics(measured[sel], est[sel]).to_dict()
        out[kind] = per
    return {
        "label": LABEL,
        "fraction": fraction,
        "seed": seed,
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "by_kind": out,
    }


def repeatability(csv_path: str | Path) -> dict[str, Any]:
    """The noise floor of the table: configurations it holds twice, first vs second row, per statistic."""
    keys = ("kind", "batch", "in_c", "in_h", "in_w", "out_c", "kernel", "stride", "padding", "groups", "dtype")
    first: dict[tuple[str, ...], dict[str, str]] = {}
    pairs: list[tuple[dict[str, str], dict[str, str]]] = []
    with Path(csv_path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["status"] != "ok":
                continue
            key = tuple(row[k] for k in keys)
            if key in first:
                pairs.append((first.pop(key), row))
            else:
                first[key] = row
    out: dict[str, Any] = {"n_pairs": len(pairs)}
    if pairs:
        for stat in ("median_ms", "min_ms"):
            a = [float(p[0][stat]) for p in pairs]
            b = [float(p[1][stat]) for p in pairs]
            out[stat] = compute_metrics(a, b).to_dict()
    return out
