"""Roofline layer model: t = max(flops / peak, bytes / bandwidth) + overhead.

Peak and bandwidth are *effective* roofs of one executed-layer type, fitted to its measurements by robust
least squares on log time (so a 10 % error counts the same on a 5 µs and on a 5 ms layer). A type whose
samples have no flops (data movement, inserted reorders) has no compute roof; one with neither flops nor
bytes is a pure per-call time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from annette import checks
from annette.layers.base import LAYER_MODELS, LayerModel
from annette.layers.features import Features

_EPS_MS = 1e-9
# Roofs are fitted in log space within these bounds (per second): a roof at a bound plays no real part.
LOG_ROOF_BOUNDS = (float(np.log(1e3)), float(np.log(1e21)))
MIN_ROOF_PER_S = 1e-3
MAX_OVERHEAD_MS = 1e6  # a fixed time per call above 1000 s is no measurement (bundles are checked against it)


@dataclass(frozen=True)
class Roofs:
    """Fitted roofs (None: that roof plays no part) and the fixed time per call."""

    peak_flops_per_s: float | None
    bandwidth_bytes_per_s: float | None
    overhead_ms: float

    def terms_ms(
        self, flops: np.ndarray, nbytes: np.ndarray, eff: np.ndarray | float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(compute time, memory time) in ms."""
        zeros = np.zeros(np.shape(flops))
        compute = flops / (self.peak_flops_per_s * eff) * 1e3 if self.peak_flops_per_s else zeros
        memory = nbytes / self.bandwidth_bytes_per_s * 1e3 if self.bandwidth_bytes_per_s else zeros
        return compute, memory

    def time_ms(self, flops: np.ndarray, nbytes: np.ndarray, eff: np.ndarray | float = 1.0) -> np.ndarray:
        compute, memory = self.terms_ms(flops, nbytes, eff)
        return np.maximum(compute, memory) + self.overhead_ms  # type: ignore[no-any-return]

    def bound(self, flops: np.ndarray, nbytes: np.ndarray, eff: np.ndarray | float = 1.0) -> np.ndarray:
        """Per row: ``compute``, ``memory`` or ``overhead`` (the largest term)."""
        compute, memory = self.terms_ms(flops, nbytes, eff)
        kind = np.where(compute >= memory, "compute", "memory")
        return np.where(np.maximum(compute, memory) < self.overhead_ms, "overhead", kind)  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_flops_per_s": self.peak_flops_per_s,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "overhead_ms": self.overhead_ms,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Roofs:
        return Roofs(  # a roof below MIN_ROOF_PER_S would make finite layers take infinite time
            peak_flops_per_s=checks.optional_number(
                d["peak_flops_per_s"], "roofs.peak_flops_per_s", positive=True, low=MIN_ROOF_PER_S
            ),
            bandwidth_bytes_per_s=checks.optional_number(
                d["bandwidth_bytes_per_s"], "roofs.bandwidth_bytes_per_s", positive=True, low=MIN_ROOF_PER_S
            ),
            overhead_ms=checks.number(d["overhead_ms"], "roofs.overhead_ms", nonnegative=True, high=MAX_OVERHEAD_MS),
        )


