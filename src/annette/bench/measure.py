"""Measure a whole network end to end (and optionally per node), in this process.

``measure_model("torchvision:resnet18", backend="onnxruntime")`` -> a ``BenchRecord`` of kind
"network": the graph (annette IR), the measurement under the protocol (label = ``LABEL_STATISTIC``), the
per-node profile when asked for, the target and metadata. ONNX backends take any spec with an ONNX form
(``annette.importers.model_to_onnx``: .onnx files, ``torchvision:``, ``nb201:``) or an ``onnx.ModelProto``;
the torch backend runs ``torchvision:NAME`` specs natively.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from annette.bench.records import BenchRecord
from annette.bench.runner import DEFAULT_PROTOCOL, NETWORK_PROTOCOL, TimingProtocol, measure
from annette.bench.worker import PROFILE_RUNS, record_metadata

if TYPE_CHECKING:
    from annette.bench.store import BenchStore


def measure_model(
    spec_or_onnx: Any,
    *,
    backend: str = "onnxruntime",
    threads: int = 1,
    batch: int = 1,
    profile: bool = False,
    protocol: TimingProtocol = NETWORK_PROTOCOL,
    profile_runs: int = PROFILE_RUNS,
    **backend_options: Any,
) -> BenchRecord:
    """Measure one network on ``backend`` (see the module docstring); raises BackendError on failure."""
    import onnx

    from annette.backends import get_backend
    from annette.importers import load_model, model_to_onnx
    from annette.importers.onnx import graph_from_onnx

    be = get_backend(backend, threads=threads, batch=batch, **backend_options)
    target = be.describe()
    runnable: onnx.ModelProto | str
    if isinstance(spec_or_onnx, onnx.ModelProto):
        family, runnable = f"onnx:{spec_or_onnx.graph.name or 'model'}", spec_or_onnx
    elif backend == "torch":  # PyTorch runs the module itself; the graph comes from its ONNX export
        family, runnable = str(spec_or_onnx), str(spec_or_onnx)
    else:
        family, runnable = str(spec_or_onnx), model_to_onnx(spec_or_onnx, batch=batch)
    if isinstance(runnable, onnx.ModelProto):
        graph = graph_from_onnx(runnable)
        digest = hashlib.sha256(runnable.SerializeToString()).hexdigest()[:16]
    else:
        graph = load_model(runnable, batch=batch)
        digest = hashlib.sha256(runnable.encode()).hexdigest()[:16]
    prepared = be.prepare(runnable)
    measurement = measure(prepared, protocol)
    nodes = prepared.profile(profile_runs) if profile else ()
    config_id = hashlib.sha256(f"network|{digest}|b{batch}|{target.key}".encode()).hexdigest()[:16]
    return BenchRecord(
        config_id=config_id,
        kind="network",
        family=family,
        params={"batch": batch},
        target=target,
        status="ok",
        graph=graph,
        measurement=measurement,
        profile=nodes,
        metadata={**record_metadata(measurement, nodes), "protocol": protocol.to_dict()},
    )


def measure_blocks(
    store: BenchStore,
    blocks: Iterable[tuple[str, Mapping[str, Any], Callable[[], Any]]],
    *,
    source: str,
    minutes: float,
    backend: str = "onnxruntime",
    **backend_options: Any,
) -> Iterator[BenchRecord]:
    """Measure multi-layer blocks ``(family, params, build)`` (``build()`` gives an ``onnx.ModelProto``) with
    their per-node profiles under the campaign's protocol, for ``minutes``, adding each to ``store`` as a
    ``multi`` record of its family identified by family, parameters and target; yields the new records. A block
    the store holds already is neither built nor measured (a killed campaign resumes). For targeted
    campaigns (``benchmarks/ort_context_blocks.py``, ``benchmarks/cache_pressure.py``)."""
    from annette.backends import get_backend
    from annette.bench.blocks import canonical

    key = get_backend(backend, **backend_options).describe().key
    stop = time.monotonic() + 60 * minutes
    for family, params, build in blocks:
        if time.monotonic() > stop:
            return
        cid = hashlib.sha256(f"{family}|{canonical(params)}|{key}".encode()).hexdigest()[:16]
        if store.has(cid):
            continue
        rec = measure_model(build(), backend=backend, profile=True, protocol=DEFAULT_PROTOCOL, **backend_options)
        rec = replace(rec, config_id=cid, kind="multi", family=family, params=dict(params),
                      metadata={**rec.metadata, "source": source})  # fmt: skip
        store.add(rec)
        yield rec
