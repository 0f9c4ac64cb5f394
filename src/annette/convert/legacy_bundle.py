"""The original ANNETTE's layer and mapping models (DNNDK on a ZCU102, OpenVINO on an NCS2) as bundles.

One bundle per device holds two kinds: ``roofline`` from the ``*-roofline.json`` layer model and ``refined``
from ``*-ref_roofline.json`` (each kind from its own file, as the original estimates with one file at a
time), with the rules of the device's mapping model. Conversion, entry by entry:

- **Types**: a legacy entry estimates the annette executed-layer types of :data:`ENTRY_TYPES` (``Conv``
  also covers grouped convolutions and fused ``Conv+Relu``-like chains through the primary-member fallback;
  ``DepthwiseConv`` is ``Conv[dw]``; ``Pool`` every max/average/global pool; ``FullyConnected`` Gemm and
  MatMul); other legacy type names are ONNX op names already (``Add``, ``Exp``, ``Tanh`` ...). Every type no
  entry covers uses the ``Base`` entry (the bundle's ``default_type``), as the original does. ``Conv[dw]``
  without a ``DepthwiseConv`` entry, and fused conv+pool chains without a ``ConvPool`` entry, are given the
  ``Base`` model explicitly (otherwise they would fall back to ``Conv``).
- **Counts**: the original counts ``ops`` = 2 per MAC for convolutions and fully connected layers (features
  ``macs``, peak = op_s / 2; fused activations add no work), ``2 · outputs · kernel`` for pools (``flops`` =
  outputs · kernel, peak = op_s / 2) and ``outputs`` for Add (``flops``, peak = op_s). Bytes are elements
  times the entry's bits (``element_bits``: 8 on DNNDK, 16 on NCS2, whatever the graph's dtype); classes
  without weights in the original (Base, Add, Pool, every "other" type) count activations only
  (``traffic`` = input + output bytes) and have no compute roof.
- **Refinement**: the original's unrolled dimensions (NHWC shape indices) become annette's ``h``/``w``/``c``/
  ``f`` (e.g. the original's convolution ``h_par`` acts on ``output_shape[2]``, the output *width*: annette
  dimension ``w``); a missing alpha is 1 (plain utilisation); ``replication`` and ``compute_bound_only`` are
  the original's rules (a dimension below its parallelism is free, except in ConvPool; data-bound layers are
  never refined).
- **Mapping**: fusers are applied by the original in file order, once each, so a chain fuses only along
  increasing rule positions; every such chain becomes an annette fusion pattern (with ``pooling_type`` and
  Relu6 = ``Clip(0, 6)`` as conditions or op choices). A fuser that folds a ``BatchNorm`` into its primary
  becomes a removal rule (BatchNormalization after that op), so that its parameters are not counted, as in
  the original. A splitter (``Softplus -> Exp, Power, Log``) becomes one model whose bandwidth is the
  harmonic sum of its parts' (all data-bound).

``benchmarks/legacy_vs_bundle.py`` compares these bundles with the exact legacy path on the legacy graphs
and lists where and why they differ (see also :data:`DIFFERENCES`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annette
from annette.errors import HardwareModelError
from annette.graph.ir import AttrValue
from annette.hardware import HardwareModel, Overhead
from annette.layers import LayerModel
from annette.layers.features import FEATURE_NAMES, ElementBits
from annette.layers.layertype import LayerType
from annette.legacy.layer_model import LayerEntry, load_layer_model
from annette.legacy.layers import EFFICIENCY_DIMS
from annette.legacy.mapping import FuseCondition, MappingRule, load_mapping_model
from annette.mapping.rules import AttrCondition, FusionRule, MappingRules, RemovalRule
from annette.quality import BundleQuality
from annette.records import Target

logger = logging.getLogger(__name__)

BASE = "Base"
CONV_VARIANTS = ("Conv", "Conv[grouped]", "Conv[dw]")
POOLS: Mapping[str, tuple[str, ...]] = {"MAX": ("MaxPool", "GlobalMaxPool"), "AVG": ("AveragePool", "GlobalAveragePool")}

# legacy type -> ONNX op types (as layers and in mapping rules); any other name is taken as an ONNX op type
LEGACY_OPS: Mapping[str, tuple[str, ...]] = {
    "Conv": ("Conv",),
    "DepthwiseConv": ("Conv",),
    "ConvTranspose2d": ("ConvTranspose",),
    "Pool": (*POOLS["MAX"], *POOLS["AVG"]),
    "FullyConnected": ("Gemm", "MatMul"),
    "BatchNorm": ("BatchNormalization",),
    "Relu6": ("Clip",),
    "RealDiv": ("Div",),
}
# legacy entry type -> the annette executed-layer types it estimates, where not its LEGACY_OPS
ENTRY_TYPES: Mapping[str, tuple[str, ...]] = {"Base": (BASE,), "DepthwiseConv": ("Conv[dw]",)}
# entries with no annette layer: graph inputs are not layers, the original's statistical sub-types
NO_LAYER_TYPES = frozenset({"Input", "DataInput", "ConvPool", "DepthwiseSepConv"})
# Clip is the legacy Relu6 only with these bounds
RELU6_CONDITIONS: tuple[tuple[str, AttrValue], ...] = (("min", 0.0), ("max", 6.0))

# legacy class -> (work feature, legacy ops per unit of it); classes not listed have no compute roof
CLASS_WORK: Mapping[str, tuple[str, int]] = {
    "Conv": ("macs", 2),
    "ConvTranspose": ("macs", 2),
    "DepthwiseConv": ("macs", 2),
    "DepthwiseSepConv": ("macs", 2),
    "ConvPool": ("macs", 2),
    "FullyConnected": ("macs", 2),
    "Pool": ("flops", 2),
    "Add": ("flops", 1),
}
# classes whose bytes include their weights in the original
WEIGHTED_CLASSES = frozenset({"Conv", "ConvTranspose", "DepthwiseConv", "DepthwiseSepConv", "ConvPool", "FullyConnected"})

# The feature columns the converted models read (a bundle keeps working when annette extracts more)
FEATURES_USED: tuple[str, ...] = tuple(
    n for n in FEATURE_NAMES
    if n in {"flops", "macs", "input_bytes", "output_bytes", "weight_bytes", "bytes", "in_c", "out_c", "out_h", "out_w"}
)

# The original's unrolled dimensions (shape key, NHWC index) -> annette refined-roofline dimension
_NHWC_DIMS: Mapping[tuple[str, int], str] = {
    ("output_shape", 1): "h",
    ("output_shape", 2): "w",
    ("output_shape", 3): "f",
    ("input_shape", 3): "c",
    ("kernel_shape", 2): "c",
    ("kernel_shape", 3): "f",
}
_FC_DIMS: Mapping[tuple[str, int], str] = {("input_shape", 1): "c", ("output_shape", 1): "f"}

DIFFERENCES: tuple[str, ...] = (
    "DataInput layers: the original estimates every graph input as a layer (its output bytes); in annette "
    "graph inputs are not layers, so bundle totals leave that time out.",
    "Concat (and any other multi-input layer estimated by Base, e.g. Add on DNNDK, Mul): the original counts "
    "only the first input (its flat input_shape); annette counts every input.",
    "Fused Conv+Pool (ConvPool): the original reconstructs the input size as conv output x stride product, "
    "and, where ConvPool falls back to Base (NCS2), counts the conv's output instead of the pool's; annette "
    "counts the actual input and the pool's output.",
    "Operands that annette imports as constants (a binary op with one parent gets a scalar constant) are "
    "not weights in the original; Base-estimated types count activations only, Add counts its inputs as "
    "annette sees them (the original doubles the first input).",
    "Depthwise convolutions the legacy file calls Conv (kernel [kh, kw, 1, C]) are Conv[dw] in annette, "
    "estimated by the DepthwiseConv entry (Base on DNNDK); grouped convolutions unroll c = all input channels "
    "instead of the original's channels per group.",
    "ConvTranspose: the original counts ops with the output's spatial size, annette's MACs with the input's.",
    "MatMul is estimated by the FullyConnected entry (the original used Base where no MatMul entry exists).",
    "Fusion patterns match op types, so a depthwise Conv followed by a pool also fuses (the original's "
    "ConvPool has primary Conv only), and a fusion checks single consumers on the way (the original only the "
    "primary's child count).",
)


@dataclass(frozen=True)
class LegacySource:
    """Where one device's legacy models live (relative to the legacy-annette folder) and what it describes."""

    layer_models: Mapping[str, str]  # annette kind -> layer-model file
    mapping: str
    target: Target
    description: str


