"""The benchmark store: one SQLite file (``store.sqlite`` in a directory), stdlib only, WAL journal.

Schema (versioned): a ``meta`` table with ``magic`` = ``annette.benchstore`` and ``schema_version``, plus
free keys (the campaign's settings); a ``records`` table with one row per configuration (``config_id``
primary key) holding the record JSON and indexed columns (kind, family, status, target key). Every
``add`` commits on its own, so a process killed at any point leaves every finished record and nothing
half-written; the campaign resumes by skipping the ids the store ``has``.

A file that is not SQLite, a database without the magic, an unknown schema version or a damaged file
(``PRAGMA quick_check`` on open) raises ``BenchStoreError``; nothing is ever reset silently. Every SQLite
error later (a full disk, damage found while reading) is a ``BenchStoreError`` saying what happened.

One writer at a time: the first write of a process takes an exclusive lock (``flock`` on ``store.lock`` in
the directory, released when the store is closed or the process ends, even by kill -9); a second process
writing to the same store gets an error naming the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annette.errors import AnnetteError, BenchStoreError
from annette.records import BenchRecord

STORE_MAGIC = "annette.benchstore"
STORE_SCHEMA_VERSION = 1
STORE_FILE = "store.sqlite"
LOCK_FILE = "store.lock"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    config_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    family TEXT NOT NULL,
    status TEXT NOT NULL,
    target_key TEXT NOT NULL,
    created REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX records_kind ON records (kind, status);
CREATE INDEX records_family ON records (family);
CREATE INDEX records_target ON records (target_key);
"""

EXPORT_COLUMNS = (
    "config_id", "kind", "family", "status", "target_key", "backend", "device_model", "runtime", "runtime_version",
    "threads", "precision", "batch", "label_ms", "median_ms", "min_ms", "n_samples", "inner_loops", "flags",
    "params", "error", "date",
)


