"""Benchmark campaigns over Dask distributed: a real scheduler and real workers on 127.0.0.1 (subprocesses).

Checked against the same plan run locally (same configuration ids, one record each), with a worker killed
mid-campaign (SIGKILL: its batches go to another worker of the label, or stay pending and are reported when
the label has none left), a driver killed and resumed, a mixed label and an unreachable scheduler refused.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="benchmark clusters need Dask distributed (pip install 'annette[cluster]')")

from typer.testing import CliRunner  # noqa: E402

from annette.backends import get_backend  # noqa: E402
from annette.bench.campaign import plan_campaign, run_campaign  # noqa: E402
from annette.bench.cluster import (  # noqa: E402
    ClusterProgress,
    ClusterSpec,
    WorkerInfo,
    _Driver,
    check_same_target,
    describe_workers,
    measure_on_cluster,
    resource_name,
    target_identity,
)
from annette.bench.runner import TimingProtocol  # noqa: E402
from annette.bench.store import BenchStore  # noqa: E402
from annette.cli.main import app  # noqa: E402
from annette.errors import ClusterError  # noqa: E402

pytestmark = pytest.mark.slow

QUICK = TimingProtocol(warmup_runs=1, min_sample_ms=0.2, min_samples=5, min_time_s=0.01, max_time_s=0.2)
SIM = {"scale": 0.02}
START_S = 90.0  # a worker on a busy 2-core machine can take a while to register


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """A Dask scheduler and workers as subprocesses (each in its own process group, so that a SIGKILL takes
    the worker, its nanny and its measurement subprocess, as when a host is lost)."""

    def __init__(self, tmp: Path, scheduler_env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                  self.address.rsplit(":", 1)[1], "--no-dashboard"], scheduler_env)

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.tmp, start_new_session=True, env={**os.environ, **(env or {})})

    def worker(self, name: str, labels: list[str]) -> str:
        """Start a stock ``dask worker`` advertising ``labels``; its address once the scheduler has it."""
        resources = " ".join(f"{resource_name(label)}=1" for label in labels)
        self._start(name, ["distributed.cli.dask_worker", self.address, "--resources", resources, "--nthreads", "1",
                           "--name", name, "--no-dashboard", "--local-directory", str(self.tmp / name)])
        return self.wait_for(name)

    def wait_for(self, name: str) -> str:
        from distributed import Client

        deadline = time.time() + START_S
        while time.time() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log(name)}")
            try:
                with Client(self.address, timeout=10, set_as_default=False) as client:
                    for address, w in client.scheduler_info()["workers"].items():
                        if w.get("name") == name:
                            return str(address)
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not register within {START_S:.0f} s: {self.log(name)}")

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for name in [n for n in self.procs if n != "scheduler"] + ["scheduler"]:
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        self.procs.clear()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A scheduler and two workers: w1 is labels sim and ort, w2 is labels sim and sim2."""
    lc = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        lc.worker("w1", ["sim", "ort"])
        lc.worker("w2", ["sim", "sim2"])
        yield lc
    finally:
        lc.close()


def _records(path: Path) -> dict[str, tuple[str, str, str, str]]:
    with BenchStore(path, create=False) as store:
        return {r.config_id: (r.family, json.dumps(dict(r.params), sort_keys=True), r.status, r.target.key)
                for r in store.records(status=None)}


def _plan_ids(backend: str, options: dict, seed: int, size: int) -> set[str]:
    key = get_backend(backend, **options).describe().key
    return {c.config_id for c in plan_campaign(key, seed=seed, size=size)}