def _target(device: str, model: str, runtime: str, provider: str, precision: str) -> Target:
    return Target(
        backend="external",
        device=device,
        device_model=model,
        runtime=runtime,
        runtime_version="unknown (ANNETTE, 2021)",
        provider=provider,
        threads=1,
        precision=precision,
        batch=1,
        extra={"source": "legacy-annette"},
    )


LEGACY_SOURCES: Mapping[str, LegacySource] = {
    "annette-dnndk": LegacySource(
        layer_models={"roofline": "models/layer/dnndk-roofline.json", "refined": "models/layer/dnndk-ref_roofline.json"},
        mapping="models/mapping/dnndk.json",
        target=_target("zcu102", "Xilinx Zynq UltraScale+ ZCU102 (DPU)", "dnndk", "DPU", "int8"),
        description="Xilinx ZCU102 with DNNDK (8-bit), the original ANNETTE roofline and refined-roofline models",
    ),
    "annette-ncs2": LegacySource(
        layer_models={"roofline": "models/layer/ncs2-roofline.json", "refined": "models/layer/ncs2-ref_roofline.json"},
        mapping="models/mapping/ov.json",
        target=_target("myriad", "Intel Neural Compute Stick 2 (Myriad X VPU)", "openvino-myriad", "MYRIAD", "fp16"),
        description="Intel NCS2 with OpenVINO (16-bit), the original ANNETTE roofline and refined-roofline models",
    ),
}

