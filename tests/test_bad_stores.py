"""Bad stores and campaign options: one writer at a time, damage found on open, a full disk named, nonsense
options refused, failed configurations retried on request, invalid imported times kept as failed."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import hwsynth
from annette.backends import get_backend
from annette.bench.campaign import plan_campaign, run_campaign
from annette.bench.external import H200_COLUMNS, import_table
from annette.bench.runner import TimingProtocol
from annette.bench.store import BenchStore
from annette.errors import AnnetteError, BenchStoreError, UnknownNameError

QUICK = TimingProtocol(warmup_runs=1, min_sample_ms=0.2, min_samples=5, min_time_s=0.01, max_time_s=0.2)
SIM = {"scale": 0.02}


def filled(tmp_path: Path, n: int = 40) -> Path:
    store_dir = tmp_path / "store"
    with BenchStore(store_dir) as store:
        for r in hwsynth.campaign(n_conv=n):
            store.add(r)
    return store_dir


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    store_dir = filled(tmp_path, 2)
    first = BenchStore(store_dir)
    first.set_meta("note", "first writer")
    second = BenchStore(store_dir)  # reading is fine
    assert second.count() > 0
    with pytest.raises(BenchStoreError, match=rf"being written by pid {os.getpid()}.*one writer at a time"):
        second.set_meta("note", "second writer")
    code = ("import sys; from annette.bench.store import BenchStore\n"
            "BenchStore(sys.argv[1]).set_meta('x', 'y')")
    res = subprocess.run([sys.executable, "-c", code, str(store_dir)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "being written by pid" in res.stderr
    with pytest.raises(BenchStoreError, match="being written by"):  # a campaign on it stops at once, named
        run_campaign(store_dir, backend="simulated", backend_options=SIM, resume=True, max_configs=1, protocol=QUICK)
    first.close()
    second.set_meta("note", "now free")
    second.close()


def test_two_fresh_campaigns_on_one_folder(tmp_path: Path) -> None:
    """Before: both passed the 'already holds records' check; the second died at its first collision with a
    Python-argument hint."""
    holder = BenchStore(tmp_path / "s")
    holder.set_meta("campaign", "{}")  # a campaign that has started but stored nothing yet
    with pytest.raises(BenchStoreError, match="being written by"):
        run_campaign(tmp_path / "s", backend="simulated", backend_options=SIM, max_configs=1, protocol=QUICK)
    holder.close()


def test_damage_inside_the_store_is_found_on_open(tmp_path: Path) -> None:
    store_dir = filled(tmp_path)
    db = store_dir / "store.sqlite"
    assert db.stat().st_size > 3 * 4096
    with db.open("r+b") as fh:
        fh.seek(3 * 4096)  # a b-tree page header (bytes inside a record text are caught when it is read)
        fh.write(np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes())
    size = db.stat().st_size
    with pytest.raises(BenchStoreError, match="is damaged"):
        BenchStore(store_dir, create=False)
    with pytest.raises(BenchStoreError, match="is damaged"):  # --resume does not append to it
        run_campaign(store_dir, backend="simulated", backend_options=SIM, resume=True, max_configs=1, protocol=QUICK)
    assert db.stat().st_size == size
    from annette.cli.main import app

    res = CliRunner().invoke(app, ["bench", "status", str(store_dir)])
    assert res.exit_code == 1 and "is damaged" in res.output and "Traceback" not in res.output


def test_a_bad_record_names_store_and_record(tmp_path: Path) -> None:
    store_dir = filled(tmp_path, 1)
    import sqlite3

    db = sqlite3.connect(store_dir / "store.sqlite")
    cid, text = db.execute("SELECT config_id, record FROM records LIMIT 1").fetchone()
    doc = json.loads(text)
    doc["graph"]["layers"][0]["inputs"] = 5
    db.execute("UPDATE records SET record = ? WHERE config_id = ?", (json.dumps(doc), cid))
    db.commit()
    db.close()
    with BenchStore(store_dir, create=False) as store, pytest.raises(BenchStoreError, match=rf"store.sqlite: stored record '{cid}' is malformed"):
        list(store.records(status=None))


def test_full_disk_is_named(tmp_path: Path) -> None:
    """A write limit (RLIMIT_FSIZE) in a child: the failed write is a BenchStoreError, and what was committed
    before it stays readable."""
    code = (
        "import resource, signal, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "import hwsynth\n"
        "from annette.bench.store import BenchStore\n"
        "from annette.errors import BenchStoreError\n"
        "store = BenchStore(sys.argv[1])\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))\n"
        "n = 0\n"
        "try:\n"
        "    for r in hwsynth.campaign(n_conv=200):\n"
        "        store.add(r); n += 1\n"
        "except BenchStoreError as e:\n"
        "    print(n, e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s"), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    n, message = res.stdout.split(" ", 1)
    assert "cannot store configuration" in message and ("disk" in message or "full" in message)
    with BenchStore(tmp_path / "s", create=False) as store:
        assert store.count() >= int(n) > 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs")
def test_new_store_on_a_full_disk(tmp_path: Path) -> None:
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with (mnt / "fill").open("wb") as fh, pytest.raises(OSError):
            fh.write(b"x" * 400_000)
            fh.flush()
        with pytest.raises(BenchStoreError, match="disk is full") as info:
            BenchStore(mnt / "s")
        assert "not an annette benchmark store" not in str(info.value)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"timeout_s": 0.0}, r"timeout 0.0 s \(--timeout\) must be > 0"),
        ({"timeout_s": -1.0}, "--timeout"),
        ({"budget_s": -300.0}, r"--budget-min\) must be >= 0"),
        ({"plan_size": 0}, r"--plan-size\) must be >= 1"),
        ({"max_configs": -1}, "--max-configs"),
        ({"micro_share": 1.5}, "--micro-share"),
    ],
)
def test_nonsense_campaign_options_are_refused(tmp_path: Path, option: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(AnnetteError, match=message):
        run_campaign(tmp_path / "s", backend="simulated", backend_options=SIM, protocol=QUICK, **option)
    assert not (tmp_path / "s").exists()


def test_cli_options_and_backend_options(tmp_path: Path) -> None:
    from annette.cli.main import app

    runner = CliRunner()
    for args, message in (
        (["--timeout", "0"], "--timeout"),
        (["--budget-min", "-5"], "--budget-min"),
        (["--plan-size", "0"], "--plan-size"),
        (["--retry-failed"], "pass --resume too"),
        (["--opt", "bogus=1", "--backend", "simulated"], "has no option(s) bogus"),
    ):
        res = runner.invoke(app, ["bench", "--out", str(tmp_path / "s"), *args])
        assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output, res.output
    with pytest.raises(UnknownNameError, match="bogus; its options: threads"):
        get_backend("simulated", bogus=1)


def test_retry_failed_measures_failed_configurations_again(tmp_path: Path) -> None:
    """Before: --resume never retried failed configurations (e.g. all of them, after a --timeout too small)."""
    target = get_backend("simulated", **SIM).describe()
    crash = plan_campaign(target.key, seed=3, size=4)[1].config_id
    kw = {"backend": "simulated", "seed": 3, "plan_size": 4, "protocol": QUICK, "profile_runs": 0}
    r = run_campaign(tmp_path, backend_options={**SIM, "crash_on": crash}, **kw)
    assert (r.measured, r.failed) == (4, 1)
    again = run_campaign(tmp_path, backend_options=SIM, resume=True, **kw)
    assert again.measured == 0  # --resume alone keeps the failed record
    with BenchStore(tmp_path) as store:  # the cause is gone (as after a --timeout too small)
        settings = json.loads(store.meta()["campaign"])
        settings["backend_options"].pop("crash_on")
        store.set_meta("campaign", json.dumps(settings))
    retried = run_campaign(tmp_path, backend_options=SIM, resume=True, retry_failed=True, **kw)
    assert (retried.measured, retried.failed, retried.skipped) == (1, 0, 3)
    with BenchStore(tmp_path) as store:
        assert store.count() == 4 and store.count(status="ok") == 4


def test_imported_invalid_times_are_failed_records(tmp_path: Path) -> None:
    row = {c: "" for c in H200_COLUMNS}
    row.update(kind="relu", batch="1", in_c="8", in_h="4", in_w="4", out_c="8", kernel="0", stride="0", padding="0",
               groups="1", out_h="4", out_w="4", dtype="fp32", layout="channels_last", median_ms="0.01", p10_ms="0.01",
               p90_ms="0.02", min_ms="-1", reps="10", status="ok")
    path = tmp_path / "t.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(H200_COLUMNS))
        writer.writeheader()
        writer.writerow(row)
        writer.writerow({**row, "in_c": "16", "out_c": "16", "min_ms": "nan"})
    counts = import_table(path, tmp_path / "s")
    assert counts == {"ok": 0, "failed": 2, "skipped": 0}
    with BenchStore(tmp_path / "s") as store:
        errors = sorted(str(r.error) for r in store.records(status="failed"))
    assert "min_ms must be positive" in errors[0] or "min_ms must be positive" in errors[1]
    assert any("must be a finite number" in e for e in errors)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(",".join(H200_COLUMNS).encode() + b"\n\xe9\xff\n")
    with pytest.raises(BenchStoreError, match="not a UTF-8 CSV table"):
        import_table(latin, tmp_path / "s2")
