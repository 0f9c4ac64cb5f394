"""Measure-versus-estimate studies: accuracy (a model zoo) and fidelity (NAS-Bench-201 samples).

A study measures every network end to end with the bench protocol (``annette.bench.measure.measure_model``)
in interleaved rounds (round r measures all networks in a shuffled order, then round r + 1 ...), estimates
each with every layer-model kind the hardware model holds (``annette.estimate.estimate``) and computes
the metrics of :mod:`annette.evaluate.metrics` per kind, plus the noise floor (round 1 against round 2, as
if one were the estimate).

The label of a network is the protocol's statistic (``annette.stats.LABEL_STATISTIC``, the
minimum) over the raw samples of all its rounds; each round's own label gives the per-round values of the noise floor.

Resumable: each finished measurement is appended to ``measurements.jsonl`` in the report directory and
reused when the study runs again with the same settings (backend, threads, batch, backend options).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annette.errors import (
    AnnetteError,
    BenchStoreError,
    DuplicateNameError,
    HardwareModelError,
    InsufficientDataError,
    InvalidOptionError,
    UnknownNameError,
)
from annette.evaluate.metrics import Metrics, compute_metrics, noise_floor_rounds
from annette.graph.ir import Graph
from annette.records import BenchRecord, Measurement, NodeProfile

if TYPE_CHECKING:
    from annette.estimate import Estimate
    from annette.hardware import HardwareModel

log = logging.getLogger(__name__)

RESULTS_SCHEMA_VERSION = 1
MEASUREMENTS_FILE = "measurements.jsonl"
INSERTED = " (inserted)"
UNPROFILED = "outside kernels"


# -- which networks ------------------------------------------------------------------------------------
def zoo_specs(zoo: str = "torchvision") -> list[str]:
    """Model specs of a zoo (``torchvision``: every model in ``annette.torchvision_models.TORCHVISION_MODELS``)."""
    if zoo != "torchvision":
        raise UnknownNameError(f"unknown zoo {zoo!r}; valid: torchvision")
    from annette.torchvision_models import TORCHVISION_MODELS

    return [f"torchvision:{name}" for name in TORCHVISION_MODELS]


def nb201_specs(n: int, *, seed: int) -> list[str]:
    """``n`` NAS-Bench-201 architectures drawn uniformly (seeded) as ``nb201:`` specs."""
    from annette.spaces.nb201 import sample_archs

    return [f"nb201:{arch}" for arch in sample_archs(n, seed=seed)]


def display_name(spec: str) -> str:
    """A short name for tables and plots: the zoo model, ``nb201-<index>``, or a file's stem."""
    scheme, sep, rest = spec.partition(":")
    if sep and scheme == "torchvision":
        return rest
    if sep and scheme == "nb201":
        from annette.spaces.nb201 import parse_arch

        return f"nb201-{parse_arch(rest).index:05d}"
    return Path(spec).stem or spec


# -- settings, progress, results -----------------------------------------------------------------------
@dataclass(frozen=True)
class StudySettings:
    """How the networks are measured (``key`` decides which stored measurements are reused)."""

    backend: str = "onnxruntime"
    threads: int = 1
    batch: int = 1
    rounds: int = 3
    seed: int = 0  # shuffles the measurement order of each round
    profile: bool = True  # profile per node in the first round (for the per-layer comparison)
    backend_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        blob = json.dumps(
            [self.backend, self.threads, self.batch, sorted(self.backend_options.items())], default=str
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "threads": self.threads,
            "batch": self.batch,
            "rounds": self.rounds,
            "seed": self.seed,
            "profile": self.profile,
            "backend_options": dict(self.backend_options),
        }


