"""A benchmark campaign: a seeded, shuffled plan of configurations measured into a store, resumable.

The plan mixes micro-kernels (``micro_share``, default 75 %, spread over the micro families by how often
their layer type occurs in real networks; 40 % of them configurations that occur in torchvision networks,
the rest log-uniform random draws) and multi-layer blocks (25 %, over the block families by their ``Family.weight``). The
plan is a pure function of (seed, target key, size), so ``resume`` regenerates it and skips the
configurations the store already has: a campaign killed at any point and resumed ends with every
configuration exactly once. Each configuration runs in the isolated ``Worker``; the time budget stops
the campaign before a configuration that would not fit (by the mean duration so far).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annette.bench.blocks import FAMILIES, sample_params, stage_families
from annette.bench.runner import DEFAULT_PROTOCOL, TimingProtocol
from annette.bench.store import BenchStore
from annette.bench.sweeps import BenchConfig, family_weights, load_priors, make_config
from annette.bench.worker import PROFILE_RUNS, Worker
from annette.errors import BenchStoreError, InvalidOptionError
from annette.records import Target

if TYPE_CHECKING:
    from annette.bench.cluster import ClusterSpec

log = logging.getLogger(__name__)

PLAN_SIZE = 20_000
PRIOR_SHARE = 0.4


def plan_campaign(target_key: str, *, seed: int = 0, size: int = PLAN_SIZE, micro_share: float = 0.75) -> list[BenchConfig]:
    """``size`` distinct configurations in a random order (deterministic in its arguments)."""
    if not 0.0 <= micro_share <= 1.0:
        raise InvalidOptionError(f"micro_share must be in [0, 1], got {micro_share}")
    rng = np.random.default_rng(seed)
    weights = family_weights()
    micro, micro_p = list(weights), np.array(list(weights.values()))
    multi = [n for n in stage_families("core") if FAMILIES.get(n).kind == "multi"]
    multi_p = np.array([FAMILIES.get(n).weight for n in multi], dtype=float)
    multi_p /= multi_p.sum()
    priors = {f: list(v) for f, v in load_priors()["families"].items()}
    for f in priors:
        rng.shuffle(priors[f])  # type: ignore[arg-type]
    seen: set[str] = set()
    plan: list[BenchConfig] = []
    attempts = 0
    while len(plan) < size and attempts < size * 20:
        attempts += 1
        if rng.random() < micro_share:
            family = str(rng.choice(micro, p=micro_p))
            if priors.get(family) and rng.random() < PRIOR_SHARE:
                cfg = make_config(family, priors[family].pop(), target_key, "prior")
            else:
                cfg = make_config(family, sample_params(family, rng), target_key, "random")
        else:
            family = str(rng.choice(multi, p=multi_p))
            cfg = make_config(family, sample_params(family, rng), target_key, "random")
        if cfg.config_id not in seen:
            seen.add(cfg.config_id)
            plan.append(cfg)
    return plan


@dataclass(frozen=True)
class CampaignProgress:
    done: int  # measured in this run (ok + failed)
    failed: int
    left: int  # configurations of the plan not yet in the store
    elapsed_s: float
    eta_s: float  # until the budget or the plan ends, whichever is first
    last: str  # family of the last configuration


@dataclass(frozen=True)
class CampaignResult:
    measured: int
    failed: int
    skipped: int  # already in the store (resume)
    elapsed_s: float
    stopped_by: str  # "plan" | "budget" | "max_configs"
    store: str
    records_per_min: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_campaign(
    store_dir: str | Path,
    *,
    backend: str = "onnxruntime",
    backend_options: Mapping[str, Any] | None = None,
    budget_s: float | None = None,
    max_configs: int | None = None,
    seed: int = 0,
    resume: bool = False,
    micro_share: float = 0.75,
    plan_size: int = PLAN_SIZE,
    protocol: TimingProtocol = DEFAULT_PROTOCOL,
    profile_runs: int = PROFILE_RUNS,
    timeout_s: float = 120.0,
    progress: Callable[[CampaignProgress], None] | None = None,
    cluster: ClusterSpec | None = None,
    retry_failed: bool = False,
) -> CampaignResult:
    """Measure the seeded plan into the store at ``store_dir`` until the plan, ``max_configs`` or the
    ``budget_s`` ends. A store that already holds records needs ``resume=True``; resuming takes the
    campaign's settings (backend, options, seed, mix) from the store and refuses different ones;
    ``retry_failed`` also measures again the configurations stored as failed (replacing their records).
    With ``cluster`` the target is its label's workers and they measure the plan (``annette.bench.cluster``)."""
    from annette.backends import get_backend

    check_campaign_options(budget_s=budget_s, max_configs=max_configs, plan_size=plan_size, timeout_s=timeout_s,
                           profile_runs=profile_runs, micro_share=micro_share)
    if retry_failed and cluster is not None:
        raise InvalidOptionError("retry_failed (--retry-failed) is not supported on a cluster yet; resume without it")

    settings: dict[str, Any] = {
        "backend": backend, "backend_options": dict(backend_options or {}), "seed": seed,
        "micro_share": micro_share, "plan_size": plan_size,
    }
    store = BenchStore(store_dir)
    try:
        if store.count() and not resume:
            raise BenchStoreError(
                f"{store.dir} already holds {store.count()} records; pass --resume to continue its campaign "
                "or choose another --out directory"
            )
        stored = store.meta().get("campaign")
        if resume and stored is not None:
            settings = json.loads(stored)
        store.set_meta("campaign", json.dumps(settings, sort_keys=True))
        if cluster is None:
            be = get_backend(str(settings["backend"]), **dict(settings["backend_options"]))
            target = be.describe()
        else:  # the target is the one the label's workers are, not this machine
            from annette.bench.cluster import describe_workers

            target = describe_workers(cluster.scheduler, cluster.label, backend=str(settings["backend"]),
                                      backend_options=dict(settings["backend_options"]),
                                      connect_timeout_s=cluster.connect_timeout_s).target
        store.set_meta("target", json.dumps(target.to_dict(), sort_keys=True))
        plan = plan_campaign(target.key, seed=int(settings["seed"]), size=int(settings["plan_size"]),
                             micro_share=float(settings["micro_share"]))
        have = store.ids("ok") if retry_failed else store.ids()
        todo = [c for c in plan if c.config_id not in have]
        skipped = len(plan) - len(todo)
        log.info("campaign on %s: %d configurations planned, %d already stored", target.key, len(plan), skipped)
        if cluster is not None:
            from annette.bench.cluster import measure_on_cluster

            return measure_on_cluster(
                store, todo, scheduler=cluster.scheduler, target_label=cluster.label, backend=str(settings["backend"]),
                backend_options=dict(settings["backend_options"]), target=target, protocol=protocol,
                profile_runs=profile_runs, timeout_s=timeout_s, budget_s=budget_s, max_configs=max_configs,
                batch_size=cluster.batch_size, worker_wait_s=cluster.worker_wait_s,
                connect_timeout_s=cluster.connect_timeout_s, skipped=skipped, progress=progress,
            )
        return measure_configs(
            store, todo, backend=str(settings["backend"]), backend_options=dict(settings["backend_options"]),
            target=target, budget_s=budget_s, max_configs=max_configs, protocol=protocol, profile_runs=profile_runs,
            timeout_s=timeout_s, progress=progress, skipped=skipped, retry_failed=retry_failed,
        )
    finally:
        store.close()


