"""Metrics against hand-computed values (ties included) and scipy where it is installed."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from annette.evaluate import metrics as M


def test_error_metrics_closed_form() -> None:
    m = [1.0, 2.0, 4.0, 5.0]
    e = [1.1, 1.8, 4.0, 6.0]  # relative errors +10 %, -10 %, 0, +20 %
    assert M.mape(m, e) == pytest.approx(10.0)
    assert M.rmspe(m, e) == pytest.approx(math.sqrt(0.015) * 100)
    assert M.accuracy_within(m, e, 0.05) == pytest.approx(25.0)
    assert M.accuracy_within(m, e, 0.10) == pytest.approx(75.0)  # boundary values count as within
    res = M.compute_metrics(m, e)
    assert res.n == 4
    assert res.max_ape_pct == pytest.approx(20.0)
    assert res.mean_signed_pct == pytest.approx(5.0)
    assert res.spearman == pytest.approx(1.0) and res.kendall == pytest.approx(1.0)
    np.testing.assert_allclose(M.relative_errors(m, e), [0.1, -0.1, 0.0, 0.2], atol=1e-12)


def test_rank_correlations_closed_form() -> None:
    assert M.spearman([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert M.kendall([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    # One swapped pair among three: rho = 1 - 6*2/(3*8) = 0.5, tau = (2 - 1)/3.
    assert M.spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert M.kendall([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def test_rank_correlations_with_ties() -> None:
    m, e = [1, 2, 2, 3], [1, 2, 3, 4]
    np.testing.assert_allclose(M.rankdata(m), [1, 2.5, 2.5, 4])
    np.testing.assert_allclose(M.rankdata([3, 1, 3, 3, 2]), [4, 1, 4, 4, 2])
    # Spearman = Pearson of ranks: 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10).
    assert M.spearman(m, e) == pytest.approx(3 / math.sqrt(10))
    # tau-b: 5 concordant, 0 discordant, 1 of 6 pairs tied in m: 5 / sqrt(5 * 6).
    assert M.kendall(m, e) == pytest.approx(5 / math.sqrt(30))
    # Ties on both sides: pairs (0,1) and (2,3) tied in m, (0,2) and (1,3) tied in e, (0,3) concordant,
    # (1,2) discordant -> (1 - 1) / sqrt(4 * 4) = 0.
    assert M.kendall([1, 1, 2, 2], [1, 2, 1, 2]) == pytest.approx(0.0)


def test_undefined_correlations_are_nan_and_serialise_as_null() -> None:
    assert math.isnan(M.spearman([1.0], [2.0]))
    assert math.isnan(M.spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(M.kendall([1, 2, 3], [5, 5, 5]))
    d = M.compute_metrics([1.0, 2.0], [3.0, 3.0]).to_dict()
    assert d["spearman"] is None and d["kendall"] is None and d["mape_pct"] == pytest.approx(125.0)


@pytest.mark.parametrize(
    ("m", "e", "match"),
    [
        ([1.0, 2.0], [1.0], "differ in length"),
        ([], [], "at least one"),
        ([1.0, 0.0], [1.0, 1.0], "> 0"),
        ([1.0, float("nan")], [1.0, 1.0], "finite"),
        ([[1.0]], [[1.0]], "1-D"),
    ],
)
def test_bad_inputs_raise(m: list[float], e: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        M.compute_metrics(m, e)


def test_noise_floor_is_the_metrics_between_rounds() -> None:
    r1 = [1.0, 2.0, 3.0, 4.0]
    r2 = [1.02, 2.0, 3.3, 3.9]
    nf = M.noise_floor_rounds([r1, r2, [9.0, 9.0, 9.0, 9.0]])
    assert nf == M.compute_metrics(r1, r2)
    assert nf.mape_pct == pytest.approx((2 + 0 + 10 + 2.5) / 4)
    with pytest.raises(ValueError, match="at least 2"):
        M.noise_floor_rounds([r1])


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="scipy is not installed")
def test_agrees_with_scipy_on_random_data_with_ties() -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    m = rng.integers(1, 15, size=60).astype(float)  # many ties
    e = m * rng.uniform(0.8, 1.2, size=60)
    e[::7] = e[0]
    assert M.spearman(m, e) == pytest.approx(stats.spearmanr(m, e).statistic, abs=1e-12)
    assert M.kendall(m, e) == pytest.approx(stats.kendalltau(m, e).statistic, abs=1e-12)
