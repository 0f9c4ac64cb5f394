"""One command builds a hardware model for the machine it runs on: ``annette build`` (:func:`run_build`).

Stages, each measured into the one store at ``out`` (``out/store.sqlite``) in the isolated benchmark worker,
under a share of the time budget (:data:`STAGE_SHARES`); every family a stage measures is in the one
registry (``annette.bench.blocks.FAMILIES``, ``Family.stage``), so every record can be rebuilt from its
family and parameters:

1. ``core``: the campaign of ``annette bench`` (micro-kernels of every layer type, multi-layer blocks).
2. ``context``: blocks inside a network (stem and tail convolutions around them), NAS-style cells.
3. ``overhead``: chains of 1-256 trivial layers: the per-node cost of an unprofiled run.
4. ``cache``: chains of layers with large weight footprints (record kind ``cache``): the cache model.
5. ``refine``: adaptive sampling until the budget ends (nn-Meter's): a model fitted on most records so far
   scores the held-out rest; new configurations are drawn around the worst ones (``sweeps.refine``), in
   rounds, and measured; a round ends early when the time left is needed for the final fit and validation.
6. ``fit``: mapping rules, layer models, overheads and the cache model (``annette.fit.fit_store``).
7. ``networks``: generated networks of a third seed (:data:`NETWORKS_SEED`: NAS-Bench-201 networks and blocks
   in context) measured end to end correct the stacked estimate as ``annette calibrate --measured`` would
   (factors per group of layer types, the per-node cost), kept only where leave-one-out over those networks
   beats the fitted bundle: a network is more than its layers' micro-benchmarks (a few µs per small layer
   decide a 0.3 ms NAS cell), and this stage measures how much more on the machine itself.
8. ``validate``: generated networks that no stage measured (NAS-Bench-201 networks and blocks in context drawn
   with another seed) are measured end to end in two interleaved rounds and estimated; MAPE, ±10 % accuracy
   and Spearman's ρ against the minimum of the rounds, and round 1 against round 2 (the noise floor), go into
   the bundle's quality (``quality["validation"]``).

``resume`` continues a build whose store exists: each stage skips what the store holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annette.bench.blocks import FAMILIES, build_model, sample_params, stage_families
from annette.bench.campaign import CampaignProgress, CampaignResult, measure_configs, run_campaign
from annette.bench.context_blocks import chain_plan
from annette.bench.store import BenchStore
from annette.bench.sweeps import BenchConfig, make_config, refine
from annette.errors import AnnetteError, BenchStoreError, InvalidOptionError, UnknownNameError
from annette.evaluate.metrics import Metrics, compute_metrics, noise_floor
from annette.hardware import HardwareModel
from annette.quality import Accuracy, ValidationRecord
from annette.records import BenchRecord

if TYPE_CHECKING:
    from annette.bench.cluster import ClusterSpec
    from annette.graph.ir import Graph

log = logging.getLogger(__name__)

# Shares of the budget: measured stages; the refine stage takes what is left after RESERVE_SHARE.
STAGE_SHARES: Mapping[str, float] = {"core": 0.50, "context": 0.16, "overhead": 0.02, "cache": 0.05}
# The final fit, the network stage and the validation take what is left after refinement: at least
# RESERVE_SHARE of the budget (they took 5.4 and 5.2 of 30 minutes in the ONNX Runtime and OpenVINO builds on a
# Zen 4 of 2026-12-04, whose final fits took 3.5 and 3.1 min), and on a slower machine more: once a refine round
# has timed its fit (the statistical kind; the final fit has four kinds and pools), FINAL_FIT_FACTOR times that
# fit plus NETWORK_STAGES_SHARE of the budget for the two network stages.
RESERVE_SHARE = 0.18
FINAL_FIT_FACTOR = 3.0
NETWORK_STAGES_SHARE = 0.07
CONTEXT_MAX_COST = 1.5e9  # blocks in context are whole network stages: a larger cap than single layers
REFINE_HOLDOUT = 5  # one record in REFINE_HOLDOUT is scored in a refine round
REFINE_PER_ROUND = 400
VALIDATION_SEED = 90_210  # no stage draws with it
VALIDATE_N = 24  # validation networks drawn by default
NETWORKS_SEED = 31_337  # the network stage's networks: neither another stage's nor the validation's
NETWORKS_N = 30
BUNDLE_FILE = "hardware.json"


@dataclass(frozen=True)
class BuildProgress:
    stage: str
    done: int  # configurations measured in this stage
    failed: int
    elapsed_s: float  # since the build started
    budget_s: float
    message: str = ""


@dataclass(frozen=True)
class StageResult:
    name: str
    measured: int
    failed: int
    skipped: int
    elapsed_s: float
    stopped_by: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BuildResult:
    bundle: str
    store: str
    stages: tuple[StageResult, ...]
    elapsed_s: float
    validation: ValidationRecord | None
    fit: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "store": self.store,
            "elapsed_s": self.elapsed_s,
            "stages": [s.to_dict() for s in self.stages],
            "validation": None if self.validation is None else self.validation.to_dict(),
            "fit": dict(self.fit),
        }


def stage_plan(stage: str, target_key: str, *, seed: int, size: int, max_cost: float = CONTEXT_MAX_COST) -> list[BenchConfig]:
    """``size`` seeded draws from the families of ``stage``, in proportion to their weights (duplicates dropped)."""
    names = stage_families(stage)
    if not names:
        raise UnknownNameError(f"no benchmark family belongs to build stage {stage!r}")
    p = np.array([FAMILIES.get(n).weight for n in names], dtype=float)
    rng = np.random.default_rng([seed, int(hashlib.sha256(stage.encode()).hexdigest()[:8], 16)])
    out: dict[str, BenchConfig] = {}
    for _ in range(size):
        family = str(rng.choice(names, p=p / p.sum()))
        cfg = make_config(family, sample_params(family, rng, max_cost=max_cost), target_key, stage)
        out.setdefault(cfg.config_id, cfg)
    return list(out.values())


def run_build(
    out: str | Path,
    *,
    backend: str = "onnxruntime",
    threads: int = 1,
    budget_min: float = 30.0,
    seed: int = 0,
    resume: bool = False,
    backend_options: Mapping[str, Any] | None = None,
    bundle: str | Path | None = None,
    name: str | None = None,
    timeout_s: float = 120.0,
    validate_n: int = VALIDATE_N,
    progress: Callable[[BuildProgress], None] | None = None,
    cluster: ClusterSpec | None = None,
    networks_n: int = NETWORKS_N,
) -> BuildResult:
    """Measure, fit and validate a hardware model of this machine (see the module docstring); the bundle is
    written to ``bundle`` (default ``out/hardware.json``). With ``cluster``, of the target its label's workers
    are: they measure every stage and the validation networks (``annette.bench.cluster``); fitting runs here."""
    from annette.backends import get_backend

    if not budget_min > 0 or not math.isfinite(budget_min):
        raise InvalidOptionError(f"the build budget must be a positive number of minutes, got {budget_min}")
    if threads < 1:
        raise InvalidOptionError(f"threads must be >= 1, got {threads}")
    out = Path(out)
    options = {"threads": threads, **dict(backend_options or {})}
    with BenchStore(out) as store:
        if store.count() and not resume:
            raise BenchStoreError(
                f"{store.dir} already holds {store.count()} records; pass --resume to continue its build "
                "or choose another --out directory"
            )
    measure: Callable[..., CampaignResult] = measure_configs
    if cluster is None:
        target = get_backend(backend, **options).describe()
    else:
        from functools import partial

        from annette.bench.cluster import describe_workers, measure_on_cluster

        target = describe_workers(cluster.scheduler, cluster.label, backend=backend, backend_options=options,
                                  connect_timeout_s=cluster.connect_timeout_s).target
        measure = partial(measure_on_cluster, scheduler=cluster.scheduler, target_label=cluster.label,
                          batch_size=cluster.batch_size, worker_wait_s=cluster.worker_wait_s,
                          connect_timeout_s=cluster.connect_timeout_s)
    budget_s = 60.0 * budget_min
    start = time.perf_counter()
    stages: list[StageResult] = []
    spent = _Spent(out / SPENT_FILE)  # seconds each stage has run, over every resumed run of this build
    before = spent.total()

    def elapsed() -> float:
        return before + time.perf_counter() - start

    def left(stage: str) -> float:
        """The stage's budget less what it ran before, within what the measured stages may take in all."""
        share = STAGE_SHARES.get(stage, 1.0) * budget_s - spent.get(stage)
        return max(0.0, min(share, (1 - RESERVE_SHARE) * budget_s - elapsed()))

    def report(stage: str) -> Callable[[CampaignProgress], None]:
        t0 = time.perf_counter()
        base = spent.get(stage)

        def cb(p: CampaignProgress) -> None:
            spent.set(stage, base + time.perf_counter() - t0)
            if progress is not None:
                progress(BuildProgress(stage, p.done, p.failed, elapsed(), budget_s, p.last))
        return cb

    def say(stage: str, message: str) -> None:
        log.info("%s: %s", stage, message)
        if progress is not None:
            progress(BuildProgress(stage, 0, 0, elapsed(), budget_s, message))

    def done(stage: str, res: CampaignResult, t0: float, note: str = "") -> None:
        spent.set(stage, spent.get(stage), force=True)
        stages.append(StageResult(stage, res.measured, res.failed, res.skipped, time.perf_counter() - t0,
                                  res.stopped_by, note))

    # 1. core: the campaign of `annette bench` (resumable by its own plan)
    t0 = time.perf_counter()
    res = run_campaign(out, backend=backend, backend_options=options, budget_s=left("core"),
                       seed=seed, resume=True, timeout_s=timeout_s, progress=report("core"), cluster=cluster)
    done("core", res, t0)
    # 2-4. the other measured stages
    plans = {
        "context": stage_plan("context", target.key, seed=seed, size=4000),
        "overhead": [make_config("node_chain", p, target.key, "overhead") for p in chain_plan()],
        "cache": stage_plan("cache", target.key, seed=seed, size=400, max_cost=math.inf),
    }
    with BenchStore(out) as store:
        for stage, plan in plans.items():
            t0 = time.perf_counter()
            res = measure(store, plan, backend=backend, backend_options=options, target=target,
                          budget_s=left(stage), timeout_s=timeout_s, progress=report(stage))
            done(stage, res, t0)
        # 5. refine until only the reserve is left
        t0 = time.perf_counter()
        measured = failed = rounds = 0
        fit_s = 0.0
        notes = []
        reserve_s = RESERVE_SHARE * budget_s
        while True:
            remaining = budget_s - reserve_s - elapsed()
            if remaining < max(30.0, 1.5 * fit_s):
                break
            f0 = time.perf_counter()
            try:
                new, summary = _refine_round(list(store.records()), target.key, seed=seed + rounds)
            except Exception as exc:  # noqa: BLE001 - refinement is an improvement: the build goes on to the fit
                log.warning("refine round %d failed, going on to the fit: %s: %s", rounds + 1, type(exc).__name__, exc,
                            exc_info=log.isEnabledFor(logging.DEBUG))
                new, summary = [], f"round {rounds + 1} failed: {type(exc).__name__}: {exc}"
            fit_s = time.perf_counter() - f0
            reserve_s = max(reserve_s, FINAL_FIT_FACTOR * fit_s + NETWORK_STAGES_SHARE * budget_s)
            spent.set("refine", spent.get("refine") + fit_s, force=True)
            notes.append(summary)
            say("refine", summary)
            remaining = budget_s - reserve_s - elapsed()
            if not new or remaining < 10.0:
                break
            res = measure(store, new, backend=backend, backend_options=options, target=target,
                                  budget_s=remaining, timeout_s=timeout_s, progress=report("refine"))
            spent.set("refine", spent.get("refine"), force=True)
            measured, failed, rounds = measured + res.measured, failed + res.failed, rounds + 1
        stages.append(StageResult("refine", measured, failed, 0, time.perf_counter() - t0,
                                  "budget", f"{rounds} rounds; " + " | ".join(notes)))
    # 6. fit
    from annette.fit import fit_store

    t0 = time.perf_counter()
    say("fit", f"fitting on the store at {out}")
    hw, report_ = fit_store(out, name=name, progress=lambda m: say("fit", m))
    stages.append(StageResult("fit", 0, 0, 0, time.perf_counter() - t0, "done",
                              f"{sum(report_.records_used.values())} records"))
    # 7. networks: the stacked estimate corrected on whole generated networks (kept where it beats leave-one-out)
    t0 = time.perf_counter()
    say("networks", f"measuring {networks_n} generated networks in 2 rounds")
    nets = validation_networks(networks_n, seed=NETWORKS_SEED)
    if cluster is None:
        graphs, times = measure_networks(nets, backend=backend, backend_options=options)
    else:
        from annette.bench.cluster import run_on_target

        graphs, times = run_on_target(cluster, measure_networks, nets, backend=backend, backend_options=options)
    hw, note = stack_stage(hw, graphs, times)
    say("networks", note)
    stages.append(StageResult("networks", len(graphs), networks_n - len(graphs), 0, time.perf_counter() - t0, "done",
                              note))
    # 8. validate
    t0 = time.perf_counter()
    say("validate", f"measuring {validate_n} generated networks in 2 rounds")
    if cluster is None:
        validation = validate(hw, backend=backend, backend_options=options, n=validate_n)
    else:  # on a worker of the label, as one task
        from annette.bench.cluster import run_on_target

        validation = run_on_target(cluster, validate, hw, backend=backend, backend_options=options, n=validate_n)
    stages.append(StageResult("validate", validation.n, validate_n - validation.n, 0, time.perf_counter() - t0,
                              "done", f"MAPE {validation.metrics.mape_pct:.1f} %"))
    total = elapsed()
    build_info = {
        "command": f"annette build --backend {backend} --threads {threads} --budget-min {budget_min:g}"
                   + (f" --cluster {cluster.scheduler} --target {cluster.label}" if cluster is not None else ""),
        "budget_min": budget_min,
        "elapsed_min": total / 60.0,
        "stages": [s.to_dict() for s in stages],
        "machine": target.to_dict(),
    }
    hw = replace(hw, provenance={**hw.provenance, "build": build_info},
                 quality=replace(hw.quality, validation=validation))
    path = hw.save(Path(bundle) if bundle is not None else out / BUNDLE_FILE)
    return BuildResult(str(path), str(out), tuple(stages), total, validation, report_.to_dict())


