"""Legacy layer-model JSON (``database/models/layer/*.json``) and the per-layer roofline estimators.

A layer-model file is a flat object: the reserved keys ``name``, ``op_s``, ``bandwidth`` and ``architecture``
(never used by any estimator) plus one entry per layer type. Entries are parsed into :class:`LayerEntry`
with the values the original actually uses (see :func:`parse_entry`), and estimated by
:func:`estimate_layer` with the same floating-point operations in the same order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from annette.errors import LegacyFormatError
from annette.legacy.jsonfile import JsonSource, read_json_object
from annette.legacy.layers import (
    EFFICIENCY_DIMS,
    Counts,
    Number,
    compute_counts,
    dim_efficiency,
    layer_class,
    unrolled_dims,
)

log = logging.getLogger(__name__)

EST_TYPES = ("roofline", "refined_roofline", "statistical", "mixed")
RESERVED_KEYS = ("name", "op_s", "bandwidth", "architecture")
DIMENSIONS = ("h", "w", "c", "f")
DEFAULT_BITS = 8


@dataclass(frozen=True)
class DimParams:
    """Unrolling of one dimension: parallelism ``par`` and blend ``alpha`` (None where absent)."""

    par: Number | None = None
    alpha: Number | None = None


@dataclass(frozen=True)
class LayerEntry:
    """One layer-model entry, with the values the original's estimator object actually uses.

    ``bit_act``/``bit_weights``/``dims`` are *effective*: an entry without ``architecture`` (or a
    ``statistical`` entry, whose architecture the original never passes on) uses 8/8 bits and no unrolling.
    """

    key: str
    name: str
    layer_type: str
    est_type: str
    op_s: Number
    bandwidth: Number
    bit_act: Number | None = DEFAULT_BITS
    bit_weights: Number | None = DEFAULT_BITS
    dims: Mapping[str, DimParams] = field(default_factory=dict)
    est_model: str | None = None
    est_dict: Mapping[str, Any] | None = None
    y_val: str | None = None
    architecture_ignored: bool = False

    @property
    def layer_class(self) -> str:
        return layer_class(self.layer_type)


@dataclass(frozen=True)
class LayerModel:
    """A parsed layer-model file: entries keyed by ``layer_type`` (a later entry of the same type wins)."""

    name: str
    entries: Mapping[str, LayerEntry]
    source: str = "<dict>"
    top_level: Mapping[str, Any] = field(default_factory=dict)
    duplicate_keys: tuple[str, ...] = ()

    def entry_for(self, layer_type: str, layer_name: str) -> LayerEntry:
        """The entry that estimates a layer of ``layer_type``: its own, else ``Base``."""
        entry = self.entries.get(layer_type) or self.entries.get("Base")
        if entry is None:
            raise LegacyFormatError(
                f"layer model {self.name!r} ({self.source}) has no entry for type {layer_type!r} (layer "
                f"{layer_name!r}) and no 'Base' entry to fall back to; entries: {', '.join(self.entries)}"
            )
        return entry


def _number(value: Any, where: str) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LegacyFormatError(f"{where}: expected a number, got {value!r}")
    return value


def _required(raw: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise LegacyFormatError(f"{where}: missing key {key!r} (present: {', '.join(raw)})")
    return raw[key]


def parse_entry(key: str, raw: Any, source: str = "<dict>") -> LayerEntry:
    """Parse one entry as ``Layer_model.from_json`` + ``add_layer`` + the class constructors do.

    ``mixed`` and ``refined_roofline`` take the entry's ``architecture`` (required); ``statistical`` drops it
    (the original calls ``add_layer`` without it); ``roofline`` takes it when present. A missing or empty
    architecture means ``{"bit_act": 8, "bit_weights": 8}``.
    """
    where = f"{source}: layer-model entry {key!r}"
    if not isinstance(raw, dict):
        raise LegacyFormatError(f"{where}: expected an object, got {type(raw).__name__}")
    est_type = _required(raw, "est_type", where)
    if not isinstance(est_type, str):
        raise LegacyFormatError(f"{where}: 'est_type' should be one of {EST_TYPES}, got {est_type!r}")
    layer_type = _required(raw, "layer_type", where)
    if not isinstance(layer_type, str):
        raise LegacyFormatError(f"{where}: 'layer_type' should be a string, got {layer_type!r}")
    if est_type in ("mixed", "refined_roofline"):
        arch = _required(raw, "architecture", where)
    elif est_type == "statistical":
        arch = None
    else:
        arch = raw.get("architecture")
    if arch is not None and not isinstance(arch, dict):
        raise LegacyFormatError(f"{where}: 'architecture' should be an object or null, got {arch!r}")
    est_model = est_dict = None
    if est_type in ("mixed", "statistical"):
        est_model = _required(raw, "est_model", where)
        est_dict = _required(raw, "est_dict", where)
    bits: dict[str, Number | None] = {"bit_act": DEFAULT_BITS, "bit_weights": DEFAULT_BITS}
    dims: dict[str, DimParams] = {}
    if arch:
        bits = {b: _number(arch[b], f"{where}: architecture.{b}") if b in arch else None for b in bits}
        for d in DIMENSIONS:
            par, alpha = arch.get(f"{d}_par"), arch.get(f"{d}_alpha")
            if par is not None or alpha is not None:
                dims[d] = DimParams(
                    par=None if par is None else _number(par, f"{where}: architecture.{d}_par"),
                    alpha=None if alpha is None else _number(alpha, f"{where}: architecture.{d}_alpha"),
                )
    y_val = raw.get("y_val")
    return LayerEntry(
        key=key,
        name=str(raw.get("name", key)),
        layer_type=layer_type,
        est_type=est_type,
        op_s=_number(_required(raw, "op_s", where), f"{where}: op_s"),
        bandwidth=_number(_required(raw, "bandwidth", where), f"{where}: bandwidth"),
        bit_act=bits["bit_act"],
        bit_weights=bits["bit_weights"],
        dims=dims,
        est_model=None if est_model is None else str(est_model),
        est_dict=dict(est_dict) if isinstance(est_dict, dict) else None,
        y_val=None if y_val is None else str(y_val),
        architecture_ignored=est_type == "statistical" and bool(raw.get("architecture")),
    )


def load_layer_model(source: JsonSource | LayerModel) -> LayerModel:
    """Load a legacy layer-model file (path or parsed dict). Duplicate JSON keys: the last one wins."""
    if isinstance(source, LayerModel):
        return source
    data, label, duplicates = read_json_object(source, "layer model")
    entries: dict[str, LayerEntry] = {}
    for key, raw in data.items():
        if key in RESERVED_KEYS:
            continue
        entry = parse_entry(key, raw, label)
        entries[entry.layer_type] = entry  # stored under layer_type, a later one replaces an earlier one
    if not entries:
        raise LegacyFormatError(f"{label}: not a legacy layer model: no layer entries besides {RESERVED_KEYS}")
    return LayerModel(
        name=str(data.get("name", label)),
        entries=entries,
        source=label,
        top_level={k: data[k] for k in RESERVED_KEYS if k in data},
        duplicate_keys=duplicates,
    )


# -- estimation ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerTime:
    """One layer's estimate under one entry."""

    time_ms: float
    counts: Counts
    op_roof_s: float
    data_roof_s: float
    eff: float | None = None  # the utilisation the roofline was divided by (None: not refined)
    note: str | None = None  # why the result is not what the entry's est_type asks for

    @property
    def bound(self) -> str:
        return "op" if self.op_roof_s > self.data_roof_s else "data"