PROVENANCE: Mapping[str, str] = {
    "origin": "original ANNETTE reference implementation, database/models (layer and mapping models)",
    "repository": "https://github.com/embedded-machine-learning/annette",
    "paper": "M. Wess, M. Ivanov, C. Unger, A. Nookala, A. Wendt, A. Jantsch: ANNETTE: Accurate Neural Network "
    "Execution Time Estimation with Stacked Models. IEEE Access 9, 2021",
    "license": "Apache-2.0 (Copyright 2020 Christian Doppler Laboratory for Embedded Machine Learning)",
}


# -- layer models ----------------------------------------------------------------------------------------
def _annette_dims(cls: str) -> dict[str, str]:
    """legacy dimension -> annette dimension for a class that the original refines."""
    table = _FC_DIMS if cls == "FullyConnected" else _NHWC_DIMS
    out = {}
    for d, key, index in EFFICIENCY_DIMS[cls][0]:
        if (key, index) not in table:
            raise HardwareModelError(f"legacy class {cls}: no annette dimension for {key}[{index}] (dimension {d})")
        out[d] = table[key, index]
    return out


def _roofs(entry: LayerEntry) -> tuple[dict[str, Any], str, list[str]]:
    """(roofs, work column, traffic columns) of an entry."""
    cls = entry.layer_class
    work, ops_per_unit = CLASS_WORK.get(cls, ("flops", 0))
    peak = float(entry.op_s) / ops_per_unit if ops_per_unit else None
    if peak is not None and peak <= 0:
        raise HardwareModelError(f"legacy entry {entry.key!r}: op_s {entry.op_s} is not positive")
    if float(entry.bandwidth) <= 0:
        raise HardwareModelError(f"legacy entry {entry.key!r}: bandwidth {entry.bandwidth} is not positive")
    traffic = ["bytes"] if cls in WEIGHTED_CLASSES else ["input_bytes", "output_bytes"]
    roofs = {"peak_flops_per_s": peak, "bandwidth_bytes_per_s": float(entry.bandwidth), "overhead_ms": 0.0}
    return roofs, work, traffic