@dataclass(frozen=True)
class Progress:
    """Passed to the progress callback after each step (``phase``: measure | estimate)."""

    phase: str
    done: int
    total: int
    network: str
    round: int = -1


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class NetworkResult:
    """One network: its measured label and rounds, and each kind's estimate (times in ms)."""

    name: str
    spec: str
    measured_ms: float
    rounds_ms: tuple[float, ...]
    estimated_ms: Mapping[str, float]  # kind -> total
    unsupported: Mapping[str, int]  # kind -> number of layers no model covers
    estimated_by_type: Mapping[str, Mapping[str, float]]  # kind -> layer type -> ms
    profiled_by_type: Mapping[str, float]  # layer type -> ms (empty without a profile)
    flags: tuple[str, ...] = ()

    def error_pct(self, kind: str) -> float:
        return (self.estimated_ms[kind] - self.measured_ms) / self.measured_ms * 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec,
            "measured_ms": self.measured_ms,
            "rounds_ms": list(self.rounds_ms),
            "estimated_ms": dict(self.estimated_ms),
            "error_pct": {k: self.error_pct(k) for k in self.estimated_ms},
            "unsupported": dict(self.unsupported),
            "estimated_by_type": {k: dict(v) for k, v in self.estimated_by_type.items()},
            "profiled_by_type": dict(self.profiled_by_type),
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class StudyResult:
    """Everything a report shows; ``to_dict`` is what ``results.json`` holds."""

    title: str
    hw: str
    hw_target: str
    measured_target: Mapping[str, Any]
    label_statistic: str
    settings: StudySettings
    kinds: tuple[str, ...]
    networks: tuple[NetworkResult, ...]
    overall: Mapping[str, Metrics]  # kind -> metrics over networks
    noise_floor: Metrics | None  # round 1 vs round 2 (None with one round or < 1 network)
    by_type: Mapping[str, Mapping[str, Mapping[str, float]]]  # kind -> layer type -> summary
    failed: Mapping[str, str]  # spec -> error
    metadata: Mapping[str, Any] = field(default_factory=dict)
    hw_target_info: Mapping[str, Any] = field(default_factory=dict)  # the hardware model's Target.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "annette.evaluate.results",
            "schema_version": RESULTS_SCHEMA_VERSION,
            "title": self.title,
            "hw": self.hw,
            "hw_target": self.hw_target,
            "hw_target_info": dict(self.hw_target_info),
            "measured_target": dict(self.measured_target),
            "label_statistic": self.label_statistic,
            "settings": self.settings.to_dict(),
            "kinds": list(self.kinds),
            "overall": {k: m.to_dict() for k, m in self.overall.items()},
            "noise_floor": self.noise_floor.to_dict() if self.noise_floor is not None else None,
            "by_type": {k: {t: dict(s) for t, s in v.items()} for k, v in self.by_type.items()},
            "networks": [n.to_dict() for n in self.networks],
            "failed": dict(self.failed),
            "metadata": dict(self.metadata),
        }


# -- the measurement log (resume) ----------------------------------------------------------------------
@dataclass(frozen=True)
class RoundRecord:
    spec: str
    round: int
    settings_key: str
    record: BenchRecord


