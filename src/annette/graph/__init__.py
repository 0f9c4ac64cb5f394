"""Graph IR, validation and op accounting."""

from __future__ import annotations

from annette.graph.ir import DTYPE_BYTES, GRAPH_SCHEMA_VERSION, Graph, Layer, TensorSpec, dtype_bytes

__all__ = ["DTYPE_BYTES", "GRAPH_SCHEMA_VERSION", "Graph", "Layer", "TensorSpec", "dtype_bytes"]