class BenchStore:
    """A store directory (created on first use) holding ``store.sqlite``."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.dir = Path(path)
        self.file = self.dir / STORE_FILE
        if self.dir.exists() and not self.dir.is_dir():
            raise BenchStoreError(f"{self.dir} is a file; a benchmark store is a directory holding {STORE_FILE}")
        exists = self.file.exists()
        if not exists and not create:
            raise BenchStoreError(f"no benchmark store at {self.dir} (expected {self.file})")
        self._lock: int | None = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BenchStoreError(f"cannot create the store directory {self.dir}: {exc.strerror}") from exc
        try:
            self.db = sqlite3.connect(self.file, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            tables = self._open(create)
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self.db.close()  # nothing stays open on a store that could not be opened
            if _kind(exc) in ("full", "io", "readonly", "busy"):
                why = "the disk is full" if _kind(exc) == "full" and not exists else _reason(exc)
                raise BenchStoreError(f"cannot {'open' if exists else 'create'} {self.file}: {why}") from exc
            raise BenchStoreError(f"{self.file} is not an annette benchmark store (not a readable SQLite file: {exc})") from exc
        try:
            self._check(tables)
            if exists:
                self._quick_check()
        except BenchStoreError:
            self.db.close()
            raise

    def _open(self, create: bool) -> set[str]:
        """The tables, after creating the schema in an empty file (under a write lock: another process may
        be creating the same store)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables and create:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("magic", STORE_MAGIC), ("schema_version", str(STORE_SCHEMA_VERSION)), ("created", _now())],
                )
                tables = {"meta", "records"}
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return tables

    def _check(self, tables: set[str]) -> None:
        if "meta" not in tables or "records" not in tables:
            raise BenchStoreError(f"{self.file} is a SQLite file but not an annette benchmark store (tables: {sorted(tables)})")
        meta = self.meta()
        if meta.get("magic") != STORE_MAGIC:
            raise BenchStoreError(
                f"{self.file}: meta magic is {meta.get('magic')!r}, expected {STORE_MAGIC!r}: not an annette store"
            )
        if meta.get("schema_version") != str(STORE_SCHEMA_VERSION):
            raise BenchStoreError(
                f"{self.file}: store schema version {meta.get('schema_version')!r} is not supported "
                f"(this annette reads version {STORE_SCHEMA_VERSION})"
            )

    def _quick_check(self) -> None:
        """SQLite's quick_check (the structure of every page; ~0.1 s per 50 MB): damage is found on open, not
        when a campaign resumes and appends to a damaged file."""
        try:
            rows = [str(r[0]) for r in self.db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            raise BenchStoreError(f"{self.file} is damaged ({exc}); it is not modified: restore it from a copy, "
                                  "or export what can be read and start a new store") from exc
        if rows != ["ok"]:
            raise BenchStoreError(
                f"{self.file} is damaged (SQLite quick_check: {'; '.join(rows)[:300]}); it is not modified: restore "
                "it from a copy, or start a new store"
            )

    @contextlib.contextmanager
    def _sql(self, doing: str) -> Iterator[None]:
        """Every SQLite error as a BenchStoreError saying what was being done and why it failed."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise BenchStoreError(f"{self.file}: cannot {doing}: {_reason(exc)}") from exc

    def _write_lock(self) -> None:
        """Take the store's writer lock (once per store object); BenchStoreError if another process holds it."""
        if self._lock is not None:
            return
        path = self.dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BenchStoreError(f"cannot create the writer lock {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise BenchStoreError(
                f"{self.dir} is being written by {holder}: a store takes one writer at a time (one campaign or "
                "import); wait for it to end, or use another --out directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} (since {_now()})".encode(), 0)
        self._lock = fd

    # -- meta ----------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        try:
            return {str(k): str(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
        except sqlite3.DatabaseError as exc:
            raise BenchStoreError(f"{self.file}: cannot read the meta table: {exc}") from exc

    def set_meta(self, key: str, value: str) -> None:
        if key in ("magic", "schema_version"):
            raise BenchStoreError(f"meta key {key!r} is reserved")
        self._write_lock()
        with self._sql(f"write meta key {key!r}"):
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- records -------------------------------------------------------------------------------------------
    def add(self, record: BenchRecord, *, replace: bool = False) -> None:
        """Store one record (committed at once). A second record with the same config_id raises unless
        ``replace`` (e.g. to retry a failed configuration)."""
        row = (
            record.config_id, record.kind, record.family, record.status, record.target.key, time.time(),
            json.dumps(record.to_dict(), separators=(",", ":")),
        )
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        self._write_lock()
        with self._sql(f"store configuration {record.config_id} ({record.family})"):
            try:
                self.db.execute(
                    f"{verb} INTO records (config_id, kind, family, status, target_key, created, record) "
                    "VALUES (?,?,?,?,?,?,?)",
                    row,
                )
            except sqlite3.IntegrityError:
                raise BenchStoreError(
                    f"{self.file}: configuration {record.config_id} ({record.family}) is already stored "
                    "(stored records are never overwritten; --retry-failed measures failed ones again)"
                ) from None

    def has(self, config_id: str) -> bool:
        with self._sql("read the records"):
            return self.db.execute("SELECT 1 FROM records WHERE config_id = ?", (config_id,)).fetchone() is not None

    def ids(self, status: str | None = None) -> set[str]:
        """The stored configuration ids (with ``status``, only those of that status)."""
        with self._sql("read the records"):
            if status is None:
                return {r[0] for r in self.db.execute("SELECT config_id FROM records")}
            return {r[0] for r in self.db.execute("SELECT config_id FROM records WHERE status = ?", (status,))}

    def records(
        self, kind: str | None = None, status: str | None = "ok", family: str | None = None
    ) -> Iterator[BenchRecord]:
        """Records in insertion order, filtered by kind, status (None: all) and family."""
        sql, args = "SELECT record FROM records", []
        where = []
        for col, val in (("kind", kind), ("status", status), ("family", family)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql = sql.replace("SELECT record", "SELECT config_id, record") + " ORDER BY rowid"
        with self._sql("read the records"):
            for config_id, text in self.db.execute(sql, args):
                try:
                    yield BenchRecord.from_dict(json.loads(text))
                except (AnnetteError, json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError) as exc:
                    why = f"missing key {exc.args[0]!r}" if type(exc) is KeyError and exc.args else str(exc)
                    raise BenchStoreError(
                        f"{self.file}: stored record {config_id!r} is malformed ({type(exc).__name__}: {why})"
                    ) from exc

    def count(self, kind: str | None = None, status: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM records", []
        where = []
        for col, val in (("kind", kind), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._sql("count the records"):
            return int(self.db.execute(sql, args).fetchone()[0])

    def summary(self) -> dict[str, Any]:
        """Counts by kind/family/status, the targets, and the time span of the records."""
        with self._sql("summarise the records"):
            return self._summary()

    def _summary(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        for kind, family, status, n in self.db.execute(
            "SELECT kind, family, status, COUNT(*) FROM records GROUP BY kind, family, status ORDER BY kind, family"
        ):
            counts.setdefault(f"{kind}/{family}", {})[status] = int(n)
        by_status = {s: int(n) for s, n in self.db.execute("SELECT status, COUNT(*) FROM records GROUP BY status")}
        by_kind = {k: int(n) for k, n in self.db.execute("SELECT kind, COUNT(*) FROM records GROUP BY kind")}
        targets = {t: int(n) for t, n in self.db.execute("SELECT target_key, COUNT(*) FROM records GROUP BY target_key")}
        first, last = self.db.execute("SELECT MIN(created), MAX(created) FROM records").fetchone()
        return {
            "path": str(self.dir),
            "total": self.count(),
            "by_status": by_status,
            "by_kind": by_kind,
            "by_family": counts,
            "targets": targets,
            "first": _iso(first) if first is not None else None,
            "last": _iso(last) if last is not None else None,
            "span_s": (last - first) if first is not None else 0.0,
            "meta": self.meta(),
        }

    # -- export --------------------------------------------------------------------------------------------
    def rows(self) -> Iterator[dict[str, Any]]:
        """One flat row per record (all statuses), the columns of ``EXPORT_COLUMNS``."""
        for rec in self.records(status=None):
            m = rec.measurement
            yield {
                "config_id": rec.config_id, "kind": rec.kind, "family": rec.family, "status": rec.status,
                "target_key": rec.target.key, "backend": rec.target.backend, "device_model": rec.target.device_model,
                "runtime": rec.target.runtime, "runtime_version": rec.target.runtime_version,
                "threads": rec.target.threads, "precision": rec.target.precision, "batch": rec.target.batch,
                "label_ms": m.label_ms if m else None, "median_ms": m.median_ms if m else None,
                "min_ms": m.min_ms if m else None, "n_samples": len(m.samples_ms) if m else 0,
                "inner_loops": m.inner_loops if m else 0, "flags": ",".join(m.flags) if m else "",
                "params": json.dumps(dict(rec.params), sort_keys=True), "error": rec.error,
                "date": str(rec.metadata.get("date", "")),
            }

    def export(self, path: str | Path) -> Path:
        """Write all records to ``path``: ``.csv`` or ``.parquet`` (flat rows), ``.jsonl`` (full records)."""
        out = Path(path)
        suffix = out.suffix.lower()
        if suffix == ".jsonl":
            with out.open("w", encoding="utf-8") as fh:
                for rec in self.records(status=None):
                    fh.write(json.dumps(rec.to_dict(), separators=(",", ":")) + "\n")
            return out
        if suffix not in (".csv", ".parquet"):
            raise BenchStoreError(f"export format of {out.name!r} not supported; use .csv, .parquet or .jsonl")
        import pandas as pd

        frame = pd.DataFrame(list(self.rows()), columns=list(EXPORT_COLUMNS))
        if suffix == ".csv":
            frame.to_csv(out, index=False)
        else:
            try:
                frame.to_parquet(out, index=False)
            except ImportError as exc:
                raise BenchStoreError(f"Parquet export needs pyarrow (pip install 'annette[parquet]'): {exc}") from exc
        return out

    def close(self) -> None:
        self.db.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the writer lock
            self._lock = None

    def __enter__(self) -> BenchStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _kind(exc: sqlite3.DatabaseError) -> str:
    name = str(getattr(exc, "sqlite_errorname", ""))
    text = str(exc).lower()
    if "FULL" in name or "disk is full" in text:
        return "full"
    if "CORRUPT" in name or "NOTADB" in name or "malformed" in text or "not a database" in text:
        return "damaged"
    if "READONLY" in name or "readonly" in text:
        return "readonly"
    if "BUSY" in name or "LOCKED" in name or "locked" in text:
        return "busy"
    if "IOERR" in name or "CANTOPEN" in name or "disk i/o" in text or "unable to open" in text:
        return "io"
    return "other"


def _reason(exc: sqlite3.DatabaseError) -> str:
    kind = _kind(exc)
    if kind == "full":
        return ("the disk is full (every record committed so far is kept: free some space and continue with "
                "--resume)")
    if kind == "damaged":
        return f"the file is damaged ({exc}); restore it from a copy, or start a new store"
    if kind == "readonly":
        return f"the store is read-only ({exc})"
    if kind == "busy":
        return f"the database is locked by another process ({exc})"
    if kind == "io":
        return f"a disk I/O error ({exc})"
    return str(exc)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))
