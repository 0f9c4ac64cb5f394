"""The hardware-model bundle: everything an estimate needs about one target, in one JSON file.

A bundle holds a schema version, the target (``Target.to_dict()``), the mapping rules, the layer models per
executed-layer type and kind (LightGBM models as their own text), the feature names they were fitted on, the
type fallbacks, the per-node and per-run overheads, provenance (store, record counts, dates, versions) and
quality (the fit's held-out figures and measured accuracy, :class:`annette.quality.BundleQuality`). Loading
never executes code: it parses JSON and checks every part, raising :class:`HardwareModelError` that names what
is missing or wrong.

:data:`SHIPPED` maps the names of the bundles shipped in ``annette/data/hw/*.json`` to their files;
:meth:`HardwareModel.load` accepts a path or one of those names.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from annette import checks
from annette.errors import HardwareModelError, UnknownNameError
from annette.layers import KINDS, LayerModel
from annette.layers.features import ALL_FEATURE_NAMES, FEATURE_NAMES, FEATURES, ElementBits, type_fallbacks
from annette.layers.layertype import LayerType
from annette.mapping.rules import MappingRules
from annette.quality import BundleQuality
from annette.records import Target
from annette.registry import Registry

logger = logging.getLogger(__name__)

HW_SCHEMA = "annette.hardware"
HW_SCHEMA_VERSION = 1
SHIPPED_DIR = Path(__file__).parent / "data" / "hw"

# For each requested kind, the kinds tried in turn when a type lacks it (too little data for it).
KIND_FALLBACKS: Mapping[str, tuple[str, ...]] = {
    "roofline": ("roofline",),
    "refined": ("refined", "roofline"),
    "statistical": ("statistical", "refined", "roofline"),
    "mixed": ("mixed", "refined", "roofline"),
}

SHIPPED: Registry[Path] = Registry("shipped hardware model")
for _path in sorted(SHIPPED_DIR.glob("*.json")):
    SHIPPED.register(_path.stem, _path)


@dataclass(frozen=True)
class Overhead:
    """Time the target spends beyond its kernels (ms): per executed node (dispatch; added to every layer's kernel
    time) and per run (added per estimate), both >= 0 when fitted by this annette. ``profiler_node_ms`` is what the
    runtime's profiler adds to each kernel time it reports (its timing of a node and the rounding of its
    timestamps): layer models are fitted on profiled kernel times as reported, so every estimate takes it off each
    layer's predicted kernel time (never below 0)."""

    per_node_ms: float = 0.0
    per_run_ms: float = 0.0
    n_records: int = 0
    method: str = "none"
    profiler_node_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_node_ms": self.per_node_ms,
            "per_run_ms": self.per_run_ms,
            "n_records": self.n_records,
            "method": self.method,
            "profiler_node_ms": self.profiler_node_ms,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Overhead:
        return Overhead(
            per_node_ms=checks.number(d["per_node_ms"], "overhead.per_node_ms", low=-1e6, high=1e6),
            per_run_ms=checks.number(d["per_run_ms"], "overhead.per_run_ms", nonnegative=True, high=1e6),
            n_records=int(d.get("n_records", 0)),
            method=str(d.get("method", "")),
            profiler_node_ms=checks.number(d.get("profiler_node_ms", 0.0), "overhead.profiler_node_ms"),
        )


