"""The layer-model contract (scikit-learn's): settings in ``__init__``, learned values end with ``_``.

A layer model predicts the kernel time (ms) of executed layers of one type from their :class:`Features`.
``fit(X, time_ms)`` returns ``self``; ``predict`` before ``fit`` raises :class:`NotFittedError`; a fitted model
stores its feature names and refuses a matrix with other columns; ``to_dict``/``from_dict`` round-trip
through JSON exactly (tree ensembles in LightGBM's own text format, never pickle).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from annette import checks
from annette.errors import (
    HardwareModelError,
    InsufficientDataError,
    InvalidOptionError,
    NotFittedError,
    UnknownNameError,
)
from annette.layers.features import Features, check_names
from annette.registry import Registry


class LayerModel(ABC):
    kind: ClassVar[str]
    feature_names_: tuple[str, ...]
    n_samples_: int
    # The smallest and largest value of each size feature (COVERAGE_FEATURES) over the fitted rows; empty for a
    # model loaded from a bundle that predates it (it covers everything).
    coverage_: Mapping[str, tuple[float, float]] = MappingProxyType({})

    # -- settings ------------------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` settings, read back from the attributes of the same names (tuples as JSON lists).

        As in scikit-learn, the parameters are those of ``__init__``'s signature, so a new setting needs no
        second list here.
        """
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: list(v) if isinstance(v, tuple) else v for n in names for v in (getattr(self, n),)}

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, X: Features, time_ms: np.ndarray) -> LayerModel:
        y = np.asarray(time_ms, dtype=np.float64)
        if y.shape != (len(X),):
            raise InvalidOptionError(f"{type(self).__name__}.fit: expected {len(X)} times, got shape {y.shape}")
        keep = np.isfinite(y) & (y > 0) & np.all(np.isfinite(X.values), axis=1)
        if not keep.any():
            raise InsufficientDataError(f"{type(self).__name__}.fit: no sample with a finite positive time and features")
        self._fit(X.values[keep], y[keep], X.names)
        self.feature_names_ = tuple(X.names)
        self.n_samples_ = int(keep.sum())
        self.coverage_ = {n: (float(col.min()), float(col.max())) for n in COVERAGE_FEATURES if n in X.names
                          for col in (X.values[keep][:, X.names.index(n)],)}
        return self

    @abstractmethod
    def _fit(self, X: np.ndarray, y_ms: np.ndarray, names: tuple[str, ...]) -> None:
        """Learn from rows of finite features and positive times."""

    # -- prediction ----------------------------------------------------------------------------------------
    def predict(self, X: Features) -> np.ndarray:
        self._check(X)
        if len(X) == 0:
            return np.zeros(0)
        return self._predict(X.values)

    @abstractmethod
    def _predict(self, X: np.ndarray) -> np.ndarray: ...

    def covers(self, X: Features) -> np.ndarray:
        """Per row: whether its size features lie within the fitted rows' range, widened by COVERAGE_FACTOR
        both ways (all True for a model without a recorded coverage)."""
        inside = np.ones(len(X), dtype=bool)
        for name, (lo, hi) in self.coverage_.items():
            if name in X.names:
                col = X.values[:, X.names.index(name)]
                inside &= (col <= hi * COVERAGE_FACTOR) & ((lo <= 0) | (col >= lo / COVERAGE_FACTOR))
        return inside

    def is_fitted(self) -> bool:
        return hasattr(self, "feature_names_")

    def _check(self, X: Features) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"this {type(self).__name__} ({self.kind!r}) is not fitted yet; call fit first")
        check_names(self.feature_names_, X.names, f"{type(self).__name__} ({self.kind!r})")

    # -- JSON ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        if not self.is_fitted():
            raise NotFittedError(f"cannot save an unfitted {type(self).__name__}")
        return {
            "kind": self.kind,
            "params": self.get_params(),
            "feature_names": list(self.feature_names_),
            "n_samples": self.n_samples_,
            **({"coverage": {n: list(r) for n, r in self.coverage_.items()}} if self.coverage_ else {}),
            "learned": self._learned_to_dict(),
        }

    @abstractmethod
    def _learned_to_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def _learned_from_dict(self, d: Mapping[str, Any]) -> None: ...

    def _check_loaded(self) -> None:
        """Checks of a model rebuilt by :meth:`from_dict` that need its feature names (raise ValueError); none
        by default."""
        return None

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> LayerModel:
        """Rebuild a fitted model from :meth:`to_dict` output; raises HardwareModelError naming what is wrong."""
        try:
            checks.obj(d, "a layer model")
            cls = LAYER_MODELS.get(str(d["kind"]))
            model = cls(**dict(d.get("params", {})))
            model._learned_from_dict(d["learned"])
            model.feature_names_ = tuple(str(n) for n in d["feature_names"])
            model.n_samples_ = int(d.get("n_samples", 0))
            model.coverage_ = _coverage(d.get("coverage", {}))
            model._check_loaded()
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            missing = isinstance(exc, KeyError) and not isinstance(exc, UnknownNameError) and exc.args
            why = f"missing key {exc.args[0]!r}" if missing else str(exc)
            kind = d.get("kind", "?") if isinstance(d, Mapping) else "?"
            raise HardwareModelError(f"malformed layer model {kind!r}: {why}") from exc
        return model

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


LAYER_MODELS: Registry[type[LayerModel]] = Registry("layer model kind")


COVERAGE_FEATURES = ("flops", "bytes")  # the sizes a layer model's data spans (see LayerModel.covers)
COVERAGE_FACTOR = 2.0  # how far beyond its data's range a model is still trusted, as a factor either way


def _coverage(d: Any) -> dict[str, tuple[float, float]]:
    checks.obj(d, "a layer model's coverage")
    out = {}
    for name, pair in d.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)):
            raise ValueError(f"coverage of {name!r} must be [smallest, largest], not {pair!r}")
        lo, hi = (float(v) for v in pair)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise ValueError(f"coverage of {name!r} must be finite with smallest <= largest, not {pair!r}")
        out[str(name)] = (lo, hi)
    return out
