"""Runtime backends behind one small Protocol (see ``annette.backends.base``).

``BACKENDS`` is the explicit registry (onnxruntime, openvino, torch, simulated); ``get_backend(name,
**options)`` builds one. The backend modules import their runtimes lazily, so importing this package
imports no runtime (and never torch).
"""

from __future__ import annotations

from annette.backends import onnxruntime, openvino, simulated, torch  # noqa: F401  (registration)
from annette.backends.base import BACKENDS, Backend, Prepared, get_backend

__all__ = ["BACKENDS", "Backend", "Prepared", "get_backend"]
