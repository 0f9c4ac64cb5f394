"""The statistical model's stored LightGBM text drops training-only fields and predicts bit-identically."""

from __future__ import annotations

import numpy as np

from annette.layers.statistical import compact_model_text


def test_compact_model_text_predicts_identically_and_is_smaller() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 100, size=(400, 4))
    y = np.log(X[:, 0] * X[:, 1] + X[:, 2])
    params = {"objective": "regression", "num_leaves": 15, "verbose": -1, "seed": 0, "deterministic": True}
    full = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=40).model_to_string()
    small = compact_model_text(full)
    assert len(small) < 0.75 * len(full)
    assert "leaf_count=" not in small and "tree_sizes=" not in small and "feature_importances" not in small
    Xt = rng.uniform(0, 120, size=(500, 4))
    a = lgb.Booster(model_str=full).predict(Xt)
    b = lgb.Booster(model_str=small).predict(Xt)
    assert np.array_equal(a, b)