def _bits(entry: LayerEntry, name: str) -> tuple[Number, Number]:
    if entry.bit_act is None or entry.bit_weights is None:
        missing = "bit_act" if entry.bit_act is None else "bit_weights"
        raise LegacyFormatError(
            f"layer-model entry {entry.key!r} (estimating layer {name!r}): architecture has no {missing!r}"
        )
    return entry.bit_act, entry.bit_weights


def _div(num: Number, den: Number, what: str, entry: LayerEntry, name: str) -> float:
    if den == 0:
        raise LegacyFormatError(f"layer-model entry {entry.key!r} has {what} 0: cannot estimate layer {name!r}")
    return num / den


def roofline(entry: LayerEntry, counts: Counts, name: str) -> tuple[float, float, float]:
    """``estimate_roofline``: (time_ms, op_roof [s], data_roof [s]) with the entry's bits."""
    bit_act, bit_weights = _bits(entry, name)
    data_bytes = ((counts.num_inputs + counts.num_outputs) * bit_act + counts.num_weights * bit_weights) / 8
    data_roof = _div(data_bytes, entry.bandwidth, "bandwidth", entry, name)
    op_roof = _div(counts.num_ops, entry.op_s, "op_s", entry, name)
    return max(op_roof, data_roof) * 1000, op_roof, data_roof


