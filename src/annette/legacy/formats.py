"""Data-only views of legacy layer-model and mapping-model files, for converting them to other formats.

Nothing here estimates or evaluates: it exposes what each file says, as typed frozen dataclasses
(:class:`~annette.legacy.layer_model.LayerEntry`, :class:`~annette.legacy.mapping.MappingRule`) or as
JSON-ready dicts. Layer entries carry the *effective* values the original estimator uses (bits 8/8 where the
file has no architecture, no unrolling for ``statistical`` entries; see ``LayerEntry``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from annette.legacy.jsonfile import JsonSource
from annette.legacy.layer_model import LayerEntry, LayerModel, load_layer_model
from annette.legacy.mapping import MappingModel, MappingRule, load_mapping_model


def layer_model_entries(source: JsonSource | LayerModel) -> tuple[LayerEntry, ...]:
    """The entries of a layer-model file in file order (one per ``layer_type``; duplicate keys: last wins)."""
    return tuple(load_layer_model(source).entries.values())


def mapping_rules(source: JsonSource | MappingModel) -> tuple[MappingRule, ...]:
    """The rules of a mapping-model file in the order they are applied (classifier rules included, as data)."""
    return load_mapping_model(source, runnable=False).rules


def layer_model_to_dict(source: JsonSource | LayerModel) -> dict[str, Any]:
    """A JSON-ready summary: ``{"name", "source", "duplicate_keys", "entries": [{...LayerEntry fields, "layer_class"}]}``."""
    model = load_layer_model(source)
    entries = [
        {**dataclasses.asdict(e), "layer_class": e.layer_class, "dims": {d: dataclasses.asdict(p) for d, p in e.dims.items()}}
        for e in model.entries.values()
    ]
    return {"name": model.name, "source": model.source, "duplicate_keys": list(model.duplicate_keys), "entries": entries}


def mapping_model_to_dict(source: JsonSource | MappingModel) -> dict[str, Any]:
    """A JSON-ready summary: ``{"name", "source", "rules": [{...MappingRule fields}]}`` in application order."""
    model = load_mapping_model(source, runnable=False)
    return {"name": model.name, "source": model.source, "rules": [dataclasses.asdict(r) for r in model.rules]}