def check_campaign_options(
    *, budget_s: float | None = None, max_configs: int | None = None, plan_size: int = PLAN_SIZE,
    timeout_s: float = 120.0, profile_runs: int = PROFILE_RUNS, micro_share: float = 0.75,
) -> None:
    """One place for a campaign's option ranges (the CLI's --budget-min, --max-configs, --plan-size, --timeout,
    --profile-runs, --micro-share); raises AnnetteError naming the option. A timeout <= 0 used to store every
    configuration as failed."""
    bad = []
    if budget_s is not None and not (math.isfinite(budget_s) and budget_s >= 0):
        bad.append(f"budget {budget_s} s (--budget-min) must be >= 0")
    if max_configs is not None and max_configs < 0:
        bad.append(f"max_configs {max_configs} (--max-configs) must be >= 0")
    if plan_size < 1:
        bad.append(f"plan_size {plan_size} (--plan-size) must be >= 1")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        bad.append(f"timeout {timeout_s} s (--timeout) must be > 0")
    if profile_runs < 0:
        bad.append(f"profile_runs {profile_runs} (--profile-runs) must be >= 0")
    if not 0.0 <= micro_share <= 1.0:
        bad.append(f"micro_share {micro_share} (--micro-share) must be in [0, 1]")
    if bad:
        raise InvalidOptionError("invalid campaign options: " + "; ".join(bad))


def measure_configs(
    store: BenchStore,
    todo: Sequence[BenchConfig],
    *,
    backend: str,
    backend_options: Mapping[str, Any],
    target: Target,
    budget_s: float | None = None,
    max_configs: int | None = None,
    protocol: TimingProtocol = DEFAULT_PROTOCOL,
    profile_runs: int = PROFILE_RUNS,
    timeout_s: float = 120.0,
    progress: Callable[[CampaignProgress], None] | None = None,
    skipped: int = 0,
    retry_failed: bool = False,
) -> CampaignResult:
    """Measure ``todo`` in order into ``store``, each configuration in the isolated ``Worker``, until the list,
    ``max_configs`` or ``budget_s`` ends (a configuration that would not fit, by the mean duration so far, is
    not started). Configurations the store already holds are skipped (counted in ``skipped``)."""
    check_campaign_options(timeout_s=timeout_s, profile_runs=profile_runs, budget_s=budget_s, max_configs=max_configs)
    start = time.perf_counter()
    have = store.ids("ok") if retry_failed else store.ids()  # retry_failed: failed ones are measured again
    todo = [c for c in todo if c.config_id not in have]
    measured = failed = 0
    stopped_by = "plan"
    durations: list[float] = []  # per configuration, the first (worker start-up) excluded
    with Worker(backend, dict(backend_options), target=target, protocol=protocol,
                profile_runs=profile_runs, timeout_s=timeout_s) as worker:
        for i, config in enumerate(todo):
            elapsed = time.perf_counter() - start
            if max_configs is not None and measured >= max_configs:
                stopped_by = "max_configs"
                break
            expected = sum(durations) / len(durations) if durations else 0.0
            if budget_s is not None and elapsed + expected > budget_s:
                stopped_by = "budget"
                break
            t0 = time.perf_counter()
            record = worker.run(config)
            store.add(record, replace=retry_failed)
            if measured:
                durations.append(time.perf_counter() - t0)
            measured += 1
            failed += record.status != "ok"
            if progress is not None:
                elapsed = time.perf_counter() - start
                left = len(todo) - i - 1
                per = elapsed / measured
                eta = left * per if budget_s is None else min(left * per, max(0.0, budget_s - elapsed))
                progress(CampaignProgress(measured, failed, left, elapsed, eta, config.family))
    elapsed = time.perf_counter() - start
    return CampaignResult(measured, failed, skipped, elapsed, stopped_by, str(store.dir),
                          60.0 * measured / elapsed if elapsed > 0 else 0.0)