def efficiencies(entry: LayerEntry, cls: str, name: str, layer: Mapping[str, Any]) -> dict[str, float]:
    """Per-dimension utilisation (``compute_eff``) of a class that has one, in the original's order."""
    replication = EFFICIENCY_DIMS[cls][1]
    out: dict[str, float] = {}
    for d, unrolled in unrolled_dims(cls, name, layer):
        p = entry.dims.get(d, DimParams())
        out[d] = dim_efficiency(unrolled, p.par, p.alpha, replication, f"layer {name!r} dimension {d}")
    return out


def estimate_layer(entry: LayerEntry, name: str, layer: Mapping[str, Any]) -> LayerTime:
    """Estimate one layer dict with one entry, reproducing the original class methods.

    * ``roofline``: ``max(ops/op_s, bytes/bandwidth) * 1000``.
    * ``refined_roofline``: the roofline divided by the product of the per-dimension efficiencies, only if
      the layer is op-bound (strictly) and its class has ``compute_eff``; ``Input``/``Add`` classes and
      classes without ``compute_eff`` stay at the roofline. ``ConvPool`` uses its own dimensions.
    * ``statistical``/``mixed``: the ``.sav`` regressors were never published and are never unpickled here;
      like the original when an estimator has no model, the roofline value is kept (``note`` says so), and
      ``mixed`` then applies its refinement (``ConvPool``: h·c·f only; ``DepthwiseSepConv``: x0.535 for 3x3).
    """
    cls = entry.layer_class
    counts = compute_counts(cls, name, layer)
    # ConvPoolLayer computes its efficiencies in compute_parameters, i.e. for every estimation type
    conv_pool_eff = efficiencies(entry, cls, name, layer) if cls == "ConvPool" else None
    time_ms, op_roof, data_roof = roofline(entry, counts, name)
    est_type, note = entry.est_type, None
    if est_type not in EST_TYPES:
        note = f"entry {entry.key!r}: unknown est_type {est_type!r}, estimated as roofline"
    elif est_type in ("statistical", "mixed"):
        note = (
            f"entry {entry.key!r} ({est_type}): statistical model {entry.est_model!r} is not available "
            "(never published); kept the roofline value"
        )
    if est_type not in ("refined_roofline", "mixed") or cls in ("Input", "Add"):
        return LayerTime(time_ms, counts, op_roof, data_roof, None, note)
    if conv_pool_eff is not None:
        dims = ("h", "w", "c", "f") if est_type == "refined_roofline" else ("h", "c", "f")
        eff: float | None = math.prod(conv_pool_eff[d] for d in dims)  # 1 * h * ...: the original's order
    elif cls in EFFICIENCY_DIMS:
        eff = math.prod(efficiencies(entry, cls, name, layer).values())
    else:
        log.debug("layer %r: estimator class %s has no efficiency; %s is not refined", name, cls, est_type)
        eff = None
    if eff is not None and op_roof > data_roof:
        time_ms = time_ms / eff
    else:
        eff = None  # data-bound layers are never refined
    if est_type == "mixed" and cls == "DepthwiseSepConv":
        kernel = layer.get("kernel_shape") or []
        if len(kernel) >= 2 and kernel[0] == 3 and kernel[1] == 3:
            time_ms = time_ms * 0.535  # DepthwiseSepConvLayer.estimate_mixed: aiWare-specific factor
    return LayerTime(time_ms, counts, op_roof, data_roof, eff, note)
