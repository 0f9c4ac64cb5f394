"""Campaigns on the simulated backend: budget, resume after kill -9, isolation of crashing/hanging configs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annette.backends import get_backend
from annette.bench.campaign import plan_campaign, run_campaign
from annette.bench.measure import measure_model
from annette.bench.runner import TimingProtocol
from annette.bench.store import BenchStore
from annette.bench.sweeps import make_config
from annette.bench.worker import Worker, run_config
from annette.errors import BenchStoreError

QUICK = TimingProtocol(warmup_runs=1, min_sample_ms=0.2, min_samples=5, min_time_s=0.01, max_time_s=0.2)
SIM = {"scale": 0.02}


def _sim_target():
    return get_backend("simulated", **SIM).describe()


def test_run_config_in_process_records_graph_measurement_profile() -> None:
    backend = get_backend("simulated", **SIM)
    cbr = {"n": 1, "cin": 8, "h": 16, "w": 16, "cout": 16, "k": 3, "stride": 1, "pad": 1, "dilation": 1, "groups": 1,
           "act": "relu"}
    cfg = make_config("conv_bn_relu", cbr, backend.describe().key)
    rec = run_config(cfg, backend, backend.describe(), protocol=QUICK, profile_runs=2)
    assert rec.status == "ok" and rec.config_id == cfg.config_id and rec.graph is not None and rec.kind == "multi"
    assert [p.covers for p in rec.profile] == [("conv", "bn", "relu")]
    assert rec.measurement is not None and rec.measurement.label_ms > 0
    assert {x for p in rec.profile for x in p.covers} <= set(rec.graph.by_name)
    assert rec.metadata["label_statistic"] == "min" and "loadavg" in rec.metadata and "date" in rec.metadata
    assert rec.metadata["profile_coverage"] == pytest.approx(
        sum(p.time_ms for p in rec.profile) / rec.measurement.label_ms)


def test_campaign_budget_max_configs_and_resume(tmp_path: Path) -> None:
    kw = dict(backend="simulated", backend_options=SIM, seed=4, plan_size=12, protocol=QUICK, profile_runs=1)
    seen = []
    r1 = run_campaign(tmp_path, max_configs=5, progress=seen.append, **kw)
    assert (r1.measured, r1.stopped_by, r1.skipped) == (5, "max_configs", 0)
    assert [p.done for p in seen] == [1, 2, 3, 4, 5] and seen[-1].left == 7
    with pytest.raises(BenchStoreError, match="--resume"):
        run_campaign(tmp_path, **kw)
    r2 = run_campaign(tmp_path, resume=True, **kw)
    assert (r2.measured, r2.skipped, r2.stopped_by) == (7, 5, "plan")
    plan_ids = {c.config_id for c in plan_campaign(_sim_target().key, seed=4, size=12)}
    with BenchStore(tmp_path) as store:
        assert store.ids() == plan_ids and store.count(status="ok") == 12
    r3 = run_campaign(tmp_path, budget_s=0.0, resume=True, **kw)
    assert r3.measured == 0


def test_budget_is_respected(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    r = run_campaign(tmp_path, backend="simulated", backend_options=SIM, budget_s=3.0, protocol=QUICK, profile_runs=1)
    # the budget, not the plan, ends it; no configuration is started that would not fit (by the mean duration so
    # far): the bounds leave room for one slow configuration on a loaded machine (worker start-up not counted)
    assert r.stopped_by == "budget" and r.measured >= 1
    assert r.elapsed_s <= 6.0 and time.perf_counter() - t0 < 30


def test_worker_isolates_crash_and_hang() -> None:
    target = _sim_target()
    configs = plan_campaign(target.key, seed=9, size=4)
    crash, hang = configs[1].config_id, configs[2].config_id
    options = {**SIM, "crash_on": crash, "hang_on": hang}
    with Worker("simulated", options, target=target, protocol=QUICK, profile_runs=0, timeout_s=3.0) as worker:
        records = [worker.run(c) for c in configs]
        assert [r.status for r in records] == ["ok", "failed", "failed", "ok"]
        assert "died" in records[1].error and "SIGABRT" in records[1].error
        assert "timed out after 3 s" in records[2].error
        assert records[3].measurement is not None and worker.restarts >= 1
        assert records[1].target == target and records[1].config_id == crash


def test_kill_minus_9_then_resume_completes_without_loss_or_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "annette.cli.main", "bench", "--backend", "simulated", "--opt", "scale=0.3",
           "--out", str(out), "--seed", "11", "--plan-size", "30", "--profile-runs", "1", "--budget-min", "5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        n = 0
        while time.time() < deadline and n < 6:
            time.sleep(0.2)
            if (out / "store.sqlite").exists():
                with BenchStore(out) as store:
                    n = store.count()
        assert n >= 6, "the campaign did not start storing records"
        os.killpg(proc.pid, signal.SIGKILL)  # the campaign and its worker, mid-configuration
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    with BenchStore(out) as store:
        partial = store.count()
    assert 6 <= partial < 30
    done = subprocess.run([*cmd, "--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    target = get_backend("simulated", scale=0.3).describe()
    plan_ids = {c.config_id for c in plan_campaign(target.key, seed=11, size=30)}
    with BenchStore(out) as store:
        assert store.count() == 30 and store.ids() == plan_ids
        assert store.count(status="ok") == 30


def test_measure_model_network_record(tmp_path: Path) -> None:
    import onnx

    from annette.bench.blocks import build_model

    path = tmp_path / "net.onnx"
    onnx.save(build_model("residual", {"n": 1, "c": 8, "h": 8, "w": 8}, name="tiny"), path)
    rec = measure_model(str(path), backend="simulated", scale=0.05, protocol=QUICK, profile=True, profile_runs=1)
    assert rec.kind == "network" and rec.family == str(path) and rec.status == "ok"
    assert rec.graph is not None and len(rec.graph.layers) == 7
    assert rec.measurement is not None and rec.profile and rec.target.backend == "simulated"
    again = measure_model(str(path), backend="simulated", scale=0.05, protocol=QUICK)
    assert again.config_id == rec.config_id
