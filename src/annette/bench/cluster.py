"""Benchmark campaigns on many target hosts over Dask distributed: one driver, one store, workers by label.

A target host runs a stock Dask worker that advertises its target label as a resource::

    dask worker tcp://SCHEDULER:8786 --resources "annette-target-NAME=1" --nthreads 1

(with annette installed there). The driver (``measure_on_cluster``) asks every worker under the label to
describe its target with the campaign's backend settings and refuses a label whose workers differ (CPU model,
runtime, runtime version, ...: ``describe_workers``); it then submits the configurations in small batches, each
a task that needs the label's resource, so only that label's workers run them, one batch at a time per
worker. On the worker the batch runs through annette's isolated ``Worker`` (bench/worker.py: a persistent
measurement subprocess with per-configuration timeouts and crash isolation), kept alive between batches;
the records come back as JSON with the task's result, and the driver adds each to its own SQLite store as
the batch arrives. Nothing is stored on a worker.

Faults. A worker killed mid-batch loses that batch's unfinished work only: the scheduler gives the task to
another worker of the label (it is measured again from the start of the batch, and the driver stores each
configuration once); a batch the scheduler gives up on instead (``KilledWorker``: its workers died too
often) is sent again once, then stays pending; with no worker left under the label the batches wait for one for ``worker_wait_s``,
then the campaign ends with ``stopped_by="no_workers"`` and reports them as ``pending``. A driver killed
at any point leaves every record it had stored; the same campaign run again skips the stored configurations
(``run_campaign(..., resume=True)``). A scheduler that cannot be reached is one ``ClusterError``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import platform
import queue
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from annette.bench.campaign import CampaignProgress, CampaignResult
from annette.bench.runner import DEFAULT_PROTOCOL, TimingProtocol
from annette.bench.store import BenchStore
from annette.bench.sweeps import BenchConfig, config_id
from annette.bench.worker import PROFILE_RUNS, Worker
from annette.errors import AnnetteError, ClusterError, InvalidOptionError
from annette.records import BenchRecord, Target

log = logging.getLogger(__name__)

R = TypeVar("R")

RESOURCE_PREFIX = "annette-target-"
DEFAULT_BATCH = 8  # configurations per task: a few seconds of work, so a lost worker costs little
POLL_S = 0.5  # how often the driver looks at the scheduler while batches run
RESULT_FETCH_S = 30.0  # a finished batch's result (JSON records) is fetched from its worker well within this
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Target fields that must agree between the workers of one label ("extra" minus the host's CPU count).
_HOST_ONLY_EXTRA = frozenset({"logical_cpus"})


def resource_name(label: str) -> str:
    """The Dask worker resource that marks a worker as target ``label``: ``annette-target-LABEL``."""
    if not _LABEL.match(label):
        raise ClusterError(
            f"target label {label!r} is not valid: use letters, digits, '.', '_' and '-' (it names a Dask "
            "resource and a store directory)"
        )
    return RESOURCE_PREFIX + label


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(
            f"benchmark clusters need Dask distributed (pip install 'annette[cluster]'): {exc}"
        ) from exc
    return distributed


@contextlib.contextmanager
def connect(scheduler: Any, *, timeout_s: float = 10.0) -> Iterator[Any]:
    """A ``distributed.Client`` on ``scheduler`` (an address such as ``tcp://HOST:8786``), closed on exit;
    an existing Client is used as it is (and left open). An unreachable scheduler is a ``ClusterError``."""
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    address = str(scheduler)
    try:
        client = distributed.Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout_s:.0f} s ({type(exc).__name__}: {exc}); "
            "start one with `dask scheduler` and pass its address, e.g. tcp://HOST:8786"
        ) from None
    try:
        yield client
    finally:
        client.close()


# -- describing the workers of a label ------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    """One Dask worker under a label, as it describes itself."""

    address: str
    host: str
    target: Target
    annette_version: str
    python: str
    nthreads: int
    slots: float  # how many of the label's tasks the worker runs at once (its resource amount)

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "host": self.host, "target": self.target.to_dict(),
                "annette_version": self.annette_version, "python": self.python, "nthreads": self.nthreads,
                "slots": self.slots}


@dataclass(frozen=True)
class LabelInfo:
    """A target label: the one target all its workers are, and the workers."""

    label: str
    target: Target
    workers: tuple[WorkerInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "target": self.target.to_dict(), "workers": [w.to_dict() for w in self.workers]}


def target_identity(target: Target, annette_version: str = "") -> dict[str, str]:
    """What must agree between two workers of one label: every target field, the runtime's extra settings
    and CPU features (not the host's CPU count), and the annette version."""
    doc = {k: str(v) for k, v in target.to_dict().items() if k != "extra"}
    doc.update({f"extra.{k}": str(v) for k, v in target.extra.items() if k not in _HOST_ONLY_EXTRA})
    if annette_version:
        doc["annette_version"] = annette_version
    return doc


def target_differences(a: Target, b: Target) -> dict[str, tuple[str, str]]:
    """Fields of ``target_identity`` on which ``a`` and ``b`` differ: {field: (a's, b's)}."""
    ia, ib = target_identity(a), target_identity(b)
    return {k: (ia.get(k, "-"), ib.get(k, "-")) for k in sorted(set(ia) | set(ib)) if ia.get(k) != ib.get(k)}


def check_same_target(label: str, workers: Sequence[WorkerInfo]) -> Target:
    """The target every worker of ``label`` is; a ``ClusterError`` naming the differing fields and which
    worker has which value when they are not all the same target."""
    if not workers:
        raise ClusterError(f"target label {label!r} has no worker")
    identities = [target_identity(w.target, w.annette_version) for w in workers]
    keys = sorted({k for i in identities for k in i})
    differing = [k for k in keys if len({i.get(k, "-") for i in identities}) > 1]
    if differing:
        lines = []
        for k in differing:
            values: dict[str, list[str]] = {}
            for w, ident in zip(workers, identities, strict=True):
                values.setdefault(ident.get(k, "-"), []).append(f"{w.host} ({w.address})")
            lines.append(f"{k}: " + "; ".join(f"{v!r} on {', '.join(ws)}" for v, ws in values.items()))
        raise ClusterError(
            f"the {len(workers)} workers under target label {label!r} are not one target: " + " | ".join(lines)
            + f". Give each kind of target its own label (--resources \"{RESOURCE_PREFIX}NAME=1\")"
        )
    return workers[0].target


def _describe_here(backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Run on a worker (``Client.run``): the target this host is with the campaign's backend settings."""
    import annette
    from annette.backends import get_backend

    target = get_backend(backend, **dict(options)).describe()
    return {"target": target.to_dict(), "annette_version": annette.__version__,
            "python": platform.python_version(), "host": platform.node()}


def _label_workers(client: Any, label: str) -> dict[str, dict[str, Any]]:
    """The scheduler's view of the workers that advertise ``label``'s resource: {address: info}."""
    res = resource_name(label)
    lost = f"lost the Dask scheduler at {client.scheduler.address}; what was measured is stored (resume with --resume)"
    try:
        info = client.scheduler_info()
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"{lost}: {type(exc).__name__}: {exc}") from None
    if "workers" not in info or client.status != "running":  # the client is reconnecting, or gave up
        raise ClusterError(f"{lost} (client {client.status})")
    workers = info["workers"]
    return {a: w for a, w in workers.items() if float((w.get("resources") or {}).get(res, 0)) > 0}


def cluster_labels(client: Any) -> dict[str, int]:
    """Every target label the scheduler's workers advertise, with how many workers each has."""
    out: dict[str, int] = {}
    for w in client.scheduler_info().get("workers", {}).values():
        for res, amount in (w.get("resources") or {}).items():
            if str(res).startswith(RESOURCE_PREFIX) and float(amount) > 0:
                label = str(res)[len(RESOURCE_PREFIX):]
                out[label] = out.get(label, 0) + 1
    return dict(sorted(out.items()))


def describe_workers(
    scheduler: Any,
    label: str,
    *,
    backend: str = "onnxruntime",
    backend_options: Mapping[str, Any] | None = None,
    connect_timeout_s: float = 10.0,
) -> LabelInfo:
    """Ask every worker under ``label`` which target it is with ``backend`` and its options (as the
    campaign will run it) and check that they are all the same target.

    Raises ``ClusterError`` when the scheduler cannot be reached, no worker has the label (listing the
    labels there are), a worker cannot build the backend, or the workers are not one target."""
    options = dict(backend_options or {})
    res = resource_name(label)
    with connect(scheduler, timeout_s=connect_timeout_s) as client:
        workers = _label_workers(client, label)
        if not workers:
            labels = cluster_labels(client)
            there = ", ".join(f"{k} ({n} workers)" for k, n in labels.items()) or "none"
            raise ClusterError(
                f"no worker of the scheduler at {client.scheduler.address} advertises target label {label!r} "
                f"(start one with: dask worker {client.scheduler.address} --resources \"{res}=1\" --nthreads 1); "
                f"labels there: {there}"
            )
        answers = client.run(_describe_here, backend, options, workers=list(workers), on_error="return")
    infos, errors = [], []
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            errors.append(f"{address}: {type(answer).__name__}: {answer}")
            continue
        sched = workers[address]
        infos.append(WorkerInfo(
            address=address, host=str(answer["host"]), target=Target.from_dict(answer["target"]),
            annette_version=str(answer["annette_version"]), python=str(answer["python"]),
            nthreads=int(sched.get("nthreads", 1)), slots=float(sched["resources"][res]),
        ))
    if errors:
        raise ClusterError(f"workers under target label {label!r} cannot run backend {backend!r}: " + "; ".join(errors))
    target = check_same_target(label, infos)
    for w in infos:
        if w.nthreads > 1 or w.slots > 1:
            log.warning("worker %s (%s) has %d threads and %g slots of %s: measurements may run side by side "
                        "on that host and disturb each other (start it with --nthreads 1 and %s=1)",
                        w.address, w.host, w.nthreads, w.slots, res, res)
    return LabelInfo(label, target, tuple(infos))


# -- the worker side ------------------------------------------------------------------------------------

_LOCAL_LOCK = threading.Lock()
_LOCAL: dict[str, tuple[Target, Worker]] = {}  # settings -> (this host's target, its measurement worker)
_LOCAL_MAX = 4


def _local_worker(settings: Mapping[str, Any]) -> tuple[Target, Worker]:
    """This process's isolated measurement worker for the campaign's settings, started once and kept for
    the next batches (the runtime loads once per host, not once per batch)."""
    from annette.backends import get_backend

    key = json.dumps({k: settings[k] for k in ("backend", "backend_options", "protocol", "profile_runs", "timeout_s")},
                     sort_keys=True)
    if key in _LOCAL:
        return _LOCAL[key]
    while len(_LOCAL) >= _LOCAL_MAX:  # the oldest settings' worker goes
        _, old = _LOCAL.pop(next(iter(_LOCAL)))
        old.close()
    # dask's nanny starts its worker process as a daemon, and multiprocessing refuses children to a daemon;
    # the measurement subprocess is itself a daemon and exits when its pipe to this process closes.
    me = mp.current_process()
    if me.daemon:
        me.daemon = False
    target = get_backend(str(settings["backend"]), **dict(settings["backend_options"])).describe()
    worker = Worker(str(settings["backend"]), dict(settings["backend_options"]), target=target,
                    protocol=TimingProtocol(**settings["protocol"]), profile_runs=int(settings["profile_runs"]),
                    timeout_s=float(settings["timeout_s"]))
    _LOCAL[key] = (target, worker)
    return target, worker


def _measure_batch(configs_json: str, settings_json: str) -> str:
    """Run on a worker (a task): measure the configurations through the isolated worker; the records as JSON."""
    settings = json.loads(settings_json)
    expected = Target.from_dict(settings["target"])
    try:
        from distributed import get_worker

        address = str(get_worker().address)
    except (ImportError, ValueError):
        address = f"pid {os.getpid()}"
    host = platform.node()
    with _LOCAL_LOCK:
        target, worker = _local_worker(settings)
        diff = target_differences(expected, target)
        if diff:
            raise ClusterError(
                f"worker {address} ({host}) under label {settings['label']!r} is not the campaign's target: "
                + ", ".join(f"{k} {a!r} expected, {b!r} here" for k, (a, b) in diff.items())
            )
        t0 = time.perf_counter()
        records = [worker.run(BenchConfig.from_dict(c)).to_dict() for c in json.loads(configs_json)]
    return json.dumps({"worker": address, "host": host, "elapsed_s": time.perf_counter() - t0, "records": records},
                      separators=(",", ":"))


# -- the driver -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerProgress:
    address: str
    host: str
    done: int  # configurations this worker measured in this run (ok + failed)
    failed: int
    rate_per_min: float  # over the run so far
    alive: bool  # still connected to the scheduler

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ClusterProgress(CampaignProgress):
    """A campaign's progress on one label (``CampaignProgress``'s fields, plus the label's and each worker's)."""

    label: str = ""
    running: int = 0  # configurations in submitted batches not back yet
    rate_per_min: float = 0.0
    workers: tuple[WorkerProgress, ...] = ()


@dataclass(frozen=True)
class ClusterResult(CampaignResult):
    """``CampaignResult`` for one label, plus what stayed pending and what each worker did."""

    label: str = ""
    pending: int = 0  # submitted and not stored at the end (no worker left, or a task lost); resumable
    duplicates: int = 0  # records that came back twice (a batch run again elsewhere) and were stored once
    workers_lost: int = 0
    errors: tuple[str, ...] = ()
    workers: tuple[WorkerProgress, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["errors"] = list(self.errors)
        doc["workers"] = [w.to_dict() for w in self.workers]
        return doc


@dataclass
class _Tally:
    host: str
    done: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ClusterSpec:
    """Where a campaign runs when not here: the scheduler and the target label (``run_campaign(cluster=)``)."""

    scheduler: str
    label: str
    batch_size: int = DEFAULT_BATCH
    worker_wait_s: float = 60.0  # how long batches wait for a worker when the label has none left
    connect_timeout_s: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _check_store_target(store: BenchStore, target: Target) -> None:
    others = {k: n for k, n in store.summary()["targets"].items() if k != target.key}
    if others:
        raise ClusterError(
            f"{store.dir} holds records of other targets ({', '.join(f'{k}: {n}' for k, n in others.items())}); "
            f"the label's workers are {target.key}: use another store directory"
        )


def measure_on_cluster(
    store: BenchStore,
    configs: Sequence[BenchConfig],
    *,
    scheduler: Any,
    target_label: str,
    backend: str = "onnxruntime",
    backend_options: Mapping[str, Any] | None = None,
    target: Target | None = None,
    protocol: TimingProtocol = DEFAULT_PROTOCOL,
    profile_runs: int = PROFILE_RUNS,
    timeout_s: float = 120.0,
    budget_s: float | None = None,
    max_configs: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    worker_wait_s: float = 60.0,
    connect_timeout_s: float = 10.0,
    skipped: int = 0,
    progress: Callable[[ClusterProgress], None] | None = None,
) -> ClusterResult:
    """Measure ``configs`` on the workers of ``target_label`` into ``store`` (the driver's), skipping those it
    holds; the counterpart of the local campaign loop. ``target`` is the target the configurations were
    planned for (``describe_workers(...).target``; checked against the workers when given); ``skipped`` is
    added to the configurations found stored. Stops at the end of the list, after ``max_configs``, when the
    next batch would not fit in ``budget_s``, or when the label has had no worker for ``worker_wait_s``."""
    if batch_size < 1:
        raise InvalidOptionError(f"batch_size must be >= 1, got {batch_size}")
    options = dict(backend_options or {})
    with connect(scheduler, timeout_s=connect_timeout_s) as client:
        info = describe_workers(client, target_label, backend=backend, backend_options=options)
        if target is not None:
            diff = target_differences(target, info.target)
            if diff:
                raise ClusterError(
                    f"the workers under label {target_label!r} are not the target the configurations were planned "
                    "for: " + ", ".join(f"{k} {a!r} planned, {b!r} there" for k, (a, b) in diff.items())
                )
        target = info.target
        for c in configs:
            if c.config_id != config_id(c.family, c.params, target.key):
                raise ClusterError(
                    f"configuration {c.config_id} ({c.family}) was not planned for target {target.key} "
                    "(plan the campaign with the label's target, describe_workers(...).target.key)"
                )
        _check_store_target(store, target)
        store.set_meta("cluster", json.dumps({"scheduler": str(client.scheduler.address), **info.to_dict()},
                                             sort_keys=True))
        have = store.ids()
        todo, seen = [], set(have)
        for c in configs:
            if c.config_id not in seen:
                seen.add(c.config_id)
                todo.append(c)
        skipped += sum(c.config_id in have for c in configs)
        capped = max_configs is not None and len(todo) > max_configs
        if max_configs is not None:
            todo = todo[:max_configs]
        settings = {
            "label": target_label, "backend": backend, "backend_options": options, "protocol": protocol.to_dict(),
            "profile_runs": profile_runs, "timeout_s": timeout_s, "target": target.to_dict(),
        }
        log.info("cluster campaign on %s (%s, %d workers): %d configurations to measure, %d stored",
                 target_label, target.key, len(info.workers), len(todo), skipped)
        driver = _Driver(client, store, target, target_label, settings, have, budget_s, batch_size,
                         worker_wait_s, timeout_s, progress)
        result = driver.run(todo, skipped, capped)
    return result


def run_on_target(cluster: ClusterSpec, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)`` run as one task on a worker of ``cluster.label`` (for work that is not a list of
    configurations, e.g. measuring whole networks to validate a model); its result, or its error raised here.
    The task runs in the worker's own process (not in the isolated measurement subprocess); a worker lost on
    the way hands it to another of the label; with none for ``worker_wait_s`` it is a ``ClusterError``.
    Arguments and result travel with Dask's own serialisation."""
    with connect(cluster.scheduler, timeout_s=cluster.connect_timeout_s) as client:
        if not _label_workers(client, cluster.label):
            raise ClusterError(f"no worker advertises target label {cluster.label!r} at {cluster.scheduler}")
        key = f"annette-{getattr(fn, '__name__', 'task')}-{cluster.label}-{uuid.uuid4().hex[:12]}"
        fut = client.submit(fn, *args, key=key, pure=False, resources={resource_name(cluster.label): 1}, **kwargs)
        no_worker_since: float | None = None
        while not fut.done():
            time.sleep(POLL_S)
            if _label_workers(client, cluster.label):
                no_worker_since = None
            elif no_worker_since is None:
                no_worker_since = time.monotonic()
            elif time.monotonic() - no_worker_since > cluster.worker_wait_s:
                fut.cancel()
                raise ClusterError(f"label {cluster.label!r} has had no worker for {cluster.worker_wait_s:.0f} s; "
                                   f"{key} was not run")
        result: R = fut.result()
        return result


class _Driver:
    """The submission loop of one label: batches in flight, records into the store, progress, stop rules."""

    def __init__(self, client: Any, store: BenchStore, target: Target, label: str, settings: Mapping[str, Any],
                 stored: set[str], budget_s: float | None, batch_size: int, worker_wait_s: float,
                 timeout_s: float, progress: Callable[[ClusterProgress], None] | None) -> None:
        self.client, self.store, self.target, self.label = client, store, target, label
        self.settings_json = json.dumps(settings, sort_keys=True)
        self.resource = resource_name(label)
        self.stored = set(stored)
        self.budget_s, self.batch_size, self.worker_wait_s = budget_s, batch_size, worker_wait_s
        self.timeout_s, self.progress = timeout_s, progress
        self.start = time.perf_counter()
        self.measured = self.failed = self.duplicates = 0
        self.pending: list[BenchConfig] = []
        self.resent: set[str] = set()  # first configuration of each batch sent again after it was lost
        self.errors: list[str] = []
        self.tallies: dict[str, _Tally] = {}
        self.alive: set[str] = set()
        self.ever_alive: set[str] = set()
        self.hosts: dict[str, str] = {}
        self.batch_s: list[float] = []
        self.last_family = ""
        self.left = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def run(self, todo: list[BenchConfig], skipped: int, capped: bool) -> ClusterResult:
        todo_batches: deque[list[BenchConfig]] = deque(
            todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size))
        in_flight: dict[Any, list[BenchConfig]] = {}
        finished: queue.Queue[Any] = queue.Queue()  # futures, as they complete (their done-callback)
        self.left = len(todo)
        stopped_by = "max_configs" if capped else "plan"
        budget_hit = False
        no_worker_since: float | None = None
        self._poll_workers()
        try:
            while todo_batches or in_flight:
                n = len(self.alive)
                while todo_batches and not budget_hit and len(in_flight) < max(1, 2 * n):
                    if self._over_budget(len(in_flight), n):
                        budget_hit, stopped_by = True, "budget"
                        break
                    batch = todo_batches.popleft()
                    key = f"annette-measure-{self.label}-{uuid.uuid4().hex[:12]}"
                    fut = self.client.submit(_measure_batch, json.dumps([c.to_dict() for c in batch]),
                                             self.settings_json, key=key, pure=False,
                                             resources={self.resource: 1})
                    in_flight[fut] = batch
                    fut.add_done_callback(finished.put)
                if not in_flight:
                    break
                done = []
                with contextlib.suppress(queue.Empty):
                    done.append(finished.get(timeout=POLL_S))
                    while True:
                        done.append(finished.get_nowait())
                for fut in done:
                    if fut in in_flight:
                        again = self._collect(fut, in_flight.pop(fut))
                        if again:
                            todo_batches.appendleft(again)
                changed = self._poll_workers()
                if done or changed:
                    self._report(sum(len(b) for b in in_flight.values()))
                now = self.elapsed()
                if self.alive or not in_flight:
                    no_worker_since = None
                elif no_worker_since is None:
                    no_worker_since = now
                    log.warning("label %s has no worker left; %d batches wait up to %.0f s for one",
                                self.label, len(in_flight), self.worker_wait_s)
                elif now - no_worker_since > self.worker_wait_s:
                    stopped_by = "no_workers"
                    break
                if self.budget_s is not None and now > self.budget_s + self._grace_s():
                    budget_hit, stopped_by = True, "budget"
                    break
        finally:
            for fut, batch in in_flight.items():  # not measured: pending (resumable); the tasks are cancelled
                fut.cancel()
                self.pending.extend(batch)
        if stopped_by == "budget":
            self.pending = []  # not lost: the budget ended before they ran
        self._report(0)
        elapsed = self.elapsed()
        return ClusterResult(
            measured=self.measured, failed=self.failed, skipped=skipped, elapsed_s=elapsed, stopped_by=stopped_by,
            store=str(self.store.dir), records_per_min=60.0 * self.measured / elapsed if elapsed > 0 else 0.0,
            label=self.label, pending=len(self.pending), duplicates=self.duplicates,
            workers_lost=len(self.ever_alive - self.alive), errors=tuple(self.errors), workers=self._workers(),
        )

    def _over_budget(self, in_flight: int, workers: int) -> bool:
        """Would the next batch end after the budget (it starts once the batches ahead of it are done)?"""
        if self.budget_s is None:
            return False
        mean = sum(self.batch_s) / len(self.batch_s) if self.batch_s else 0.0
        return self.elapsed() + (in_flight / max(1, workers) + 1) * mean > self.budget_s

    def _grace_s(self) -> float:
        """How long past the budget the last batches may take before they are cancelled."""
        return 2 * max(self.batch_s) if self.batch_s else self.timeout_s * self.batch_size

    def _collect(self, fut: Any, batch: list[BenchConfig]) -> list[BenchConfig]:
        """Store a finished batch's records; a lost batch is returned once to be sent again, then stays pending."""
        if fut.status != "finished":
            exc = fut.exception() if fut.status == "error" else None
            if isinstance(exc, AnnetteError):  # the worker refused the campaign: not something to retry
                raise ClusterError(f"label {self.label}: {exc}") from None
            return self._lost(batch, f"{type(exc).__name__}: {exc}" if exc is not None else fut.status)
        try:  # the result lives on the worker: one that died after finishing would leave result() waiting forever
            text = fut.result(timeout=RESULT_FETCH_S)
        except Exception as exc:  # noqa: BLE001 - TimeoutError, or the task failed after all: the batch is lost
            return self._lost(batch, f"result not fetched: {type(exc).__name__}: {exc}")
        payload = json.loads(text)
        wanted = {c.config_id for c in batch}
        tally = self.tallies.setdefault(str(payload["worker"]), _Tally(str(payload["host"])))
        self.batch_s.append(float(payload["elapsed_s"]))
        got = set()
        for doc in payload["records"]:
            rec = BenchRecord.from_dict(doc)
            got.add(rec.config_id)
            if rec.config_id not in wanted:
                log.warning("label %s: worker %s returned configuration %s, which it was not sent; ignored",
                            self.label, payload["worker"], rec.config_id)
                continue
            if rec.config_id in self.stored:
                self.duplicates += 1
                continue
            diff = target_differences(self.target, rec.target)
            if diff:
                raise ClusterError(f"label {self.label}: worker {payload['worker']} measured configuration "
                                   f"{rec.config_id} on another target: {diff}")
            self.store.add(rec)
            self.stored.add(rec.config_id)
            self.measured += 1
            self.failed += rec.status != "ok"
            tally.done += 1
            tally.failed += rec.status != "ok"
            self.left -= 1
            self.last_family = rec.family
        missing = [c for c in batch if c.config_id not in got]
        if missing:
            self.errors.append(f"worker {payload['worker']} returned {len(missing)} configurations fewer than sent")
            self.pending.extend(missing)
        return []

    def _lost(self, batch: list[BenchConfig], reason: str) -> list[BenchConfig]:
        """A lost batch: returned once to be sent again, then left pending."""
        self.errors.append(reason)
        key = batch[0].config_id
        if key not in self.resent:  # e.g. Dask gave up on it with its worker (KilledWorker) under load
            self.resent.add(key)
            log.warning("label %s: a batch of %d configurations was lost (%s); sent again", self.label, len(batch), reason)
            return batch
        log.warning("label %s: a batch of %d configurations was lost twice (%s); they stay pending",
                    self.label, len(batch), reason)
        self.pending.extend(batch)
        return []

    def _poll_workers(self) -> bool:
        workers = _label_workers(self.client, self.label)
        self.hosts.update({a: str(w.get("host", "")) for a, w in workers.items()})
        alive = set(workers)
        changed = alive != self.alive
        for address in alive - self.alive:
            log.info("label %s: worker %s joined", self.label, address)
        for address in self.alive - alive:
            log.warning("label %s: worker %s left", self.label, address)
        self.alive = alive
        self.ever_alive |= alive
        return changed

    def _workers(self) -> tuple[WorkerProgress, ...]:
        elapsed = max(self.elapsed(), 1e-9)
        out = []
        for address in sorted(set(self.tallies) | self.alive):
            t = self.tallies.get(address, _Tally(self.hosts.get(address, "")))
            out.append(WorkerProgress(address, t.host, t.done, t.failed, 60.0 * t.done / elapsed, address in self.alive))
        return tuple(out)

    def _report(self, running: int) -> None:
        if self.progress is None:
            return
        elapsed = self.elapsed()
        rate = 60.0 * self.measured / elapsed if elapsed > 0 else 0.0
        eta = self.left / (rate / 60.0) if rate > 0 else float("inf")
        if self.budget_s is not None:
            eta = min(eta, max(0.0, self.budget_s - elapsed))
        self.progress(ClusterProgress(
            done=self.measured, failed=self.failed, left=self.left, elapsed_s=elapsed, eta_s=eta,
            last=self.last_family, label=self.label, running=running, rate_per_min=rate, workers=self._workers(),
        ))


# -- several labels at once -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetsResult:
    """The work of several labels run side by side (campaigns, builds): each label's result (with a
    ``to_dict``), or why it failed."""

    results: Mapping[str, Any] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"results": {k: r.to_dict() for k, r in self.results.items()}, "errors": dict(self.errors)}


def target_store(out: str | Path, labels: Sequence[str], label: str) -> Path:
    """The store of ``label``: ``out`` itself for a single label, ``out/LABEL`` for several."""
    resource_name(label)
    return Path(out) if len(labels) == 1 else Path(out) / label


def run_target_campaigns(
    out: str | Path,
    labels: Sequence[str],
    *,
    scheduler: str,
    batch_size: int = DEFAULT_BATCH,
    worker_wait_s: float = 60.0,
    connect_timeout_s: float = 10.0,
    progress: Callable[[CampaignProgress], None] | None = None,
    **campaign: Any,
) -> TargetsResult:
    """``run_campaign`` on each label's workers, all labels at once (one driver thread and store per label,
    ``target_store``); ``campaign`` holds ``run_campaign``'s settings (backend, budget, seed, resume, ...).
    One label failing does not stop the others: its error is in the result."""
    from annette.bench.campaign import run_campaign

    def one(label: str) -> CampaignResult:
        spec = ClusterSpec(scheduler, label, batch_size, worker_wait_s, connect_timeout_s)
        return run_campaign(target_store(out, labels, label), cluster=spec, progress=progress, **campaign)

    return on_targets(labels, one)


def on_targets(labels: Sequence[str], fn: Callable[[str], Any]) -> TargetsResult:
    """``fn(label)`` for every label at once, one thread each; an ``AnnetteError`` of one is kept as its error."""
    from concurrent.futures import ThreadPoolExecutor

    if len(set(labels)) != len(labels) or not labels:
        raise ClusterError(f"expected one or more distinct target labels, got {list(labels)}")
    for label in labels:
        resource_name(label)
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=len(labels), thread_name_prefix="annette-cluster") as pool:
        futures = {label: pool.submit(fn, label) for label in labels}
        for label, fut in futures.items():
            try:
                results[label] = fut.result()
            except AnnetteError as exc:
                errors[label] = f"{type(exc).__name__}: {exc}"
    return TargetsResult(results, errors)