@dataclass(frozen=True)
class CacheModel:
    """Weights that are not in the cache when their layer runs. Layer models are fitted on benchmarks that run
    one block again and again, so its weights stay cached; in a network whose weights add up to more than
    ``capacity_bytes``, each layer whose own weights fit in that capacity fetches them again on every run,
    which costs ``weight bytes / bandwidth_bytes_per_s`` more than its layer model says. (Layers with more
    weights than the capacity fetched them in their benchmarks too.) Fitted from cache-pressure benchmarks
    (``annette.fit.fit_cache``)."""

    capacity_bytes: float
    bandwidth_bytes_per_s: float
    n_records: int = 0
    method: str = ""

    def extra_ms(self, layer_weight_bytes: ArrayLike, graph_weight_bytes: ArrayLike) -> np.ndarray:
        """The added time of layers with ``layer_weight_bytes`` in graphs with ``graph_weight_bytes`` (arrays
        broadcast; a graph's weights are those of its executed layers)."""
        w = np.asarray(layer_weight_bytes, dtype=np.float64)
        charged = (np.asarray(graph_weight_bytes) > self.capacity_bytes) & (w <= self.capacity_bytes)
        return np.where(charged, 1e3 * w / self.bandwidth_bytes_per_s, 0.0)

    def graphs_extra_ms(self, layer_weight_bytes: ArrayLike, sizes: Sequence[int]) -> np.ndarray:
        """:meth:`extra_ms` of the executed layers of consecutive graphs (``sizes``: layers per graph), each graph's
        weights the sum of its layers' (unknown weights, NaN, count 0)."""
        w = np.nan_to_num(np.asarray(layer_weight_bytes, dtype=np.float64))
        cum = np.concatenate([[0.0], np.cumsum(w)])
        bounds = np.cumsum([0, *sizes])
        totals = cum[bounds[1:]] - cum[bounds[:-1]]  # per graph
        return self.extra_ms(w, np.repeat(totals, sizes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity_bytes": self.capacity_bytes,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "n_records": self.n_records,
            "method": self.method,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> CacheModel:
        return CacheModel(
            capacity_bytes=checks.number(d["capacity_bytes"], "cache.capacity_bytes", positive=True),
            bandwidth_bytes_per_s=checks.number(d["bandwidth_bytes_per_s"], "cache.bandwidth_bytes_per_s", positive=True),
            n_records=int(d.get("n_records", 0)),
            method=str(d.get("method", "")),
        )


@dataclass(frozen=True)
class Calibration:
    """A bundle adapted to another machine of its kind (``annette calibrate``): each layer model's kernel time is
    multiplied by its type's factor in ``scales`` (types not listed: ``default_scale``), and the bundle's overheads
    are the ones measured there. ``machine`` is the target calibrated for, ``base`` the bundle it started from,
    ``source`` what was measured ("micro-benchmarks and blocks on this machine", or whole-network timings from a
    file), ``validation`` the accuracy on calibration networks held out from the fit, before and after.
    ``size_slope``: kernel times are also multiplied by (MB the network moves / ``size_ref_mb``) ** size_slope, one
    factor per network (its layers run with colder caches the more data it moves than a micro-benchmark does)."""

    scales: Mapping[str, float]
    default_scale: float
    base: str
    source: str
    n_records: int
    method: str
    machine: Mapping[str, Any] = field(default_factory=dict)
    validation: Mapping[str, Any] = field(default_factory=dict)
    size_slope: float = 0.0
    size_ref_mb: float = 1.0

    def scale(self, type_name: str) -> float:
        return float(self.scales.get(type_name, self.default_scale))

    def size_factor(self, traffic_mb: float) -> float:
        """The factor on the kernel times of a network whose executed layers move ``traffic_mb`` MB."""
        return float((max(traffic_mb, 1e-6) / self.size_ref_mb) ** self.size_slope) if self.size_slope else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"scales": dict(self.scales), "default_scale": self.default_scale, "base": self.base,
                "source": self.source, "n_records": self.n_records, "method": self.method,
                "machine": dict(self.machine), "validation": dict(self.validation), "size_slope": self.size_slope,
                "size_ref_mb": self.size_ref_mb}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Calibration:
        scales = {str(t): checks.number(v, f"calibration.scales[{t!r}]", positive=True)
                  for t, v in dict(d["scales"]).items()}
        return Calibration(
            scales=scales,
            default_scale=checks.number(d["default_scale"], "calibration.default_scale", positive=True),
            base=str(d.get("base", "")),
            source=str(d.get("source", "")),
            n_records=int(d.get("n_records", 0)),
            method=str(d.get("method", "")),
            machine=dict(d.get("machine", {})),
            validation=dict(d.get("validation", {})),
            size_slope=checks.number(d.get("size_slope", 0.0), "calibration.size_slope"),
            size_ref_mb=checks.number(d.get("size_ref_mb", 1.0), "calibration.size_ref_mb", positive=True),
        )


@dataclass(frozen=True)
class Resolved:
    """Which model predicts an executed-layer type under a requested kind, and why, if not the obvious one."""

    type: str
    kind: str
    model: LayerModel
    note: str


@dataclass(frozen=True, eq=False)
class HardwareModel:
    """A fitted target: mapping rules, layer models per type and kind, overheads and provenance."""

    name: str
    target: Target
    rules: MappingRules
    layer_models: Mapping[str, Mapping[str, LayerModel]]
    overhead: Overhead = Overhead()
    fallbacks: Mapping[str, str] = field(default_factory=dict)
    feature_names: tuple[str, ...] = FEATURE_NAMES  # the columns its models take (a subset of FEATURES)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    quality: BundleQuality = field(default_factory=BundleQuality)
    # The type whose models cost any type nothing else covers (the original ANNETTE's ``Base`` entry); None:
    # such layers are unsupported.
    default_type: str | None = None
    # Bytes counted at these element widths instead of the graph's dtypes (see ElementBits); None: dtypes.
    element_bits: ElementBits | None = None
    # Weights fetched again in networks larger than the cache (see CacheModel); None: not modelled.
    cache: CacheModel | None = None
    # Per-type scales onto another machine of the target's kind (see Calibration); None: not calibrated.
    calibration: Calibration | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        """Kinds available for at least one layer type, simplest first."""
        have = {k for models in self.layer_models.values() for k in models}
        return tuple(k for k in KINDS if k in have)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted(self.layer_models))

    def resolve(self, type_name: str, kind: str) -> Resolved | None:
        """The model for ``type_name`` under ``kind``: the type itself, else its primary member's type, else
        that op's base type; only where none of these has a model, ``fallbacks`` redirects types with too little
        data (to the generic model); the kind falls back along :data:`KIND_FALLBACKS`; then ``default_type``,
        where set. None where nothing covers the type."""
        if kind not in KIND_FALLBACKS:
            raise UnknownNameError(f"unknown estimate kind {kind!r}; valid: {', '.join(KIND_FALLBACKS)}")
        candidates = type_fallbacks(type_name)
        # Own models of the type or its more generic types first; then the redirect of a type with too
        # little data (to the generic model).
        for candidate, used in (*((c, c) for c in candidates), *((c, self.fallbacks.get(c)) for c in candidates)):
            models = self.layer_models.get(used) if used is not None else None
            if not models or used is None:
                continue
            for k in KIND_FALLBACKS[kind]:
                if k in models:
                    notes = []
                    if used != type_name:
                        why = " (too little data)" if {type_name, candidate} & self.fallbacks.keys() else ""
                        notes.append(f"type {type_name}→{used}{why}")
                    if k != kind:
                        notes.append(f"kind {kind}→{k}")
                    return Resolved(used, k, models[k], "; ".join(notes))
        default = self.layer_models.get(self.default_type) if self.default_type is not None else None
        if default:
            for k in KIND_FALLBACKS[kind]:
                if k in default:
                    note = f"type {type_name}→{self.default_type} (default for types without a model)"
                    note += f"; kind {kind}→{k}" if k != kind else ""
                    return Resolved(str(self.default_type), k, default[k], note)
        return None

    def resolve_primary(self, type_name: str, used: Resolved) -> Resolved | None:
        """For a fused type resolved to its own model ``used``: its primary member's model (the same kernel without
        the fused post-ops), for layers beyond the data of ``used`` (:meth:`LayerModel.covers`); else None."""
        t = LayerType.parse(type_name)
        if len(t.members) < 2 or used.type != type_name:
            return None
        models = self.layer_models.get(t.primary, {})
        for k in KIND_FALLBACKS[used.kind]:
            if k in models:
                return Resolved(t.primary, k, models[k], f"type {type_name}→{t.primary} (beyond the data of its own "
                                f"model){'' if k == used.kind else f'; kind {used.kind}→{k}'}")
        return None

    # -- JSON ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": HW_SCHEMA,
            "schema_version": HW_SCHEMA_VERSION,
            "name": self.name,
            "target": self.target.to_dict(),
            "features": {"names": list(self.feature_names), "units": {n: FEATURES[n][0] for n in self.feature_names}},
            "mapping": self.rules.to_dict(),
            "overhead": self.overhead.to_dict(),
            "layer_models": {t: {k: m.to_dict() for k, m in kinds.items()} for t, kinds in self.layer_models.items()},
            "fallbacks": dict(self.fallbacks),
            "provenance": dict(self.provenance),
            "quality": self.quality.to_dict(),
            "default_type": self.default_type,
            "element_bits": None if self.element_bits is None else self.element_bits.to_dict(),
            "cache": None if self.cache is None else self.cache.to_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
        }

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1))
        return p

    @staticmethod
    def from_dict(d: Mapping[str, Any], source: str = "<dict>") -> HardwareModel:
        try:
            checks.check_schema(d, "hardware model", HW_SCHEMA_VERSION, schema=HW_SCHEMA)
        except ValueError as exc:
            raise HardwareModelError(f"{source}: {exc}") from None
        required = ("name", "target", "features", "mapping", "overhead", "layer_models")
        missing = [k for k in required if k not in d]
        if missing:
            raise HardwareModelError(f"{source}: hardware model lacks {', '.join(missing)}")
        try:
            checks.check_bundle_parts(d)
        except ValueError as exc:
            raise HardwareModelError(f"{source}: malformed hardware model: {exc}") from exc
        names = tuple(str(n) for n in dict(d["features"]).get("names", ()))
        unknown = [n for n in names if n not in FEATURES]
        if unknown or not names:
            raise HardwareModelError(
                f"{source}: fitted on feature columns {list(names)}, but this annette does not extract "
                f"{unknown or 'an empty list'} (it extracts {list(ALL_FEATURE_NAMES)}); refit the hardware model"
            )
        try:
            target = Target.from_dict(d["target"])
            overhead = Overhead.from_dict(d["overhead"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise HardwareModelError(f"{source}: malformed target or overhead: {_why(exc)}") from exc
        try:
            rules = MappingRules.from_dict(d["mapping"])
        except HardwareModelError as exc:
            raise HardwareModelError(f"{source}: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
            raise HardwareModelError(f"{source}: malformed mapping rules: {_why(exc)}") from exc
        layer_models: dict[str, dict[str, LayerModel]] = {}
        for type_name, kinds in dict(d["layer_models"]).items():
            layer_models[type_name] = {}
            for kind, md in dict(kinds).items():
                try:
                    model = LayerModel.from_dict(md)
                except HardwareModelError as exc:
                    raise HardwareModelError(f"{source}: layer model {type_name}/{kind}: {exc}") from exc
                if model.kind != kind:
                    raise HardwareModelError(f"{source}: layer model {type_name}/{kind} is of kind {model.kind!r}")
                if model.feature_names_ != names:
                    raise HardwareModelError(f"{source}: layer model {type_name}/{kind} has other feature names")
                layer_models[type_name][kind] = model
        fallbacks = {str(k): str(v) for k, v in dict(d.get("fallbacks", {})).items()}
        dangling = sorted(k for k, v in fallbacks.items() if v not in layer_models)
        if dangling:
            raise HardwareModelError(f"{source}: fallbacks of {dangling} name types without models")
        default_type = d.get("default_type")
        if default_type is not None and default_type not in layer_models:
            raise HardwareModelError(f"{source}: default_type {default_type!r} names a type without models")
        try:
            bits = None if d.get("element_bits") is None else ElementBits.from_dict(d["element_bits"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise HardwareModelError(f"{source}: malformed element_bits: {_why(exc)}") from exc
        try:
            cache = None if d.get("cache") is None else CacheModel.from_dict(d["cache"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise HardwareModelError(f"{source}: malformed cache model: {_why(exc)}") from exc
        try:
            calibration = None if d.get("calibration") is None else Calibration.from_dict(d["calibration"])
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise HardwareModelError(f"{source}: malformed calibration: {_why(exc)}") from exc
        try:
            quality = BundleQuality.from_dict(d.get("quality") or {})
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise HardwareModelError(f"{source}: malformed quality: {_why(exc)}") from exc
        return HardwareModel(
            name=str(d["name"]),
            target=target,
            rules=rules,
            layer_models=layer_models,
            overhead=overhead,
            fallbacks=fallbacks,
            feature_names=names,
            provenance=dict(d.get("provenance", {})),
            quality=quality,
            default_type=None if default_type is None else str(default_type),
            element_bits=bits,
            cache=cache,
            calibration=calibration,
        )

    @staticmethod
    def load(path_or_name: str | Path) -> HardwareModel:
        """Load a bundle from a JSON file, or a shipped one by name (see ``annette hw list``)."""
        p = Path(path_or_name)
        if not p.is_file():
            if str(path_or_name) in SHIPPED:
                p = SHIPPED.get(str(path_or_name))
            else:
                choices = ", ".join(SHIPPED.names()) or "(none shipped)"
                raise HardwareModelError(
                    f"hardware model {str(path_or_name)!r} is neither a file nor a shipped model; shipped: {choices}"
                )
        try:
            data = checks.read_json_object(p)
        except (OSError, ValueError) as exc:
            raise HardwareModelError(f"{p}: cannot read a hardware model: {exc}") from exc
        return HardwareModel.from_dict(data, source=str(p))


def _why(exc: BaseException) -> str:
    """An exception as a message: a KeyError names the missing key, others their text."""
    return f"missing key {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else f"{exc}"


class TargetMismatchWarning(UserWarning):
    """A hardware model fitted on another CPU, ISA, runtime version or thread count than this machine offers is
    used here: its estimates are for *that* target, not for this machine (``annette calibrate`` adapts it).
    Filter it with ``warnings.simplefilter("ignore", TargetMismatchWarning)``."""


def target_mismatch(target: Target) -> str | None:
    """What differs between a local target a bundle was fitted on (a CPU, run by a runtime installed here) and this
    machine, in one sentence; None where nothing does, or for targets that are not this machine's kind (GPUs,
    imported tables and other foreign devices, ``backend == "external"``, the simulated backend)."""
    from annette.backends.base import cpu_id, cpu_isa, cpu_model

    if target.device != "cpu" or target.backend in ("external", "simulated"):
        return None
    diffs = []
    here = cpu_model()
    if target.device_model != here:
        diffs.append(f"CPU {target.device_model!r} (this machine: {here!r})")
    isa, local_isa = target.extra.get("isa"), cpu_isa()
    if isa is not None and isa != local_isa:
        diffs.append(f"ISA {isa or 'none'} (this machine: {local_isa or 'none'})")
    ident, local_ident = target.extra.get("cpu_id"), cpu_id()
    if target.device_model == here and local_ident and ident != local_ident:
        # one model name, another CPU: bundles fitted before the identity was recorded say nothing of theirs
        diffs.append(f"CPU {ident!r} (this machine: {local_ident!r})" if ident else
                     f"CPU of unrecorded identity (this machine: {local_ident!r}; virtual machines name CPUs of "
                     "different generations alike)")
    try:
        installed = metadata.version(target.runtime)
    except metadata.PackageNotFoundError:
        installed = None
    if installed is not None and installed != target.runtime_version:
        diffs.append(f"{target.runtime} {target.runtime_version} (installed: {installed})")
    cpus = os.cpu_count() or 0
    if cpus and target.threads > cpus:
        diffs.append(f"{target.threads} threads (this machine has {cpus} logical CPUs)")
    if not diffs:
        return None
    here_target = replace(target, device_model=here, extra={**target.extra, "isa": local_isa, "cpu_id": local_ident},
                          runtime_version=installed or target.runtime_version)
    closer = [n for n, t in _shipped_targets().items() if t.key == target.key and t.runtime == target.runtime
              and target_mismatch_fields(t, here_target) < target_mismatch_fields(target, here_target)]
    hint = f"; shipped {', '.join(closer)} {'was' if len(closer) == 1 else 'were'} fitted on a closer one" if closer else ""
    return ("fitted for another target than this machine: " + "; ".join(diffs)
            + f". Its estimates are for that target{hint}; `annette hw check BUNDLE` measures how far off it is here "
            "(a minute), `annette calibrate --hw BUNDLE -o NEW.json` adapts it to this machine in a few minutes")


def target_mismatch_fields(a: Target, b: Target) -> int:
    """How many of CPU model, CPU identity, ISA and runtime version differ between two targets."""
    return (a.device_model != b.device_model) + (a.extra.get("cpu_id") != b.extra.get("cpu_id")) + (
        a.extra.get("isa") != b.extra.get("isa")) + (a.runtime_version != b.runtime_version)


@functools.lru_cache(maxsize=1)
def _shipped_targets() -> dict[str, Target]:
    """The target of every shipped bundle (read from their JSON, not validated: only to name a closer one)."""
    out = {}
    for name in SHIPPED.names():
        try:
            out[name] = Target.from_dict(json.loads(SHIPPED.get(name).read_text())["target"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out
