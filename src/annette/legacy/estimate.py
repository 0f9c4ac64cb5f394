"""The original ANNETTE estimation path on legacy files (``annette.estimate.estimate``).

load graph -> apply the mapping model (optional) -> estimate every visited layer with the entry of its type
(else ``Base``) -> sum the times in visiting order, with Python floats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from annette.errors import LegacyFormatError
from annette.legacy.graph import LegacyGraph, load_graph
from annette.legacy.jsonfile import JsonSource
from annette.legacy.layer_model import LayerModel, estimate_layer, load_layer_model
from annette.legacy.mapping import MappingModel, apply_mapping, load_mapping_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LegacyLayerResult:
    """One visited layer (a layer visited twice appears twice, as in the original's table)."""

    name: str
    type: str
    time_ms: float
    num_ops: int | float
    num_inputs: int | float
    num_outputs: int | float
    num_weights: int | float
    entry: str  # the layer-model entry used (the layer's type, or "Base")
    est_type: str
    bound: str  # "op" or "data"
    eff: float | None = None  # utilisation the roofline was divided by, where refined
    fused: tuple[str, ...] = ()  # layers the mapping model fused into this one

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "time_ms": self.time_ms,
            "num_ops": self.num_ops,
            "num_inputs": self.num_inputs,
            "num_outputs": self.num_outputs,
            "num_weights": self.num_weights,
            "entry": self.entry,
            "est_type": self.est_type,
            "bound": self.bound,
            "eff": self.eff,
            "fused": list(self.fused),
        }


@dataclass(frozen=True)
class LegacyEstimate:
    graph: str
    layer_model: str
    mapping_model: str | None
    total_ms: float
    layers: tuple[LegacyLayerResult, ...]
    warnings: tuple[str, ...] = ()

    @property
    def n_layers(self) -> int:
        """Visited layers after mapping (``len(topological_sort)``; a double visit counts twice)."""
        return len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "layer_model": self.layer_model,
            "mapping_model": self.mapping_model,
            "total_ms": self.total_ms,
            "n_layers": self.n_layers,
            "layers": [r.to_dict() for r in self.layers],
            "warnings": list(self.warnings),
        }


def estimate_legacy(
    graph: JsonSource | LegacyGraph,
    layer_model: JsonSource | LayerModel,
    mapping_model: JsonSource | MappingModel | None = None,
) -> LegacyEstimate:
    """Estimate a legacy graph exactly as the original ANNETTE does (roofline-type layer models).

    ``graph``, ``layer_model`` and ``mapping_model`` are paths, parsed dicts or loaded objects; the graph is
    copied before the mapping model edits it. ``mapping_model=None`` skips mapping. Entries whose
    statistical model is unavailable keep their roofline value, listed in ``warnings``.
    """
    g = load_graph(graph)
    model = load_layer_model(layer_model)
    mapping = None if mapping_model is None else load_mapping_model(mapping_model)
    if mapping is not None:
        apply_mapping(g, mapping)
    warnings: list[str] = []
    results: list[LegacyLayerResult] = []
    total = 0.0
    for name in g.topological_sort:
        layer = g.layers.get(name)
        if layer is None:
            raise LegacyFormatError(
                f"{g.source}: layer {name!r} is in the final topological sort but no longer in the graph (a "
                "split without a later fusion leaves the sort stale; the original fails here too)"
            )
        entry = model.entry_for(layer["type"], name)
        est = estimate_layer(entry, name, layer)
        if est.note and est.note not in warnings:
            log.error("%s", est.note)
            warnings.append(est.note)
        total = total + est.time_ms
        c = est.counts
        results.append(
            LegacyLayerResult(
                name=name,
                type=layer["type"],
                time_ms=est.time_ms,
                num_ops=c.num_ops,
                num_inputs=c.num_inputs,
                num_outputs=c.num_outputs,
                num_weights=c.num_weights,
                entry=entry.key,
                est_type=entry.est_type,
                bound=est.bound,
                eff=est.eff,
                fused=tuple(g.fused.get(name, ())),
            )
        )
    return LegacyEstimate(
        graph=g.name,
        layer_model=model.name,
        mapping_model=None if mapping is None else mapping.name,
        total_ms=total,
        layers=tuple(results),
        warnings=tuple(warnings),
    )