def _model_dict(kind: str, roofs: Mapping[str, Any], work: str, traffic: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {"overhead": False, "work": work, "traffic": list(traffic)}
    learned: dict[str, Any] = {"roofs": dict(roofs)}
    if kind == "refined":
        params.update(replication=True, compute_bound_only=True)
        learned.update(par={}, alpha={})
    return {"kind": kind, "params": params, "feature_names": list(FEATURES_USED), "n_samples": 0, "learned": learned}


def entry_model(entry: LayerEntry, kind: str) -> LayerModel:
    """The annette layer model of kind ``roofline`` or ``refined`` that estimates as ``entry`` does."""
    if entry.est_type not in ("roofline", "refined_roofline"):
        raise HardwareModelError(
            f"legacy entry {entry.key!r} is {entry.est_type!r}: its statistical model was never published"
        )
    if kind == "roofline" and entry.est_type != "roofline":
        raise HardwareModelError(f"legacy entry {entry.key!r} is {entry.est_type!r}, not a roofline entry")
    roofs, work, traffic = _roofs(entry)
    d = _model_dict(kind, roofs, work, traffic)
    cls = entry.layer_class
    if kind == "refined" and entry.est_type == "refined_roofline" and cls in EFFICIENCY_DIMS:
        names = _annette_dims(cls)
        par: dict[str, float] = {}
        alpha: dict[str, float] = {}
        for d_legacy, p in entry.dims.items():
            if p.par is None:
                continue  # the original ignores an alpha without par
            par[names[d_legacy]] = float(p.par)
            alpha[names[d_legacy]] = 1.0 if p.alpha is None else float(p.alpha)
        d["params"]["replication"] = EFFICIENCY_DIMS[cls][1]
        d["learned"].update(par=par, alpha=alpha)
    return LayerModel.from_dict(d)


def split_model(parts: Sequence[LayerEntry], kind: str, what: str) -> LayerModel:
    """One model for a layer the original splits into data-bound parts of the same shapes: their data roofs
    add up, i.e. one roof whose bandwidth is the harmonic sum of theirs."""
    for e in parts:
        if e.layer_class in CLASS_WORK or e.layer_class in WEIGHTED_CLASSES:
            raise HardwareModelError(
                f"{what}: part {e.layer_type!r} is estimated by class {e.layer_class} (not data-bound): cannot be "
                "expressed as one layer model"
            )
    bandwidth = 1.0 / sum(1.0 / float(e.bandwidth) for e in parts)
    roofs = {"peak_flops_per_s": None, "bandwidth_bytes_per_s": bandwidth, "overhead_ms": 0.0}
    return LayerModel.from_dict(_model_dict(kind, roofs, "flops", ["input_bytes", "output_bytes"]))


def element_bits(entries: Sequence[LayerEntry], what: str) -> ElementBits:
    """The one activation/weight bit width of all ``entries`` (the bundle holds one pair)."""
    pairs = {(e.bit_act, e.bit_weights) for e in entries}
    if len(pairs) != 1:
        raise HardwareModelError(f"{what}: entries use several bit widths {sorted(pairs, key=str)}; a bundle has one")
    act, weights = pairs.pop()
    if act is None or weights is None:
        raise HardwareModelError(f"{what}: an entry's architecture lacks bit_act or bit_weights")
    return ElementBits(float(act), float(weights))


# -- mapping ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chain:
    """A fusion the original can produce: op types from the primary on, conditions, and the legacy out type."""

    ops: tuple[str, ...]
    conditions: tuple[AttrCondition, ...]
    out_type: str
    start_type: str


def _ops(legacy_type: str) -> tuple[str, ...]:
    return LEGACY_OPS.get(legacy_type, (legacy_type,))


def _secondary_options(rule: MappingRule) -> list[tuple[str, tuple[tuple[str, AttrValue], ...]]]:
    """(ONNX op, attribute conditions) choices for a fuser's secondary layer."""
    if rule.primary_conditions:
        raise HardwareModelError(f"mapping rule {rule.key!r}: conditions on the primary layer are not convertible")
    ops = _ops(str(rule.sec_type))
    for c in rule.secondary_conditions:
        if c.name == "pooling_type" and c.op == "==" and c.index is None and c.value in POOLS:
            ops = tuple(op for op in ops if op in POOLS[c.value])
        else:
            raise HardwareModelError(f"mapping rule {rule.key!r}: condition {_describe(c)} is not convertible")
    attrs = RELU6_CONDITIONS if rule.sec_type == "Relu6" else ()
    return [(op, attrs) for op in ops]


def _describe(c: FuseCondition) -> str:
    return f"{c.name}{'' if c.index is None else f'[{c.index}]'} {c.op} {c.value!r}"


def fusion_chains(fusers: Sequence[MappingRule]) -> list[Chain]:
    """Every chain the original's fusers (applied once each, in order) can fuse, longest last."""
    chains: list[Chain] = []

    def extend(start: str, current: str, last: int, ops: tuple[str, ...], conds: tuple[AttrCondition, ...]) -> None:
        for j, rule in enumerate(fusers):
            if j <= last or rule.prim_type != current:
                continue
            for op, attrs in _secondary_options(rule):
                position = len(ops)
                more = conds + tuple(AttrCondition(position, a, (v,)) for a, v in attrs)
                chain = Chain((*ops, op), more, str(rule.out_type), start)
                chains.append(chain)
                extend(start, str(rule.out_type), j, chain.ops, more)

    for start in dict.fromkeys(r.prim_type for r in fusers):
        for op in _ops(start):
            extend(start, start, -1, (op,), ())
    return chains


def convert_mapping(
    source: Any, label: str | None = None
) -> tuple[MappingRules, list[Chain], dict[str, tuple[str, ...]]]:
    """Rules (removals, fusions), the chains behind the fusions, and the splitters (op -> legacy part types).

    ``label`` names the source in the rules' settings (default: the path as given); shipped bundles pass a
    path relative to ``legacy-annette/`` so that the file does not depend on where the data lies."""
    model = load_mapping_model(source)
    removals: list[RemovalRule] = []
    splits: dict[str, tuple[str, ...]] = {}
    fusers: list[MappingRule] = []
    for rule in model.rules:
        if rule.kind == "remover":
            removals.extend(RemovalRule(op) for op in _ops(rule.prim_type))
        elif rule.kind == "splitter":
            assert isinstance(rule.out_type, tuple)
            for op in _ops(rule.prim_type):
                splits[op] = rule.out_type
        elif rule.sec_type == "BatchNorm" and not rule.primary_conditions and not rule.secondary_conditions:
            earlier = [f.key for f in fusers if f.prim_type == rule.prim_type]
            if earlier:
                raise HardwareModelError(
                    f"mapping rule {rule.key!r} folds BatchNorm after {earlier} fused into {rule.prim_type}: the order "
                    "cannot be kept by a removal rule"
                )
            for op in _ops(rule.prim_type):
                removal = RemovalRule("BatchNormalization", (op,))
                if removal not in removals:
                    removals.append(removal)
        else:
            fusers.append(rule)
    chains = fusion_chains(fusers)
    fusions: dict[tuple[str, ...], FusionRule] = {}
    for c in chains:
        fusion = FusionRule(c.ops, c.conditions)
        previous = fusions.setdefault(c.ops, fusion)
        if previous.conditions != fusion.conditions:
            raise HardwareModelError(f"fusion {LayerType(c.ops)} arises with different conditions: not convertible")
    settings = {"source": label or model.source, "legacy_name": model.name, "converted_by": __name__}
    return MappingRules(tuple(fusions.values()), tuple(removals), (), settings), chains, splits


# -- the bundle ------------------------------------------------------------------------------------------
def _executed_types(chain: Chain) -> Iterator[str]:
    prefixes = CONV_VARIANTS if chain.ops[0] == "Conv" else (chain.ops[0],)
    for p in prefixes:
        yield str(LayerType((p, *chain.ops[1:])))


def _type_entries(entries: Mapping[str, LayerEntry], chains: Sequence[Chain]) -> dict[str, str]:
    """annette type -> legacy entry type (``Base`` where the original falls back to it)."""
    out: dict[str, str] = {}
    exact: set[str] = set()
    for legacy_type in entries:
        if legacy_type in NO_LAYER_TYPES:
            continue
        for t in ENTRY_TYPES.get(legacy_type) or _ops(legacy_type):
            if t == legacy_type or t not in exact:  # an entry named like the type beats an alias
                out[t] = legacy_type
            if t == legacy_type:
                exact.add(t)
    if BASE not in out:
        raise HardwareModelError("legacy layer model has no 'Base' entry (the original needs one)")
    out.setdefault("Conv[dw]", BASE)  # else it would fall back to the Conv entry
    for chain in chains:
        if chain.out_type != chain.start_type:  # e.g. Conv + Pool -> ConvPool
            for t in _executed_types(chain):
                out[t] = chain.out_type if chain.out_type in entries else BASE
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_legacy_bundle(name: str, legacy_root: str | Path) -> HardwareModel:
    """Convert the legacy models of ``name`` (a key of :data:`LEGACY_SOURCES`) found under ``legacy_root``."""
    if name not in LEGACY_SOURCES:
        raise HardwareModelError(f"unknown legacy bundle {name!r}; known: {', '.join(LEGACY_SOURCES)}")
    src = LEGACY_SOURCES[name]
    root = Path(legacy_root)
    rules, chains, splits = convert_mapping(root / src.mapping, f"legacy-annette/{src.mapping}")
    layer_models: dict[str, dict[str, LayerModel]] = {}
    used: list[LayerEntry] = []
    types_per_kind: dict[str, dict[str, str]] = {}
    skipped: dict[str, list[str]] = {}
    for kind, file in src.layer_models.items():
        legacy = load_layer_model(root / file)
        entries = dict(legacy.entries)
        types = _type_entries(entries, chains)
        for t, legacy_type in sorted(types.items()):
            entry = entries[legacy_type]
            layer_models.setdefault(t, {})[kind] = entry_model(entry, kind)
            used.append(entry)
        for op, parts in splits.items():
            part_entries = [entries.get(p, entries[BASE]) for p in parts]
            layer_models.setdefault(op, {})[kind] = split_model(part_entries, kind, f"{file}: split {op} -> {parts}")
            used.extend(part_entries)
            types[op] = str(LayerType(tuple(parts)))
        types_per_kind[kind] = types
        skipped[kind] = sorted(t for t in entries if t in NO_LAYER_TYPES and t not in types.values())
        if legacy.duplicate_keys:
            logger.info("%s: duplicate keys %s (the last one wins, as in the original)", file, legacy.duplicate_keys)
    files = {f: _digest(root / f) for f in (*src.layer_models.values(), src.mapping)}
    provenance = {
        **PROVENANCE,
        "description": src.description,
        "files": {f"legacy-annette/{f}": sha for f, sha in files.items()},
        "converted_by": __name__,
        "annette_version": annette.__version__,
        "types": {k: dict(sorted(v.items())) for k, v in types_per_kind.items()},
        "entries_without_layers": skipped,
        "differences_from_the_original": list(DIFFERENCES),
    }
    return HardwareModel(
        name=name,
        target=src.target,
        rules=rules,
        layer_models=layer_models,
        overhead=Overhead(method="none: the original models have no per-node or per-run overhead"),
        fallbacks={},
        feature_names=FEATURES_USED,
        provenance=provenance,
        quality=BundleQuality(note="converted, not fitted: the original publishes no measurements with these models"),
        default_type=BASE,
        element_bits=element_bits(used, name),
    )
