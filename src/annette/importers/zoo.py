"""The torchvision classification zoo, with random weights (nothing is downloaded).

``export_onnx(name, batch=...)`` builds the model (``weights=None``, seeded, eval mode; GoogLeNet and
Inception-v3 without auxiliary heads), exports it at its native input size and caches the ONNX file under
``$ANNETTE_CACHE_DIR/zoo`` (default ``~/.cache/annette/zoo``) keyed by name, batch and torch version.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path

import onnx

from annette.errors import ModelFileError, UnknownNameError
from annette.graph.ir import Graph
from annette.torchvision_models import TORCHVISION_MODELS

log = logging.getLogger(__name__)

_CONSTRUCTOR_OPTIONS: dict[str, dict[str, bool]] = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}

SEED = 0
PROTOBUF_LIMIT_BYTES = 1_900_000_000


def cache_dir() -> Path:
    return Path(os.environ.get("ANNETTE_CACHE_DIR", Path.home() / ".cache" / "annette")) / "zoo"


def _check_name(name: str) -> int:
    try:
        return TORCHVISION_MODELS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown torchvision model {name!r}; valid names: {', '.join(sorted(TORCHVISION_MODELS))}"
        ) from None


def _torch_version() -> str:
    """The installed torch version, without importing torch (seconds) when the export is cached."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError("torchvision: models need torch and torchvision (pip install annette[torch])") from None


def _cache_path(name: str, batch: int) -> Path:
    return cache_dir() / f"{name}_b{batch}_torch{_torch_version().replace('+', '_')}.onnx"


def is_cached(name: str, *, batch: int = 1) -> bool:
    """Whether the export of ``name`` at ``batch`` is on disk already (else the first use exports it: seconds to
    minutes with torch)."""
    try:
        return name in TORCHVISION_MODELS and _cache_path(name, batch).is_file()
    except ModelFileError:  # torch is not installed
        return False


def export_onnx(name: str, *, batch: int = 1) -> onnx.ModelProto:
    """The ONNX export of torchvision model ``name`` at batch ``batch`` (cached on disk)."""
    size = _check_name(name)
    if batch <= 0:
        raise ModelFileError(f"batch must be a positive integer, got {batch}")
    path = _cache_path(name, batch)
    cached = load_cached(path)
    if cached is not None:
        return cached
    import torch
    import torchvision

    from annette.importers.torch import onnx_from_module

    log.info("exporting torchvision:%s at batch %d, %dx%d (first use; cached in %s)", name, batch, size, size, path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        module = torchvision.models.get_model(name, weights=None, **_CONSTRUCTOR_OPTIONS.get(name, {}))
    proto = onnx_from_module(module, (torch.zeros(batch, 3, size, size),), name=name)
    return save_cached(proto, path)


def load_cached(path: Path) -> onnx.ModelProto | None:
    """The cached export at ``path``; None where there is none or it cannot be read (a cache file cut short by an
    interrupted write is ignored, and written again)."""
    if not path.is_file():
        return None
    try:
        return onnx.load_model(str(path))
    except Exception as exc:  # protobuf DecodeError
        log.warning("ignoring the unreadable cached export %s (%s)", path, exc)
        return None


def save_cached(proto: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """Write an export to ``path`` atomically; weights over protobuf's 2 GiB limit (ViT-H/14, RegNet-Y-128GF) go
    to a side file next to it. Returns the model as it is to be used (reloaded in that case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    if sum(len(t.raw_data) for t in proto.graph.initializer) < PROTOBUF_LIMIT_BYTES:
        onnx.save_model(proto, str(tmp))
        tmp.replace(path)
        return proto
    data = path.with_name(path.name + ".data")
    onnx.save_model(proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
    tmp.replace(path)
    return onnx.load_model(str(path))


def graph_from_torchvision(name: str, *, batch: int = 1) -> Graph:
    """Import torchvision model ``name`` (random weights, native input size) as an annette Graph."""
    from annette.importers.onnx import graph_from_onnx

    return graph_from_onnx(export_onnx(name, batch=batch), name=name)