class MeasurementLog:
    """Append-only JSONL of finished measurements; a truncated line (interrupted write) is skipped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, settings_key: str) -> dict[tuple[str, int], RoundRecord]:
        found: dict[tuple[str, int], RoundRecord] = {}
        if not self.path.exists():
            return found
        for lineno, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:  # an interrupted write: that measurement is redone
                log.warning("%s:%d: skipping a truncated line (%s)", self.path, lineno, exc)
                continue
            try:
                entry = RoundRecord(
                    spec=str(d["spec"]),
                    round=int(d["round"]),
                    settings_key=str(d["settings_key"]),
                    record=BenchRecord.from_dict(d["record"]),
                )
            except (KeyError, TypeError, ValueError, AnnetteError) as exc:
                raise BenchStoreError(
                    f"{self.path}:{lineno}: not a measurement line (expected spec, round, settings_key, "
                    f"record; {exc!r})"
                ) from exc
            if entry.settings_key == settings_key and entry.record.status == "ok":
                found[(entry.spec, entry.round)] = entry
        return found

    def append(self, entry: RoundRecord) -> None:
        record = entry.record.to_dict()
        record["graph"] = None  # the graph is rebuilt from the spec; keep the log small
        line = json.dumps(
            {"spec": entry.spec, "round": entry.round, "settings_key": entry.settings_key, "record": record}
        )
        with self.path.open("ab") as fh:
            if fh.tell() > 0:  # after an interrupted write, start on a fresh line
                with self.path.open("rb") as tail:
                    tail.seek(-1, 2)
                    if tail.read(1) != b"\n":
                        fh.write(b"\n")
            fh.write(line.encode("utf-8") + b"\n")


# -- pure helpers (tested without a runtime) -----------------------------------------------------------
def label_statistic_name() -> str:
    from annette.stats import LABEL_STATISTIC

    return str(LABEL_STATISTIC)


def label_over_rounds(measurements: Sequence[Measurement]) -> float:
    """The protocol's label statistic (``annette.stats.label_of``) over the pooled raw samples of
    all rounds (for the minimum: the smallest per-round label)."""
    from annette.stats import label_of

    if not measurements:
        raise InsufficientDataError("no measurement to take a label from")
    return float(label_of([x for m in measurements for x in m.samples_ms]))


def layer_type(covers: Sequence[str], op: str, graph: Graph) -> str:
    """The layer type a profiled or estimated node counts as: the op of the first graph layer it covers (in
    topological order), so a Conv+BN+Relu fusion is ``Conv``; a node covering no graph layer (inserted by
    the runtime, e.g. a layout reorder) is ``"<its op> (inserted)"``."""
    order = graph_order(graph)
    covered = [c for c in covers if c in order]
    if covered:
        return graph.by_name[min(covered, key=order.__getitem__)].op
    return f"{op}{INSERTED}"


def graph_order(graph: Graph) -> dict[str, int]:
    return {layer.name: i for i, layer in enumerate(graph.layers)}


def profiled_by_type(profile: Iterable[NodeProfile], graph: Graph) -> dict[str, float]:
    """Profiled kernel time (ms) per layer type (see :func:`layer_type`)."""
    out: dict[str, float] = {}
    for node in profile:
        key = layer_type(node.covers, node.op_type, graph)
        out[key] = out.get(key, 0.0) + node.time_ms
    return out


def estimated_by_type(est: Estimate, graph: Graph) -> dict[str, float]:
    """Estimated kernel time (ms) per layer type: each layer's time less the per-node overhead, so that it
    compares with profiled kernel times; the overheads (per node, per run) go to ``outside kernels``."""
    out: dict[str, float] = {}
    for row in est.layers:
        if row.time_ms is None:
            continue
        key = layer_type(row.covers, row.type, graph)
        out[key] = out.get(key, 0.0) + max(row.time_ms - est.node_overhead_ms, 0.0)
    rest = est.total_ms - sum(out.values())
    if rest > 0:
        out[UNPROFILED] = rest
    return out


def type_errors(networks: Sequence[NetworkResult], kind: str) -> dict[str, dict[str, float]]:
    """Per layer type, over the profiled networks: summed estimated and profiled ms, their ratio error,
    and the mean absolute per-network error (the profile's kernel times exclude per-node overhead)."""
    est_sum: dict[str, float] = {}
    prof_sum: dict[str, float] = {}
    per_net: dict[str, list[float]] = {}
    for net in networks:
        if not net.profiled_by_type:
            continue
        est = net.estimated_by_type.get(kind, {})
        for t in (set(est) | set(net.profiled_by_type)) - {UNPROFILED}:
            e, p = est.get(t, 0.0), net.profiled_by_type.get(t, 0.0)
            est_sum[t] = est_sum.get(t, 0.0) + e
            prof_sum[t] = prof_sum.get(t, 0.0) + p
            if p > 0:
                per_net.setdefault(t, []).append(abs(e - p) / p * 100.0)
    out: dict[str, dict[str, float]] = {}
    for t in sorted(est_sum, key=lambda k: -prof_sum[k]):
        p = prof_sum[t]
        out[t] = {
            "estimated_ms": est_sum[t],
            "profiled_ms": p,
            "error_pct": (est_sum[t] - p) / p * 100.0 if p > 0 else math.nan,
            "mape_pct": float(np.mean(per_net[t])) if per_net.get(t) else math.nan,
            "networks": float(len(per_net.get(t, []))),
        }
    return out


def summarize(
    networks: Sequence[NetworkResult], kinds: Sequence[str], rounds: int
) -> tuple[dict[str, Metrics], Metrics | None]:
    """Overall metrics per kind, and the noise floor (round 1 vs round 2)."""
    overall: dict[str, Metrics] = {}
    if networks:
        measured = [n.measured_ms for n in networks]
        for kind in kinds:
            overall[kind] = compute_metrics(measured, [n.estimated_ms[kind] for n in networks])
    floor = None
    if rounds >= 2 and networks:
        floor = noise_floor_rounds([[n.rounds_ms[r] for n in networks] for r in range(2)])
    return overall, floor


# -- the study -----------------------------------------------------------------------------------------
def _measure_rounds(
    specs: Sequence[str],
    settings: StudySettings,
    out_dir: Path,
    progress: ProgressCallback | None,
) -> tuple[dict[tuple[str, int], RoundRecord], dict[str, str]]:
    from annette.bench.measure import measure_model

    mlog = MeasurementLog(out_dir / MEASUREMENTS_FILE)
    done = mlog.load(settings.key)
    if done:
        log.info("reusing %d stored measurements from %s", len(done), mlog.path)
    failed: dict[str, str] = {}
    total = len(specs) * settings.rounds
    count = sum(1 for s in specs for r in range(settings.rounds) if (s, r) in done)
    for r in range(settings.rounds):
        order = np.random.default_rng([settings.seed, r]).permutation(len(specs))
        for i in order:
            spec = specs[int(i)]
            if (spec, r) in done or spec in failed:
                continue
            name = display_name(spec)
            log.info("round %d/%d: measuring %s", r + 1, settings.rounds, name)
            try:
                record = measure_model(
                    spec,
                    backend=settings.backend,
                    threads=settings.threads,
                    batch=settings.batch,
                    profile=settings.profile and r == 0,
                    **settings.backend_options,
                )
            except AnnetteError as exc:
                record = None
                failed[spec] = f"{type(exc).__name__}: {exc}"
            if record is not None and record.status != "ok":
                failed[spec] = record.error or "measurement failed"
            if spec in failed:
                log.warning("%s: %s", name, failed[spec])
                total -= settings.rounds - r
            else:
                assert record is not None
                entry = RoundRecord(spec, r, settings.key, record)
                mlog.append(entry)
                done[(spec, r)] = entry
                count += 1
            if progress is not None:
                progress(Progress("measure", count, total, name, r))
    return done, failed


def _estimate_all(
    graphs: Mapping[str, Graph], hw: HardwareModel, kind: str, failed: dict[str, str]
) -> dict[str, Estimate]:
    """One ``estimate_many`` call for all graphs; where it fails, graph by graph (failures recorded)."""
    from annette.estimate import estimate_many

    specs = [s for s in graphs if s not in failed]
    try:
        return dict(zip(specs, estimate_many([graphs[s] for s in specs], hw, kind=kind), strict=True))
    except AnnetteError:
        log.info("estimating all networks at once failed; estimating them one by one")
    out: dict[str, Estimate] = {}
    for spec in specs:
        try:
            out[spec] = estimate_many([graphs[spec]], hw, kind=kind)[0]
        except AnnetteError as exc:
            failed[spec] = f"estimate ({kind}): {type(exc).__name__}: {exc}"
            log.warning("%s: %s", display_name(spec), failed[spec])
    return out


def run_study(
    specs: Sequence[str],
    hw: str | HardwareModel,
    out_dir: str | Path,
    settings: StudySettings | None = None,
    *,
    title: str = "annette evaluation",
    progress: ProgressCallback | None = None,
) -> StudyResult:
    """Measure ``specs`` in interleaved rounds, estimate them with every kind of ``hw``; return the result.

    Writes ``measurements.jsonl`` into ``out_dir`` as measurements finish (rerunning resumes). Networks
    whose measurement fails are listed in ``failed`` and left out of the metrics.
    """
    from annette.hardware import HardwareModel
    from annette.importers import load_model

    settings = settings or StudySettings()
    if settings.rounds < 1:
        raise InvalidOptionError(f"a study needs at least 1 round, got {settings.rounds}")
    if not specs:
        raise InvalidOptionError("a study needs at least one network, got none")
    if len(set(specs)) != len(specs):
        raise DuplicateNameError("the network list names a network twice")
    hw_model = hw if isinstance(hw, HardwareModel) else HardwareModel.load(hw)
    hw_name = hw if isinstance(hw, str) else hw_model.name
    kinds = tuple(hw_model.kinds)
    if not kinds:
        raise HardwareModelError(f"hardware model {hw_name!r} holds no layer-model kind to estimate with")
    statistic = label_statistic_name()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    done, failed = _measure_rounds(specs, settings, out, progress)

    graphs: dict[str, Graph] = {}
    for k, spec in enumerate(s for s in specs if s not in failed):
        if len([r for r in range(settings.rounds) if (spec, r) in done]) != settings.rounds:
            continue
        try:
            graphs[spec] = load_model(spec, batch=settings.batch)
        except AnnetteError as exc:
            failed[spec] = f"load: {type(exc).__name__}: {exc}"
            log.warning("%s: %s", display_name(spec), failed[spec])
        if progress is not None:
            progress(Progress("estimate", k + 1, len(specs) - len(failed), display_name(spec)))
    estimates = {kind: _estimate_all(graphs, hw_model, kind, failed) for kind in kinds}

    measured_target: dict[str, Any] = {}
    networks: list[NetworkResult] = []
    for spec in specs:
        if spec in failed or spec not in graphs:
            continue
        graph = graphs[spec]
        records = [done[(spec, r)].record for r in range(settings.rounds)]
        measurements = [rec.measurement for rec in records if rec.measurement is not None]
        if len(measurements) != settings.rounds:
            failed[spec] = "a stored measurement has no samples"
            continue
        measured_target = records[0].target.to_dict()
        if records[0].target.key != hw_model.target.key:
            log.warning(
                "%s was measured on %s but hardware model %r describes %s",
                spec, records[0].target.key, hw_name, hw_model.target.key,
            )  # fmt: skip
        measured = label_over_rounds(measurements)
        profile = next((rec.profile for rec in records if rec.profile), ())
        prof_types = profiled_by_type(profile, graph) if profile else {}
        if prof_types and measured > sum(prof_types.values()):
            prof_types[UNPROFILED] = measured - sum(prof_types.values())
        networks.append(
            NetworkResult(
                name=display_name(spec),
                spec=spec,
                measured_ms=measured,
                rounds_ms=tuple(m.label_ms for m in measurements),
                estimated_ms={kind: estimates[kind][spec].total_ms for kind in kinds},
                unsupported={kind: len(estimates[kind][spec].unsupported) for kind in kinds},
                estimated_by_type={kind: estimated_by_type(estimates[kind][spec], graph) for kind in kinds},
                profiled_by_type=prof_types,
                flags=tuple(sorted({f for m in measurements for f in m.flags})),
            )
        )

    overall, floor = summarize(networks, kinds, settings.rounds)
    by_type = {kind: type_errors(networks, kind) for kind in kinds}
    return StudyResult(
        title=title,
        hw=hw_name,
        hw_target=hw_model.target.key,
        measured_target=measured_target,
        label_statistic=statistic,
        settings=settings,
        kinds=kinds,
        networks=tuple(networks),
        overall=overall,
        noise_floor=floor,
        by_type=by_type,
        failed=dict(failed),
        metadata=_metadata(),
        hw_target_info=hw_model.target.to_dict(),
    )


def _metadata() -> dict[str, Any]:
    import datetime
    import os
    import platform

    import annette

    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "annette": getattr(annette, "__version__", "unknown"),
    }
    try:
        from annette.backends.base import cpu_model

        meta["cpu"] = cpu_model()
    except ImportError:
        meta["cpu"] = platform.processor()
    meta["cpu_count"] = os.cpu_count()
    if hasattr(os, "getloadavg"):
        meta["loadavg"] = list(os.getloadavg())
    return meta
