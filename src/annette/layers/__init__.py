"""Layer models: one per executed-layer type and kind, sharing one feature extractor.

Kinds (registry :data:`LAYER_MODELS`): ``roofline``, ``refined`` (refined roofline), ``statistical``
(LightGBM) and ``mixed`` (refined roofline corrected by LightGBM).
"""

from __future__ import annotations

from annette.layers.base import LAYER_MODELS, LayerModel
from annette.layers.features import (
    ALL_FEATURE_NAMES,
    FEATURE_NAMES,
    FEATURES,
    Features,
    executed_type,
    extract,
)
from annette.layers.layertype import LayerType
from annette.layers.mixed import MixedModel
from annette.layers.refined import RefinedRooflineModel
from annette.layers.roofline import RooflineModel
from annette.layers.statistical import StatisticalModel

# From simplest to most refined; a kind that a type lacks falls back along this order.
KINDS: tuple[str, ...] = ("roofline", "refined", "statistical", "mixed")

__all__ = [
    "ALL_FEATURE_NAMES",
    "FEATURES",
    "FEATURE_NAMES",
    "KINDS",
    "LAYER_MODELS",
    "Features",
    "LayerModel",
    "LayerType",
    "MixedModel",
    "RefinedRooflineModel",
    "RooflineModel",
    "StatisticalModel",
    "executed_type",
    "extract",
]
