"""Contract checks every registered layer model passes (scikit-learn's check_estimator, in small)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annette.errors import HardwareModelError, NotFittedError
from annette.layers import KINDS, LAYER_MODELS, LayerModel
from annette.layers.features import FEATURE_NAMES, Features
from annette.layers.refined import efficiency


def law_data(n: int = 120, seed: int = 0) -> tuple[Features, np.ndarray]:
    """Rows with a refined-roofline latency law (peak 1e11 flop/s, 1e10 B/s, 5 µs, c par 8, f par 16)."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, len(FEATURE_NAMES)))
    col = FEATURE_NAMES.index
    X[:, col("flops")] = rng.uniform(1e5, 1e9, n)
    X[:, col("bytes")] = rng.uniform(1e3, 1e7, n)
    for name in ("out_h", "out_w", "in_c", "out_c"):
        X[:, col(name)] = rng.integers(1, 100, n)
    sizes = {"c": X[:, col("in_c")], "f": X[:, col("out_c")]}
    eff = efficiency(sizes, {"c": 8.0, "f": 16.0}, {"c": 0.7, "f": 1.0})
    y = np.maximum(X[:, col("flops")] / (1e11 * eff), X[:, col("bytes")] / 1e10) * 1e3 + 0.005
    return Features(FEATURE_NAMES, X), y


@pytest.fixture(scope="module")
def data() -> tuple[Features, np.ndarray]:
    return law_data()


def test_registry_holds_the_four_kinds() -> None:
    assert LAYER_MODELS.names() == sorted(KINDS)


@pytest.mark.parametrize("kind", LAYER_MODELS.names())
def test_fit_returns_self_and_predicts_positive(kind: str, data: tuple[Features, np.ndarray]) -> None:
    X, y = data
    model = LAYER_MODELS.get(kind)()
    assert model.fit(X, y) is model
    pred = model.predict(X)
    assert pred.shape == y.shape and np.all(np.isfinite(pred)) and np.all(pred > 0)
    assert model.feature_names_ == FEATURE_NAMES and model.n_samples_ == len(y)
    # a model of the right form learns the law well in-sample
    assert np.median(np.abs(pred / y - 1)) < 0.25


@pytest.mark.parametrize("kind", LAYER_MODELS.names())
def test_settings_are_stored_unchanged(kind: str) -> None:
    cls = LAYER_MODELS.get(kind)
    params = cls().get_params()
    assert cls(**params).get_params() == params
    assert not hasattr(cls(), "feature_names_")


@pytest.mark.parametrize("kind", LAYER_MODELS.names())
def test_predict_before_fit_raises(kind: str, data: tuple[Features, np.ndarray]) -> None:
    model = LAYER_MODELS.get(kind)()
    with pytest.raises(NotFittedError, match="not fitted"):
        model.predict(data[0])
    with pytest.raises(NotFittedError):
        model.to_dict()


@pytest.mark.parametrize("kind", LAYER_MODELS.names())
def test_json_round_trip_predicts_identically(kind: str, data: tuple[Features, np.ndarray]) -> None:
    X, y = data
    model = LAYER_MODELS.get(kind)().fit(X, y)
    text = json.dumps(model.to_dict())
    assert "pickle" not in text
    loaded = LayerModel.from_dict(json.loads(text))
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    fresh, _ = law_data(n=40, seed=1)
    assert np.array_equal(loaded.predict(fresh), model.predict(fresh))


@pytest.mark.parametrize("kind", LAYER_MODELS.names())
def test_feature_name_mismatch_raises(kind: str, data: tuple[Features, np.ndarray]) -> None:
    X, y = data
    model = LAYER_MODELS.get(kind)().fit(X, y)
    renamed = Features(("flop_count", *X.names[1:]), X.values)
    with pytest.raises(HardwareModelError, match="flop_count"):
        model.predict(renamed)
    fewer = Features(X.names[:-1], X.values[:, :-1])
    with pytest.raises(HardwareModelError, match="missing"):
        model.predict(fewer)


@pytest.mark.parametrize("kind", LAYER_MODELS.names())
def test_fit_rejects_mismatched_times(kind: str, data: tuple[Features, np.ndarray]) -> None:
    X, y = data
    with pytest.raises(ValueError, match="expected"):
        LAYER_MODELS.get(kind)().fit(X, y[:-1])
    with pytest.raises(ValueError, match="no sample"):
        LAYER_MODELS.get(kind)().fit(X, np.zeros_like(y))


def test_unknown_kind_in_json_is_a_hardware_model_error() -> None:
    with pytest.raises(HardwareModelError, match="cubic"):
        LayerModel.from_dict({"kind": "cubic", "params": {}, "feature_names": [], "learned": {}})
