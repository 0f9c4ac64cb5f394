"""The original ANNETTE's file formats and its exact estimation path (roofline and refined roofline).

Public API::

    from annette.legacy import estimate_legacy
    est = estimate_legacy("graph.json", "ncs2-roofline.json", "ov.json")
    est.total_ms, est.n_layers, est.layers, est.warnings

See ``docs/legacy.md`` for the formats and every quirk of the original that is reproduced.
"""

from __future__ import annotations

from annette.legacy.estimate import LegacyEstimate, LegacyLayerResult, estimate_legacy
from annette.legacy.graph import LegacyGraph, load_graph
from annette.legacy.layer_model import DimParams, LayerEntry, LayerModel, load_layer_model
from annette.legacy.mapping import FuseCondition, MappingModel, MappingRule, apply_mapping, load_mapping_model

__all__ = [
    "DimParams",
    "FuseCondition",
    "LayerEntry",
    "LayerModel",
    "LegacyEstimate",
    "LegacyGraph",
    "LegacyLayerResult",
    "MappingModel",
    "MappingRule",
    "apply_mapping",
    "estimate_legacy",
    "load_graph",
    "load_layer_model",
    "load_mapping_model",
]
