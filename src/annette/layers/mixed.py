"""Mixed layer model (ANNETTE's best): the refined roofline corrected by a statistical model.

t = t_refined · exp(g(features)), where g is a LightGBM model of the log ratio between measured and
refined-roofline time. The refined roofline carries the scaling with work and the utilisation steps of the
unrolled dimensions (so the model extrapolates like a roofline); the trees learn what it misses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from annette.layers.base import LAYER_MODELS, LayerModel
from annette.layers.features import Features
from annette.layers.refined import RefinedRooflineModel
from annette.layers.statistical import StatisticalModel


class MixedModel(LayerModel):
    """Refined roofline × exp(statistical correction)."""

    kind = "mixed"
    refined_: RefinedRooflineModel
    correction_: StatisticalModel

    def __init__(
        self,
        par_candidates: Sequence[int] = (2, 4, 8, 16, 32, 64),
        overhead: bool = True,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 10,
        seed: int = 0,
    ) -> None:
        self.par_candidates = tuple(par_candidates)
        self.overhead = overhead
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed


    def _parts(self) -> tuple[RefinedRooflineModel, StatisticalModel]:
        return (
            RefinedRooflineModel(par_candidates=self.par_candidates, overhead=self.overhead),
            StatisticalModel(
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples,
                seed=self.seed,
            ),
        )

    def _fit(self, X: np.ndarray, y_ms: np.ndarray, names: tuple[str, ...]) -> None:
        refined, correction = self._parts()
        refined.fit(Features(names, X), y_ms)
        base = refined.predict(Features(names, X))
        correction.fit_log_target(X, np.log(y_ms) - np.log(base), names)
        correction.feature_names_, correction.n_samples_ = names, len(y_ms)
        self.refined_, self.correction_ = refined, correction

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.refined_._predict(X) * np.exp(self.correction_.predict_log(X))  # type: ignore[no-any-return]

    def bound(self, X: Features) -> np.ndarray:
        """The refined roofline's bound per row."""
        self._check(X)
        return self.refined_.bound(X)

    def _learned_to_dict(self) -> dict[str, Any]:
        return {"refined": self.refined_.to_dict(), "correction": self.correction_.to_dict()}

    def _check_loaded(self) -> None:
        for part in (self.refined_, self.correction_):
            if part.feature_names_ != self.feature_names_:
                raise ValueError(f"mixed model: its {part.kind} part has other feature names than the model")

    def _learned_from_dict(self, d: Mapping[str, Any]) -> None:
        refined = LayerModel.from_dict(d["refined"])
        correction = LayerModel.from_dict(d["correction"])
        if not isinstance(refined, RefinedRooflineModel) or not isinstance(correction, StatisticalModel):
            raise ValueError("mixed model: expected a refined roofline and a statistical correction")
        self.refined_, self.correction_ = refined, correction


LAYER_MODELS.register("mixed", MixedModel)