SPENT_FILE = "build-progress.json"


class _Spent:
    """Seconds each stage has run, kept in a small JSON file beside the store (written at most every few
    seconds), so that a resumed build gives each stage only what is left of its share."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = 0.0
        try:
            self.values: dict[str, float] = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            self.values = {}

    def get(self, stage: str) -> float:
        return self.values.get(stage, 0.0)

    def total(self) -> float:
        return sum(self.values.values())

    def set(self, stage: str, seconds: float, force: bool = False) -> None:
        self.values[stage] = seconds
        now = time.monotonic()
        if force or now - self._last > 5.0:
            self._last = now
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.values))
            tmp.replace(self.path)


def _refine_round(records: Sequence[BenchRecord], target_key: str, *, seed: int) -> tuple[list[BenchConfig], str]:
    """One round of adaptive sampling: fit the statistical kind on all but every REFINE_HOLDOUT-th record (by id),
    estimate those, and draw new configurations around the worst (``sweeps.refine``, seeds in proportion to
    their error). Returns the configurations and a summary (held-out MAPE overall and of the worst families)."""
    from annette.estimate import estimate_many
    from annette.fit import fit_records

    usable = [r for r in records if r.status == "ok" and r.kind in ("micro", "multi") and r.graph is not None
              and r.measurement is not None and r.family in FAMILIES and FAMILIES.get(r.family).stage in ("core", "context")]
    test = [r for r in usable if int(r.config_id[:6], 16) % REFINE_HOLDOUT == 0]
    train = [r for r in records if int(r.config_id[:6], 16) % REFINE_HOLDOUT != 0]
    if len(test) < 20:
        return [], "too few records to refine"
    hw, _ = fit_records(train, kinds=("statistical",), holdout=0.0, progress=lambda m: None)
    ests = estimate_many([r.graph for r in test if r.graph is not None], hw, kind="statistical")
    measured = np.array([r.measurement.label_ms for r in test if r.measurement is not None])
    err = np.abs(np.array([e.total_ms for e in ests]) - measured) / measured
    configs = [make_config(r.family, r.params, target_key, "refine") for r in test]
    errors = {c.config_id: float(e) for c, e in zip(configs, err, strict=True)}
    by_family: dict[str, list[float]] = {}
    for r, e in zip(test, err, strict=True):
        by_family.setdefault(r.family, []).append(float(e))
    worst = sorted(((float(np.mean(v)), f) for f, v in by_family.items() if len(v) >= 3), reverse=True)[:3]
    new = [c for c in refine(configs, lambda c: errors[c.config_id], target_key, n=REFINE_PER_ROUND, seed=seed,
                             max_cost=CONTEXT_MAX_COST) if _buildable(c)]
    summary = (f"held-out MAPE {100 * float(np.mean(err)):.1f} % on {len(test)} records; worst families "
               + ", ".join(f"{f} {100 * m:.0f} %" for m, f in worst) + f"; {len(new)} new configurations")
    return new, summary


def _buildable(config: BenchConfig) -> bool:
    """Whether a perturbed configuration still builds (sizes coupled in a block, e.g. a pooled skip that must
    match a strided convolution, can make it invalid)."""
    try:
        build_model(config.family, config.params)
    except Exception:  # noqa: BLE001 - any failure to build means: do not measure it
        return False
    return True


# -- validation ---------------------------------------------------------------------------------------------
def validation_networks(n: int, *, seed: int = VALIDATION_SEED) -> list[tuple[str, Any]]:
    """``n`` generated networks no build stage measures, drawn with ``seed`` (not a stage's), a third each:
    NAS-Bench-201 networks (0.1-3 ms), blocks in context, and whole networks of mainstream size (2-80 ms,
    ``annette.bench.networks``). Returns (name, onnx.ModelProto)."""
    from annette.bench.networks import NET_MAX_MACS
    from annette.spaces.nb201 import onnx_from_arch, sample_archs

    n_cells, n_blocks = n // 3, n // 3
    nets: list[tuple[str, Any]] = [(f"nb201:{a}", onnx_from_arch(a)) for a in sample_archs(n_cells, seed=seed)]
    cfgs = [*stage_plan("context", "validation", seed=seed, size=n_blocks),
            *stage_plan("network", "validation", seed=seed, size=n - n_cells - n_blocks, max_cost=NET_MAX_MACS)]
    nets += [(f"{cfg.family}:{cfg.config_id}", build_model(cfg.family, cfg.params, name=cfg.family)) for cfg in cfgs]
    return nets


def measure_networks(nets: Sequence[tuple[str, Any]], *, backend: str, backend_options: Mapping[str, Any],
                     rounds: int = 2) -> tuple[dict[str, Graph], dict[str, list[float]]]:
    """Each (name, ONNX model) measured end to end in ``rounds`` interleaved rounds: its graph and its times per
    round. A network the backend cannot prepare is skipped with a warning."""
    from annette.backends import get_backend
    from annette.bench.runner import NETWORK_PROTOCOL, measure
    from annette.importers.onnx import graph_from_onnx

    be = get_backend(backend, **dict(backend_options))
    prepared: dict[str, Any] = {}
    graphs: dict[str, Graph] = {}
    for name, model in nets:
        try:
            graph = graph_from_onnx(model)
            prepared[name] = be.prepare(model, graph)
            graphs[name] = graph
        except AnnetteError as exc:
            log.warning("network %s skipped: %s", name, exc)
    times: dict[str, list[float]] = {k: [] for k in prepared}
    for _ in range(rounds):
        for name, p in prepared.items():
            times[name].append(measure(p, NETWORK_PROTOCOL).label_ms)
    return {k: graphs[k] for k in prepared}, times


def stack_stage(hw: HardwareModel, graphs: Mapping[str, Graph], times: Mapping[str, Sequence[float]]
                ) -> tuple[HardwareModel, str]:
    """The network stage: generated networks measured end to end (:func:`validation_networks` drawn with
    :data:`NETWORKS_SEED`, neither a stage's nor the validation's) correct the fitted bundle where that beats it
    leave-one-out (:func:`annette.calibrate.stack_on_networks`). Returns the bundle and a note."""
    from annette.calibrate import stack_on_networks

    names = [k for k in graphs if times.get(k)]
    if len(names) < 3:
        return hw, f"{len(names)} networks measured: too few, the fitted bundle is kept as it is"
    new, report, kept = stack_on_networks(hw, [graphs[k] for k in names], [min(times[k]) for k in names])
    before, after = report.before, report.after
    assert before is not None and after is not None
    factors = ", ".join(f"{g} {f:.3f}" for g, f in sorted(_group_factors(report.scales).items()))
    node_us = 1000 * (report.overhead.per_node_ms - report.overhead.profiler_node_ms)
    note = (f"{len(names)} networks: MAPE {before.mape_pct:.1f} % -> {after.mape_pct:.1f} % leave-one-out; "
            + (f"kept (factors {factors}; {node_us:.2f} µs per node; size slope {report.size_slope:+.3f} at "
               f"{report.size_ref_mb:.0f} MB)" if kept
               else "not kept (no better than the fitted bundle)"))
    return new, note


def _group_factors(scales: Mapping[str, float]) -> dict[str, float]:
    from annette.calibrate import group_of

    return {group_of(t): f for t, f in scales.items()}


@dataclass(frozen=True)
class NetworkRun:
    """Networks measured end to end (:func:`measure_networks`) and estimated: per network, in ``names`` order, the
    minimum of its rounds and the estimate; the times of every round; the noise floor (round 1 against the last)."""

    names: tuple[str, ...]
    measured_ms: np.ndarray
    estimated_ms: np.ndarray
    rounds_ms: Mapping[str, list[float]]

    @property
    def noise(self) -> Metrics:
        return noise_floor([self.rounds_ms[k][0] for k in self.names], [self.rounds_ms[k][-1] for k in self.names])


def measure_and_estimate(nets: Sequence[tuple[str, Any]], hw: HardwareModel, *, kind: str, backend: str,
                         backend_options: Mapping[str, Any], rounds: int) -> NetworkRun:
    """Each (name, ONNX model) measured in ``rounds`` interleaved rounds and estimated with ``hw`` (``kind``)."""
    from annette.estimate import estimate_many

    graphs, times = measure_networks(nets, backend=backend, backend_options=backend_options, rounds=rounds)
    names = tuple(graphs)
    est = np.array([x.total_ms for x in estimate_many([graphs[k] for k in names], hw, kind=kind)])
    return NetworkRun(names, np.array([min(times[k]) for k in names]), est, times)


def validate(
    hw: HardwareModel,
    *,
    backend: str,
    backend_options: Mapping[str, Any],
    n: int = VALIDATE_N,
    kind: str = "mixed",
    rounds: int = 2,
) -> ValidationRecord:
    """Measure :func:`validation_networks` end to end in ``rounds`` interleaved rounds (label: the minimum), estimate
    them with ``hw``, and score them against the minimum, with the noise floor (round 1 against the last) beside."""
    kind = kind if kind in hw.kinds else hw.kinds[-1]
    measured_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    run = measure_and_estimate(validation_networks(n), hw, kind=kind, backend=backend,
                               backend_options=backend_options, rounds=rounds)
    rows = tuple({"network": k, "measured_ms": float(mm), "estimated_ms": float(ee), "rounds_ms": run.rounds_ms[k]}
                 for k, mm, ee in zip(run.names, run.measured_ms, run.estimated_ms, strict=True))
    return ValidationRecord(
        kind, Accuracy.from_dict(compute_metrics(run.measured_ms, run.estimated_ms).to_dict(), "validation.metrics"),
        Accuracy.from_dict(run.noise.to_dict(), "validation.noise_floor"), rows, drawn=n, measured_at=measured_at)
