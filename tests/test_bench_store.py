"""The SQLite benchmark store: round trip, uniqueness, refusal of foreign/corrupt/unknown stores, export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from annette.bench.store import STORE_FILE, BenchStore
from annette.errors import BenchStoreError
from annette.records import BenchRecord, Measurement, NodeProfile, Target

TARGET = Target("simulated", "simulated", "sim", "annette-simulated", "0", "simulated", 1, "fp32")


def record(i: int, status: str = "ok", kind: str = "micro", family: str = "conv") -> BenchRecord:
    m = Measurement((1.0 + i, 1.5 + i, 1.2 + i), 4, 1.0 + i, 1.2 + i, 1.0 + i, (3.0,), ("high_cv",)) if status == "ok" else None
    return BenchRecord(
        config_id=f"id{i:03d}", kind=kind, family=family, params={"c": i}, target=TARGET, status=status,
        measurement=m, profile=(NodeProfile("n", "Conv", 0.9, ("conv",)),) if m else (),
        error="" if m else "boom", metadata={"date": "2026-01-01"},
    )


def test_round_trip_filters_and_counts(tmp_path: Path) -> None:
    with BenchStore(tmp_path / "s") as store:
        for i in range(5):
            store.add(record(i))
        store.add(record(5, status="failed"))
        store.add(record(6, kind="multi", family="residual"))
    with BenchStore(tmp_path / "s", create=False) as store:
        assert store.count() == 7 and store.count(status="failed") == 1 and store.count(kind="multi") == 1
        assert store.has("id003") and not store.has("nope")
        ok = list(store.records())
        assert [r.config_id for r in ok] == ["id000", "id001", "id002", "id003", "id004", "id006"]
        assert ok[1] == record(1)  # full JSON round trip, frozen dataclasses compare by value
        assert [r.config_id for r in store.records(status="failed")] == ["id005"]
        assert [r.config_id for r in store.records(kind="multi")] == ["id006"]
        assert len(list(store.records(status=None, family="conv"))) == 6
        summary = store.summary()
        assert summary["total"] == 7 and summary["by_status"] == {"ok": 6, "failed": 1}
        assert summary["by_family"]["micro/conv"] == {"ok": 5, "failed": 1}
        assert summary["targets"] == {TARGET.key: 7}


def test_duplicate_config_id_refused_unless_replace(tmp_path: Path) -> None:
    with BenchStore(tmp_path) as store:
        store.add(record(1, status="failed"))
        with pytest.raises(BenchStoreError, match="already stored"):
            store.add(record(1))
        store.add(record(1), replace=True)
        assert store.count() == 1 and next(store.records()).status == "ok"


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(BenchStoreError, match="no benchmark store"):
        BenchStore(tmp_path / "absent", create=False)


def test_corrupt_file_is_refused_not_reset(tmp_path: Path) -> None:
    (tmp_path / STORE_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BenchStoreError, match="not an annette benchmark store"):
        BenchStore(tmp_path)
    assert (tmp_path / STORE_FILE).read_bytes().startswith(b"this is not sqlite")


def test_foreign_sqlite_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / STORE_FILE)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(BenchStoreError, match="not an annette benchmark store"):
        BenchStore(tmp_path)


@pytest.mark.parametrize(("key", "value", "match"), [("magic", "someone.else", "magic"),
                                                      ("schema_version", "99", "schema version '99'")])
def test_wrong_magic_or_version_is_refused(tmp_path: Path, key: str, value: str, match: str) -> None:
    BenchStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / STORE_FILE)
    db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    db.commit()
    db.close()
    with pytest.raises(BenchStoreError, match=match):
        BenchStore(tmp_path)


def test_export_csv_parquet_jsonl(tmp_path: Path) -> None:
    import pandas as pd

    with BenchStore(tmp_path / "s") as store:
        for i in range(3):
            store.add(record(i))
        store.add(record(3, status="failed"))
        csv = pd.read_csv(store.export(tmp_path / "out.csv"))
        assert len(csv) == 4 and list(csv["label_ms"][:3]) == [1.0, 2.0, 3.0]
        assert list(csv["status"]) == ["ok", "ok", "ok", "failed"] and csv["error"].iloc[3] == "boom"
        assert json.loads(csv["params"].iloc[2]) == {"c": 2} and csv["flags"].iloc[0] == "high_cv"
        pq = pd.read_parquet(store.export(tmp_path / "out.parquet"))
        assert pq.shape == csv.shape and list(pq["n_samples"]) == [3, 3, 3, 0]
        lines = store.export(tmp_path / "out.jsonl").read_text().splitlines()
        assert BenchRecord.from_dict(json.loads(lines[1])) == record(1)
        with pytest.raises(BenchStoreError, match="not supported"):
            store.export(tmp_path / "out.xlsx")