def test_two_labels_match_the_local_campaign(cluster: LocalCluster, tmp_path: Path) -> None:
    """ONNX Runtime (label ort, one worker) and simulated (label sim, two workers) at once: each store holds
    the plan the local campaign measures, one record per configuration."""
    runs = {
        "ort": dict(backend="onnxruntime", backend_options={"threads": 1}, seed=3, plan_size=6),
        "sim": dict(backend="simulated", backend_options=SIM, seed=5, plan_size=24),
    }
    common = dict(protocol=QUICK, profile_runs=1)
    results: dict[str, object] = {}
    seen: list[ClusterProgress] = []

    def on_cluster(label: str) -> None:
        spec = ClusterSpec(cluster.address, label, batch_size=3)
        results[label] = run_campaign(tmp_path / label, cluster=spec, progress=seen.append, **runs[label], **common)

    threads = [threading.Thread(target=on_cluster, args=(label,)) for label in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert set(results) == {"ort", "sim"}, "a cluster campaign raised (see the log above)"
    for label, kw in runs.items():
        local = run_campaign(tmp_path / f"{label}-local", **kw, **common)
        r = results[label]
        assert r.measured == local.measured == kw["plan_size"] and r.stopped_by == "plan"  # type: ignore[attr-defined]
        on, here = _records(tmp_path / label), _records(tmp_path / f"{label}-local")
        assert set(on) == set(here) == _plan_ids(kw["backend"], kw["backend_options"], kw["seed"], kw["plan_size"])
        assert on == here  # same family, params, status (all ok) and target key for every configuration
        assert {v[2] for v in on.values()} == {"ok"}
        with BenchStore(tmp_path / label) as store:
            assert store.count() == kw["plan_size"]
            meta = json.loads(store.meta()["cluster"])
            assert meta["label"] == label and len(meta["workers"]) == (2 if label == "sim" else 1)
    sim = results["sim"]
    assert len(sim.workers) == 2 and all(w.alive for w in sim.workers)  # type: ignore[attr-defined]
    assert sum(w.done for w in sim.workers) == 24 and sim.pending == 0 and sim.duplicates == 0  # type: ignore[attr-defined]
    last = [p for p in seen if p.label == "sim"][-1]
    assert last.done == 24 and last.left == 0 and last.rate_per_min > 0 and len(last.workers) == 2


def _kill_mid_batch(
    cluster: LocalCluster, name: str, address: str
) -> tuple[threading.Event, Callable[[ClusterProgress], None]]:
    """A progress callback that SIGKILLs worker ``name`` once it has measured two batches and holds its next
    one (killed mid-batch), and the event it sets then."""
    killed = threading.Event()

    def progress(p: ClusterProgress) -> None:
        mine = [w for w in p.workers if w.address == address]
        if not killed.is_set() and mine and mine[0].done >= 2 and p.left > 8:
            killed.set()
            cluster.kill(name)

    return killed, progress


def test_worker_killed_mid_campaign_loses_nothing(cluster: LocalCluster, tmp_path: Path) -> None:
    """A third worker of label sim is SIGKILLed while it measures: its batches are measured again by the
    others, and the store ends with the whole plan, each configuration once."""
    victim = cluster.worker("w3", ["sim"])
    killed, progress = _kill_mid_batch(cluster, "w3", victim)
    # long enough that the victim's own measuring process (spawned at its first batch) starts before the two warm
    # workers have measured everything
    N = 160
    kw = dict(backend="simulated", backend_options={"scale": 0.1}, seed=8, plan_size=N, protocol=QUICK, profile_runs=1)
    r = run_campaign(tmp_path / "s", cluster=ClusterSpec(cluster.address, "sim", batch_size=2), progress=progress, **kw)
    assert killed.is_set(), "the victim worker never measured a batch"
    assert r.stopped_by == "plan" and r.pending == 0 and r.workers_lost == 1  # type: ignore[attr-defined]
    assert r.measured == N and r.failed == 0
    assert [w.alive for w in r.workers if w.address == victim] == [False]  # type: ignore[attr-defined]
    recs = _records(tmp_path / "s")
    assert set(recs) == _plan_ids("simulated", {"scale": 0.1}, 8, N) and len(recs) == N


def test_a_batch_the_scheduler_gives_up_on_is_sent_again(tmp_path: Path) -> None:
    """With no failures allowed, Dask does not move a killed worker's task to another worker: it fails it
    (KilledWorker), as it does under load after a few deaths. The driver sends such a batch again, once, and
    the store still ends with the whole plan."""
    (tmp_path / "c").mkdir()
    lc = LocalCluster(tmp_path / "c", {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
    try:
        lc.worker("k1", ["sim"])
        killed, progress = _kill_mid_batch(lc, "k2", lc.worker("k2", ["sim"]))
        N = 60
        kw = dict(backend="simulated", backend_options={"scale": 0.1}, seed=12, plan_size=N, protocol=QUICK,
                  profile_runs=1)
        r = run_campaign(tmp_path / "s", cluster=ClusterSpec(lc.address, "sim", batch_size=2), progress=progress,
                         **kw)
    finally:
        lc.close()
    assert killed.is_set(), "the victim worker never measured a batch"
    assert any("KilledWorker" in e for e in r.errors), r.errors  # type: ignore[attr-defined]
    assert r.stopped_by == "plan" and r.pending == 0 and r.measured == N  # type: ignore[attr-defined]
    assert set(_records(tmp_path / "s")) == _plan_ids("simulated", {"scale": 0.1}, 12, N)


def test_a_finished_batch_whose_result_cannot_be_fetched_is_lost_not_waited_for() -> None:
    """A batch can finish on a worker that is killed before the driver fetches its result; Dask then recomputes
    it and result() waits for a worker of the label, forever if none is left (this hung CI once). The driver
    bounds the fetch and treats such a batch as lost: sent again once, then pending."""

    class Unfetchable:
        status = "finished"

        def result(self, timeout: float | None = None) -> str:
            assert timeout is not None, "an unbounded wait for the result"
            raise TimeoutError("no worker holds it")

    key = get_backend("simulated").describe().key
    batch = plan_campaign(key, seed=3, size=2)
    driver = _Driver(None, None, None, "sim", {}, set(), None, 2, 1.0, 1.0, None)  # type: ignore[arg-type]
    assert driver._collect(Unfetchable(), batch) == batch and driver.pending == []
    assert driver._collect(Unfetchable(), batch) == [] and driver.pending == batch
    assert all("result not fetched: TimeoutError" in e for e in driver.errors) and len(driver.errors) == 2


def test_last_worker_of_a_label_lost_leaves_pending_then_resume_completes(cluster: LocalCluster, tmp_path: Path) -> None:
    """The only worker of label solo dies: the campaign waits worker_wait_s, then ends with the unmeasured
    batches reported pending; a new worker and --resume measure exactly the rest."""
    victim = cluster.worker("solo1", ["solo"])
    kw = dict(backend="simulated", backend_options={"scale": 0.1}, seed=9, plan_size=24, protocol=QUICK, profile_runs=1)

    def progress(p: ClusterProgress) -> None:
        if p.done >= 4 and "solo1" in cluster.procs:
            cluster.kill("solo1")

    spec = ClusterSpec(cluster.address, "solo", batch_size=2, worker_wait_s=3.0)
    r = run_campaign(tmp_path / "s", cluster=spec, progress=progress, **kw)
    assert r.stopped_by == "no_workers" and r.workers_lost == 1 and r.pending > 0  # type: ignore[attr-defined]
    assert [w.address for w in r.workers] == [victim]  # type: ignore[attr-defined]
    first = _records(tmp_path / "s")
    plan = _plan_ids("simulated", {"scale": 0.1}, 9, 24)
    assert len(first) == r.measured and set(first) < plan
    assert r.measured + r.pending <= 24  # pending: the batches that were sent; the rest were never sent
    cluster.worker("solo2", ["solo"])
    again = run_campaign(tmp_path / "s", cluster=spec, resume=True, **kw)
    assert again.stopped_by == "plan" and again.skipped == len(first) and again.measured == 24 - len(first)
    final = _records(tmp_path / "s")
    assert set(final) == plan and {k: final[k] for k in first} == first
    cluster.kill("solo2")


def test_driver_killed_then_resume_measures_the_rest_once(cluster: LocalCluster, tmp_path: Path) -> None:
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "annette.cli.main", "bench", "--backend", "simulated", "--opt", "scale=0.3",
           "--cluster", cluster.address, "--target", "sim", "--out", str(out), "--seed", "11", "--plan-size", "30",
           "--profile-runs", "1", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, n = time.time() + 120, 0
        while time.time() < deadline and n < 6:
            time.sleep(0.2)
            if (out / "store.sqlite").exists():
                with BenchStore(out) as store:
                    n = store.count()
        assert n >= 6, "the cluster campaign did not start storing records"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    partial = _records(out)
    assert 6 <= len(partial) < 30
    done = subprocess.run([*cmd, "--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["skipped"] == len(partial) and doc["measured"] == 30 - len(partial) and doc["label"] == "sim"
    final = _records(out)
    assert set(final) == _plan_ids("simulated", {"scale": 0.3}, 11, 30)
    assert {k: final[k] for k in partial} == partial and {v[2] for v in final.values()} == {"ok"}


def test_scheduler_lost_mid_campaign_is_one_error_and_the_store_keeps_what_came_back(tmp_path: Path) -> None:
    own = LocalCluster(tmp_path)  # its own scheduler, to kill
    try:
        own.worker("lonely", ["sim"])
        stored: list[int] = []

        def progress(p: ClusterProgress) -> None:
            stored.append(p.done)
            if p.done >= 4 and "scheduler" in own.procs:
                own.kill("scheduler")

        with pytest.raises(ClusterError, match="lost the Dask scheduler at .*resume with --resume"):
            run_campaign(tmp_path / "s", backend="simulated", backend_options={"scale": 0.1}, seed=12, plan_size=200,
                         protocol=QUICK, profile_runs=1, cluster=ClusterSpec(own.address, "sim", batch_size=2),
                         progress=progress)
        kept = _records(tmp_path / "s")
        assert len(kept) == max(stored) >= 4 and set(kept) <= _plan_ids("simulated", {"scale": 0.1}, 12, 200)
    finally:
        own.close()


def test_cli_several_targets_one_store_each(cluster: LocalCluster, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "bench", "--backend", "simulated", "--opt", "scale=0.02", "--cluster", cluster.address, "--target", "sim",
        "--target", "sim2", "--out", str(tmp_path), "--plan-size", "8", "--profile-runs", "0", "--seed", "2",
        "--batch-size", "2", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["results"]) == {"sim", "sim2"} and doc["errors"] == {}
    ids = _plan_ids("simulated", {"scale": 0.02}, 2, 8)
    for label in ("sim", "sim2"):
        assert doc["results"][label]["store"] == str(tmp_path / label) and doc["results"][label]["measured"] == 8
        assert set(_records(tmp_path / label)) == ids
    listed = CliRunner().invoke(app, ["bench", "workers", cluster.address, "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["labels"]["sim"] >= 2


def test_build_on_a_label(cluster: LocalCluster, tmp_path: Path) -> None:
    """``annette build --cluster``: every stage measured on the label's workers into the driver's store (the
    refine stage reads it), fitted here, validated on a worker; the bundle says where it was built."""
    out = tmp_path / "b"
    result = CliRunner().invoke(app, [
        "build", "--backend", "simulated", "--opt", "scale=0.05", "--cluster", cluster.address, "--target", "sim2",
        "--out", str(out), "--budget-min", "0.3", "--validate", "4", "--batch-size", "4", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    stages = {s["name"]: s for s in doc["stages"]}
    assert stages["core"]["measured"] > 0 and stages["validate"]["measured"] == 4
    assert doc["validation"]["metrics"]["n"] == 4
    bundle = json.loads(Path(doc["bundle"]).read_text())
    assert f"--cluster {cluster.address} --target sim2" in bundle["provenance"]["build"]["command"]
    with BenchStore(out, create=False) as store:
        assert json.loads(store.meta()["cluster"])["label"] == "sim2"
        assert store.count() == sum(s["measured"] for s in doc["stages"] if s["name"] not in ("fit", "networks", "validate"))


def test_labels_and_errors(cluster: LocalCluster, tmp_path: Path) -> None:
    info = describe_workers(cluster.address, "sim", backend="simulated", backend_options=SIM)
    assert len(info.workers) >= 2 and info.target == get_backend("simulated", **SIM).describe()
    with pytest.raises(ClusterError, match=r"advertises target label 'nope'.*labels there: .*sim \("):
        describe_workers(cluster.address, "nope", backend="simulated")
    with pytest.raises(ClusterError, match="cannot run backend 'nosuch'"):
        describe_workers(cluster.address, "sim", backend="nosuch")
    with pytest.raises(ClusterError, match="not valid"):
        resource_name("a b")
    # configurations planned for another target are refused before anything runs
    other = plan_campaign(get_backend("simulated", threads=2).describe().key, seed=1, size=2)
    with BenchStore(tmp_path / "x") as store, pytest.raises(ClusterError, match="was not planned for target"):
        measure_on_cluster(store, other, scheduler=cluster.address, target_label="sim", backend="simulated",
                           backend_options=SIM)
    with BenchStore(tmp_path / "x") as store:
        assert store.count() == 0


def test_unreachable_scheduler_is_one_clear_error(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address} within 2 s"):
        describe_workers(address, "sim", connect_timeout_s=2.0)
    assert time.perf_counter() - t0 < 15
    result = CliRunner().invoke(app, ["bench", "--backend", "simulated", "--cluster", address, "--target", "sim",
                                      "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and "cannot reach the Dask scheduler" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    half = CliRunner().invoke(app, ["bench", "--backend", "simulated", "--target", "sim", "--out", str(tmp_path / "s")])
    assert half.exit_code == 1 and "--cluster" in half.stderr


def test_a_label_must_be_one_target() -> None:
    base = get_backend("simulated", **SIM).describe()

    def info(host: str, **changes: object) -> WorkerInfo:
        return WorkerInfo(f"tcp://{host}:1", host, replace(base, **changes), "0.1.0", "3.11", 1, 1.0)

    same = [info("a"), info("b", extra={**base.extra, "logical_cpus": "64"})]  # the host's CPU count may differ
    assert check_same_target("x", same) == base
    assert "extra.logical_cpus" not in target_identity(same[1].target)
    mixed = [info("a"), info("b", device_model="AMD EPYC"), info("c", runtime_version="9.9")]
    with pytest.raises(ClusterError, match="not one target") as err:
        check_same_target("x", mixed)
    message = str(err.value)
    assert "device_model" in message and "'AMD EPYC' on b (tcp://b:1)" in message and "runtime_version" in message
    with pytest.raises(ClusterError, match="no worker"):
        check_same_target("x", [])