def robust_log_fit(
    residual_model: Callable[[np.ndarray], np.ndarray],
    y_ms: np.ndarray,
    starts: Sequence[np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Minimise a soft-L1 loss of log(model(θ)) − log(y) from several starts; returns (θ, cost)."""
    from scipy.optimize import least_squares

    log_y = np.log(y_ms)
    best: tuple[np.ndarray, float] | None = None
    for x0 in starts:
        x0 = np.clip(x0, lower + 1e-12, upper - 1e-12)
        sol = least_squares(
            lambda th: np.log(residual_model(th) + _EPS_MS) - log_y,
            x0,
            bounds=(lower, upper),
            loss="soft_l1",
            f_scale=0.1,
            x_scale="jac",
        )
        if best is None or sol.cost < best[1]:
            best = (sol.x, float(sol.cost))
    assert best is not None
    return best


def fit_roofs(
    flops: np.ndarray, nbytes: np.ndarray, y_ms: np.ndarray, *, overhead: bool, eff: np.ndarray | float = 1.0
) -> tuple[Roofs, float]:
    """Fit the roofs (and overhead) of t = max(flops/(P·eff), bytes/B) + o; returns (roofs, loss)."""
    use_p = bool(np.any(flops > 0))
    use_b = bool(np.any(nbytes > 0))
    if not (use_p or use_b):
        return Roofs(None, None, float(np.exp(np.mean(np.log(y_ms))))), 0.0
    eff_arr = np.broadcast_to(np.asarray(eff, dtype=np.float64), y_ms.shape)

    def unpack(th: np.ndarray) -> Roofs:
        i = 0
        p = b = None
        if use_p:
            p, i = float(np.exp(th[i])), i + 1
        if use_b:
            b, i = float(np.exp(th[i])), i + 1
        return Roofs(p, b, float(th[i]) if overhead else 0.0)

    def model(th: np.ndarray) -> np.ndarray:
        return unpack(th).time_ms(flops, nbytes, eff_arr)

    x0: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    if use_p:
        sel = flops > 0
        x0.append(float(np.log(np.quantile(flops[sel] * eff_arr[sel] / y_ms[sel] * 1e3, 0.9))))
        lo.append(LOG_ROOF_BOUNDS[0])
        hi.append(LOG_ROOF_BOUNDS[1])
    if use_b:
        sel = nbytes > 0
        x0.append(float(np.log(np.quantile(nbytes[sel] / y_ms[sel] * 1e3, 0.9))))
        lo.append(LOG_ROOF_BOUNDS[0])
        hi.append(LOG_ROOF_BOUNDS[1])
    starts = [np.array(x0)]
    if overhead:
        y_min = float(np.min(y_ms))
        starts = [np.array([*x0, 0.5 * y_min]), np.array([*x0, 0.05 * y_min]), np.array([*x0, 0.9 * y_min])]
        lo.append(0.0)
        hi.append(float(np.max(y_ms)))
    theta, cost = robust_log_fit(model, y_ms, starts, np.array(lo), np.array(hi))
    return unpack(theta), cost


class RooflineModel(LayerModel):
    """t = max(flops / peak, bytes / bandwidth) + overhead, per executed-layer type.

    ``work`` names the feature the compute roof divides (default ``flops``; ``macs`` counts only the
    multiply-accumulates, so that activations fused into a convolution add no work) and ``traffic`` the
    features summed as memory traffic (default ``bytes``; e.g. ``input_bytes`` + ``output_bytes`` for a
    target whose model ignores constant operands).
    """

    kind = "roofline"
    roofs_: Roofs

    def __init__(self, overhead: bool = True, work: str = "flops", traffic: Sequence[str] = ("bytes",)) -> None:
        self.overhead = overhead
        self.work = work
        self.traffic = tuple(traffic)


    def _roof_columns(self, X: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(work, traffic bytes) per row."""
        cols = list(names)
        unknown = [c for c in (self.work, *self.traffic) if c not in cols]
        if unknown or not self.traffic:
            raise ValueError(f"{type(self).__name__}: roof columns {unknown or 'traffic ()'} are not among {cols}")
        return X[:, cols.index(self.work)], X[:, [cols.index(c) for c in self.traffic]].sum(axis=1)

    def _fit(self, X: np.ndarray, y_ms: np.ndarray, names: tuple[str, ...]) -> None:
        flops, nbytes = self._roof_columns(X, names)
        self.roofs_, _ = fit_roofs(flops, nbytes, y_ms, overhead=self.overhead)

    def _columns(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._roof_columns(X, self.feature_names_)

    def _efficiency(self, X: np.ndarray) -> np.ndarray | float:
        """Scale of the compute roof per row (1 for the plain roofline)."""
        return 1.0

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.roofs_.time_ms(*self._columns(X), self._efficiency(X))

    def bound(self, X: Features) -> np.ndarray:
        """Per row: ``compute``, ``memory`` or ``overhead`` (the largest term of the prediction)."""
        self._check(X)
        return self.roofs_.bound(*self._columns(X.values), self._efficiency(X.values))

    def _learned_to_dict(self) -> dict[str, Any]:
        return {"roofs": self.roofs_.to_dict()}

    def _learned_from_dict(self, d: Mapping[str, Any]) -> None:
        self.roofs_ = Roofs.from_dict(checks.obj(d["roofs"], "roofs"))

    def _check_loaded(self) -> None:
        unknown = [c for c in (self.work, *self.traffic) if c not in self.feature_names_]
        if unknown or not self.traffic:
            raise ValueError(f"roof columns {unknown or 'traffic ()'} are not among its features {list(self.feature_names_)}")


LAYER_MODELS.register("roofline", RooflineModel)
