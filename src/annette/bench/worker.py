"""Measure one configuration, in-process (``run_config``) or isolated in a worker process (``Worker``).

The worker is a persistent ``spawn``ed subprocess (it says when its runtime is loaded) that builds each configuration's network, prepares it on
the backend, measures it under the protocol and profiles it, and sends the record back over a pipe. A
configuration that crashes the process (segfault, abort) or hangs past ``timeout_s`` becomes a failed
record with the reason; the worker is killed and restarted for the next configuration, so the campaign
goes on. When the parent dies, the worker sees its pipe close and exits.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from annette.bench.runner import DEFAULT_PROTOCOL, TimingProtocol, measure
from annette.bench.sweeps import BenchConfig
from annette.errors import AnnetteError, BackendError
from annette.records import BenchRecord, Measurement, NodeProfile, Target
from annette.stats import LABEL_STATISTIC

log = logging.getLogger(__name__)

PROFILE_RUNS = 10


def record_metadata(measurement: Measurement | None = None, profile: tuple[NodeProfile, ...] = ()) -> dict[str, Any]:
    """Date, load average, versions, and (with a measurement) the label statistic and profile coverage."""
    import annette
    from annette.records import RECORD_SCHEMA_VERSION

    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else [],
        "annette_version": annette.__version__,
        "record_schema_version": RECORD_SCHEMA_VERSION,
        "python": platform.python_version(),
        "host": platform.node(),
        "label_statistic": LABEL_STATISTIC,
    }
    if measurement is not None and profile:
        total = sum(p.time_ms for p in profile)
        meta["profile_sum_ms"] = total
        meta["profile_coverage"] = total / measurement.label_ms if measurement.label_ms > 0 else None
    return meta


def run_config(
    config: BenchConfig,
    backend: Any,
    target: Target,
    *,
    protocol: TimingProtocol = DEFAULT_PROTOCOL,
    profile_runs: int = PROFILE_RUNS,
) -> BenchRecord:
    """Build, prepare, measure and (``profile_runs`` > 0) profile one configuration, in this process.

    An ``AnnetteError`` (the runtime refused the model, a run failed) gives a failed record.
    """
    from annette.bench.blocks import build_model
    from annette.importers.onnx import graph_from_onnx
    from annette.mapping.observed import link_profile

    base: dict[str, Any] = {"config_id": config.config_id, "kind": config.kind, "family": config.family, "params": config.params,
            "target": target}
    graph = None
    try:
        model = build_model(config.family, config.params, name=config.model_name)
        graph = graph_from_onnx(model)
        prepared = backend.prepare(model, graph)
        measurement = measure(prepared, protocol)
        profile = link_profile(graph, prepared.profile(profile_runs)) if profile_runs > 0 else ()
    except AnnetteError as exc:
        return BenchRecord(**base, status="failed", graph=graph, error=f"{type(exc).__name__}: {exc}",
                           metadata={**record_metadata(), "source": config.source})
    meta = {**record_metadata(measurement, profile), "source": config.source, "protocol": protocol.to_dict()}
    return BenchRecord(**base, status="ok", graph=graph, measurement=measurement, profile=profile, metadata=meta)


def _worker_main(conn: Connection, backend_name: str, options: Mapping[str, Any], protocol: Mapping[str, Any],
                 profile_runs: int) -> None:
    from annette.backends import get_backend

    try:
        backend = get_backend(backend_name, **options)
        target = backend.describe()
    except AnnetteError as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    conn.send({"ready": True})
    proto = TimingProtocol(**protocol)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if msg is None:
            return
        config = BenchConfig.from_dict(msg)
        try:
            record = run_config(config, backend, target, protocol=proto, profile_runs=profile_runs)
        except Exception as exc:  # an unexpected error in one configuration must not end the campaign
            record = BenchRecord(config.config_id, config.kind, config.family, config.params, target, "failed",
                                 error=f"internal error: {type(exc).__name__}: {exc}",
                                 metadata={**record_metadata(), "source": config.source})
        try:
            conn.send(record.to_dict())
        except (BrokenPipeError, OSError):
            return


class Worker:
    """A persistent measurement subprocess with a per-configuration timeout, restarted after a crash/hang."""

    def __init__(
        self,
        backend: str,
        options: Mapping[str, Any] | None = None,
        *,
        target: Target,
        protocol: TimingProtocol = DEFAULT_PROTOCOL,
        profile_runs: int = PROFILE_RUNS,
        timeout_s: float = 120.0,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.backend = backend
        self.options = dict(options or {})
        self.target = target
        self.protocol = protocol
        self.profile_runs = profile_runs
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.restarts = 0  # workers killed after a crash or hang
        self._proc: Any = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_worker_main,
            args=(child, self.backend, self.options, self.protocol.to_dict(), self.profile_runs),
            daemon=True,
            name="annette-bench-worker",
        )
        self._proc.start()
        child.close()
        self._conn = parent
        try:
            hello = parent.recv() if parent.poll(self.start_timeout_s) else {"error": "no answer"}
        except (EOFError, OSError):
            hello = {"error": f"it exited (code {self._proc.exitcode})"}
        if not hello.get("ready"):
            self._kill()
            raise BackendError(f"the {self.backend} benchmark worker did not start: {hello.get('error')}")

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def run(self, config: BenchConfig) -> BenchRecord:
        if self._proc is None or not self._proc.is_alive():
            self._kill()
            self._start()
        assert self._conn is not None
        timeout = self.timeout_s
        try:
            self._conn.send(config.to_dict())
            ready = self._conn.poll(timeout)
            if ready:
                return BenchRecord.from_dict(self._conn.recv())
            reason = f"timed out after {timeout:.0f} s (worker killed and restarted)"
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            self._proc.join(5)
            code = self._proc.exitcode
            reason = f"the worker process died (exit code {code}{_signal_name(code)}) while measuring it"
        log.warning("configuration %s (%s) failed: %s", config.config_id, config.family, reason)
        self._kill()
        self.restarts += 1  # the next configuration starts a fresh worker
        return BenchRecord(
            config_id=config.config_id, kind=config.kind, family=config.family, params=config.params,
            target=self.target, status="failed", error=reason,
            metadata={**record_metadata(), "source": config.source},
        )

    def close(self) -> None:
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(5)
            except (BrokenPipeError, OSError):
                pass
        self._kill()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _signal_name(code: int | None) -> str:
    if code is None or code >= 0:
        return ""
    import signal

    try:
        return f", {signal.Signals(-code).name}"
    except ValueError:
        return ""
