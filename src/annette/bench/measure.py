"""Measure a whole network end to end (and optionally per node), in this process.

``measure_model("torchvision:resnet18", backend="onnxruntime")`` -> a ``BenchRecord`` of kind
"network": the graph (annette IR), the measurement under the protocol (label = ``LABEL_STATISTIC``), the
per-node profile when asked for (linked to the graph's layers), the target and metadata. ONNX backends take
any spec with an ONNX form (``annette.importers.model_to_onnx``: .onnx files, ``torchvision:``, ``nb201:``)
or an ``onnx.ModelProto``; a backend that takes specs (``takes_specs``: torch) runs ``torchvision:NAME``
specs natively.
"""

from __future__ import annotations

import hashlib
from typing import Any

from annette.bench.runner import NETWORK_PROTOCOL, TimingProtocol, measure
from annette.bench.worker import PROFILE_RUNS, record_metadata
from annette.records import BenchRecord


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
    from annette.mapping.observed import link_profile

    be = get_backend(backend, threads=threads, batch=batch, **backend_options)
    target = be.describe()
    runnable: onnx.ModelProto | str
    if isinstance(spec_or_onnx, onnx.ModelProto):
        family, runnable = f"onnx:{spec_or_onnx.graph.name or 'model'}", spec_or_onnx
    elif be.takes_specs:  # e.g. PyTorch runs the module itself; the graph comes from its ONNX export
        family, runnable = str(spec_or_onnx), str(spec_or_onnx)
    else:
        family, runnable = str(spec_or_onnx), model_to_onnx(spec_or_onnx, batch=batch)
    if isinstance(runnable, onnx.ModelProto):
        graph = graph_from_onnx(runnable)
        digest = hashlib.sha256(runnable.SerializeToString()).hexdigest()[:16]
    else:
        graph = load_model(runnable, batch=batch)
        digest = hashlib.sha256(runnable.encode()).hexdigest()[:16]
    prepared = be.prepare(runnable, graph)
    measurement = measure(prepared, protocol)
    nodes = link_profile(graph, prepared.profile(profile_runs)) if profile else ()
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
