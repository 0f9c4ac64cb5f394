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


# Every setting of every kind at a value other than its default (tuples as get_params gives them: lists).
NON_DEFAULT: dict[str, dict[str, object]] = {
    "roofline": {"overhead": False, "work": "macs", "traffic": ["input_bytes", "output_bytes"]},
    "refined": {"dims": ["c", "f"], "par_candidates": [4, 8], "overhead": False, "max_passes": 2, "work": "macs",
                "traffic": ["input_bytes", "weight_bytes"], "replication": True, "compute_bound_only": True},
    "statistical": {"n_estimators": 50, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 5, "seed": 3},
    "mixed": {"par_candidates": [8, 16], "overhead": False, "n_estimators": 40, "learning_rate": 0.2,
              "num_leaves": 9, "min_child_samples": 4, "seed": 2},
}
# Settings that still fit the law data (its macs and split byte columns are zero), for the JSON round trip.
FITTABLE: dict[str, dict[str, object]] = {
    "roofline": {"overhead": False},
    "refined": {"par_candidates": [4, 8, 16], "max_passes": 2},
    "statistical": {"n_estimators": 50, "num_leaves": 7, "seed": 3},
    "mixed": {"par_candidates": [4, 8, 16], "n_estimators": 40, "num_leaves": 9, "seed": 2},
}


@pytest.mark.parametrize("kind", LAYER_MODELS.names())
def test_settings_are_stored_unchanged(kind: str) -> None:
    cls = LAYER_MODELS.get(kind)
    defaults, settings = cls().get_params(), NON_DEFAULT[kind]
    assert set(settings) == set(defaults) and all(settings[k] != defaults[k] for k in settings)
    model = cls(**settings)
    assert model.get_params() == settings
    assert cls(**model.get_params()).get_params() == settings
    assert not hasattr(model, "feature_names_")


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
    model = LAYER_MODELS.get(kind)(**FITTABLE[kind]).fit(X, y)
    text = json.dumps(model.to_dict())
    doc = json.loads(text)
    assert doc["kind"] == kind and doc["feature_names"] == list(FEATURE_NAMES) and doc["n_samples"] == len(y)
    loaded = LayerModel.from_dict(doc)
    assert type(loaded) is type(model) and loaded.get_params() == {**model.get_params(), **FITTABLE[kind]}
    assert loaded.get_params() != LAYER_MODELS.get(kind)().get_params()
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
