"""What a recipe knows about a target beyond what its records teach (``annette.convert.h200``: eager mode)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from annette.layers import LayerModel
from annette.layers.features import GENERIC_TYPE, ElementBits
from annette.mapping.rules import MappingRules


@dataclass(frozen=True)
class Recipe:
    """Inputs of :func:`annette.fit.fit_records` beside the records.

    - ``rules``: fixed mapping rules, added to the learned ones where those say nothing of the same op or pattern
      (their settings too); samples are collected under the result;
    - ``models``: layer models fitted elsewhere (type -> kind -> model), added to the bundle (replacing a fitted
      type of the same name);
    - ``fallbacks``: type redirects (e.g. MatMul -> Gemm), kept where the bundle has models of the target type;
    - ``default_type``: the type whose models cost types no model covers, where it has models and the fit's
      ``generic_default`` holds (default: the generic model fitted on all samples, ``*``);
    - ``element_bits``: the bundle counts bytes at these widths (see :class:`ElementBits`).
    """

    rules: MappingRules | None = None
    models: Mapping[str, Mapping[str, LayerModel]] = field(default_factory=dict)
    fallbacks: Mapping[str, str] = field(default_factory=dict)
    default_type: str | None = GENERIC_TYPE
    element_bits: ElementBits | None = None

    def mapping(self, learned: MappingRules) -> MappingRules:
        """The learned rules with the fixed ones added."""
        fixed = self.rules
        if fixed is None:
            return learned
        patterns = {f.pattern for f in learned.fusions}
        merges = {m.op for m in learned.merges}
        return replace(
            learned,
            fusions=(*learned.fusions, *(f for f in fixed.fusions if f.pattern not in patterns)),
            removals=(*learned.removals, *(r for r in fixed.removals if r.op not in learned.removals_by_op)),
            insertions=(*learned.insertions, *fixed.insertions),
            merges=(*learned.merges, *(m for m in fixed.merges if m.op not in merges)),
            layouts=learned.layouts if learned.layouts is not None else fixed.layouts,
            settings={**dict(learned.settings or {}), **dict(fixed.settings or {})},
        )

    def layer_models(self, fitted: Mapping[str, Mapping[str, LayerModel]]) -> dict[str, dict[str, LayerModel]]:
        return {**{t: dict(m) for t, m in fitted.items()}, **{t: dict(m) for t, m in self.models.items()}}

    def redirects(self, fitted: Mapping[str, str], models: Mapping[str, object]) -> dict[str, str]:
        """The fit's redirects, then the recipe's whose target type has models."""
        return {**fitted, **{t: v for t, v in self.fallbacks.items() if v in models}}

    def default(self, models: Mapping[str, object], generic_default: bool) -> str | None:
        return self.default_type if generic_default and self.default_type is not None and models.get(
            self.default_type) else None
