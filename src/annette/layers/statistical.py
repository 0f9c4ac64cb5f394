"""Statistical layer model: LightGBM gradient-boosted trees from the shared features to log time.

The booster is kept as LightGBM's own model text (``Booster.model_to_string``) inside the JSON bundle and
rebuilt with ``Booster(model_str=...)``: no pickle, and the round trip predicts bit-identically. LightGBM is
imported only when a statistical or mixed model is fitted or used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from annette.layers.base import LAYER_MODELS, LayerModel
from annette.layers.lgbm_text import checked_model_text, compact_model_text, text_n_features


class StatisticalModel(LayerModel):
    """Gradient-boosted trees on the shared features predicting log(time_ms)."""

    kind = "statistical"
    model_text_: str
    _booster: Any  # lightgbm.Booster built from model_text_ on first use

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 10,
        seed: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed


    def _fit(self, X: np.ndarray, y_ms: np.ndarray, names: tuple[str, ...]) -> None:
        self.fit_log_target(X, np.log(y_ms), names)

    def fit_log_target(self, X: np.ndarray, target: np.ndarray, names: tuple[str, ...]) -> None:
        """Train the trees on an arbitrary log-scale target (the mixed model fits a correction with it)."""
        import lightgbm as lgb

        n = len(target)
        params = {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            # Few samples: let leaves be small enough that the trees can split at all.
            "min_data_in_leaf": max(1, min(self.min_child_samples, n // 4)),
            "min_data_in_bin": 1,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "verbose": -1,
        }
        data = lgb.Dataset(X, label=target, feature_name=[_lgb_name(x) for x in names], free_raw_data=True)
        self.model_text_ = compact_model_text(
            lgb.train(params, data, num_boost_round=self.n_estimators).model_to_string()
        )
        # Predict from the saved text, not the in-memory booster, so a saved model predicts identically.
        self._booster = lgb.Booster(model_str=self.model_text_)

    def predict_log(self, X: np.ndarray) -> np.ndarray:
        booster = getattr(self, "_booster", None)
        if booster is None:
            import lightgbm as lgb

            booster = self._booster = lgb.Booster(model_str=self.model_text_)
        return np.asarray(booster.predict(X, num_threads=1), dtype=np.float64)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.exp(self.predict_log(X))  # type: ignore[no-any-return]

    def _learned_to_dict(self) -> dict[str, Any]:
        return {"lightgbm_model": self.model_text_}

    def _learned_from_dict(self, d: Mapping[str, Any]) -> None:
        # Checked here, at load: LightGBM's own parser is not memory-safe (see annette.layers.lgbm_text).
        self.model_text_ = checked_model_text(d["lightgbm_model"])
        self._booster = None

    def _check_loaded(self) -> None:
        n = text_n_features(self.model_text_)
        if n != len(self.feature_names_):
            raise ValueError(f"its LightGBM model takes {n} features, but it names {len(self.feature_names_)}")


def _lgb_name(name: str) -> str:
    return name.replace(" ", "_")


__all__ = ["StatisticalModel", "compact_model_text"]

LAYER_MODELS.register("statistical", StatisticalModel)
