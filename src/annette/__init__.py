"""annette: layer-wise latency estimation of neural networks with stacked mapping and layer models."""

from __future__ import annotations

__version__ = "0.1.0"

from annette.errors import AnnetteError

__all__ = ["AnnetteError", "__version__"]
