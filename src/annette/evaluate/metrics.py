"""Accuracy and fidelity metrics of estimated against measured latencies (numpy only).

For networks with measured m_i > 0 and estimated e_i (relative error r_i = (e_i - m_i) / m_i):

- MAPE = mean |r_i| (ANNETTE), RMSPE = sqrt(mean r_i^2), both in percent;
- ±5 % / ±10 % accuracy = share of networks with |r_i| <= 0.05 / 0.10, in percent (nn-Meter, LitePred);
- Spearman's rho (Pearson correlation of average ranks, so ties are handled) and Kendall's tau-b
  (tie-corrected) between e and m: how well the estimate ranks the networks (fidelity; ANNETTE, HELP).

The noise floor applies the same metrics to two independent measurement rounds, one standing in for
the estimate: the repeatability no estimator can be expected to beat by much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from annette.errors import InsufficientDataError, InvalidOptionError

# |r| <= tol is tested with this slack so that e.g. e = 1.1, m = 1.0 counts as within 10 %.
_TOL_SLACK = 1e-9


def _pair(measured: ArrayLike, estimated: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    m = np.asarray(measured, dtype=np.float64)
    e = np.asarray(estimated, dtype=np.float64)
    if m.ndim != 1 or e.ndim != 1:
        raise InvalidOptionError(f"expected 1-D arrays, got shapes {m.shape} (measured) and {e.shape} (estimated)")
    if m.shape != e.shape:
        raise InvalidOptionError(f"measured and estimated differ in length: {m.size} vs {e.size}")
    if m.size == 0:
        raise InsufficientDataError("expected at least one (measured, estimated) pair, got none")
    if not (np.isfinite(m).all() and np.isfinite(e).all()):
        raise InvalidOptionError("measured and estimated values must be finite (got NaN or inf)")
    if (m <= 0).any():
        bad = int(np.flatnonzero(m <= 0)[0])
        raise InvalidOptionError(
            f"measured values must be > 0 (relative errors divide by them); got {m[bad]} at {bad}"
        )
    return m, e


def relative_errors(measured: ArrayLike, estimated: ArrayLike) -> NDArray[np.float64]:
    """(e - m) / m, signed (positive = overestimate)."""
    m, e = _pair(measured, estimated)
    return (e - m) / m


def mape(measured: ArrayLike, estimated: ArrayLike) -> float:
    """Mean absolute percentage error, in percent."""
    return float(np.mean(np.abs(relative_errors(measured, estimated))) * 100.0)


def rmspe(measured: ArrayLike, estimated: ArrayLike) -> float:
    """Root mean squared percentage error, in percent."""
    return float(np.sqrt(np.mean(relative_errors(measured, estimated) ** 2)) * 100.0)


def accuracy_within(measured: ArrayLike, estimated: ArrayLike, tol: float) -> float:
    """Share of pairs with |e - m| / m <= ``tol`` (e.g. 0.10), in percent."""
    if tol < 0:
        raise InvalidOptionError(f"tolerance must be >= 0, got {tol}")
    r = np.abs(relative_errors(measured, estimated))
    return float(np.mean(r <= tol + _TOL_SLACK) * 100.0)


def rankdata(values: ArrayLike) -> NDArray[np.float64]:
    """Ranks 1..n, ties receiving the average of the ranks they span."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Boundaries of runs of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _pearson(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    if denom == 0.0:
        return math.nan  # a constant series has no ranking
    return float(np.dot(da, db) / denom)


def spearman(measured: ArrayLike, estimated: ArrayLike) -> float:
    """Spearman's rank correlation (ties by average rank); NaN for fewer than 2 pairs or a constant side."""
    m, e = _pair(measured, estimated)
    if m.size < 2:
        return math.nan
    return _pearson(rankdata(m), rankdata(e))


def kendall(measured: ArrayLike, estimated: ArrayLike) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_m) (n0 - ties_e)); NaN if undefined."""
    m, e = _pair(measured, estimated)
    n = m.size
    concordant_minus_discordant = 0
    untied_m = 0  # pairs not tied in m
    untied_e = 0
    for i in range(n - 1):
        sm = np.sign(m[i + 1 :] - m[i])
        se = np.sign(e[i + 1 :] - e[i])
        concordant_minus_discordant += int(np.sum(sm * se))
        untied_m += int(np.count_nonzero(sm))
        untied_e += int(np.count_nonzero(se))
    denom = math.sqrt(untied_m * untied_e)
    if denom == 0.0:
        return math.nan
    return concordant_minus_discordant / denom


@dataclass(frozen=True)
class Metrics:
    """All metrics of one set of (measured, estimated) pairs; errors in percent."""

    n: int
    mape_pct: float
    rmspe_pct: float
    max_ape_pct: float
    within5_pct: float
    within10_pct: float
    mean_signed_pct: float  # mean (e - m) / m: > 0 means the estimate is high on average
    spearman: float
    kendall: float

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready: NaN (undefined correlation) becomes None."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def compute_metrics(measured: ArrayLike, estimated: ArrayLike) -> Metrics:
    m, e = _pair(measured, estimated)
    r = (e - m) / m
    return Metrics(
        n=int(m.size),
        mape_pct=mape(m, e),
        rmspe_pct=rmspe(m, e),
        max_ape_pct=float(np.max(np.abs(r)) * 100.0),
        within5_pct=accuracy_within(m, e, 0.05),
        within10_pct=accuracy_within(m, e, 0.10),
        mean_signed_pct=float(np.mean(r) * 100.0),
        spearman=spearman(m, e),
        kendall=kendall(m, e),
    )


def noise_floor(round_a: ArrayLike, round_b: ArrayLike) -> Metrics:
    """The metrics between two independent measurement rounds of the same networks (a as 'measured')."""
    return compute_metrics(round_a, round_b)


def noise_floor_rounds(rounds: Sequence[ArrayLike]) -> Metrics:
    """Noise floor from per-round latencies (rounds[r][i] = network i in round r): round 1 vs round 2."""
    if len(rounds) < 2:
        raise InsufficientDataError(f"a noise floor needs at least 2 measurement rounds, got {len(rounds)}")
    return noise_floor(rounds[0], rounds[1])
