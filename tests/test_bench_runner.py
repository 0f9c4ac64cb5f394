"""The measurement protocol: statistics, stability flags, inner-loop calibration, adaptive stop, failures."""

from __future__ import annotations

import time

import numpy as np
import pytest

from annette.bench.runner import TimingProtocol, measure, stability_flags
from annette.errors import BackendError
from annette.stats import LABEL_STATISTIC, iqr_ratio, label_of, modified_z_outliers, percentile

FAST = TimingProtocol(warmup_runs=2, min_sample_ms=0.5, min_samples=10, min_time_s=0.05, max_time_s=1.0)


class Spin:
    """A Prepared whose run() busy-waits ``ms`` (the first call ``first_ms``)."""

    def __init__(self, ms: float, first_ms: float | None = None, jitter: float = 0.0) -> None:
        self.ms, self.first_ms, self.jitter = ms, first_ms, jitter
        self.calls = 0
        self.rng = np.random.default_rng(0)

    def run(self) -> None:
        ms = self.first_ms if self.calls == 0 and self.first_ms is not None else self.ms
        if self.jitter:
            ms *= 1.0 + self.jitter * float(self.rng.random())
        self.calls += 1
        end = time.perf_counter() + ms / 1000.0
        while time.perf_counter() < end:
            pass


def test_statistics_closed_form() -> None:
    xs = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert label_of(xs, "min") == 1.0
    assert label_of(xs, "median") == 3.0
    assert label_of(xs, "p10") == pytest.approx(1.4)  # (n-1)*0.1 = 0.4 -> 1 + 0.4*(2-1)
    assert LABEL_STATISTIC == "min" and label_of(xs) == 1.0
    rng = np.random.default_rng(1)
    ys = list(rng.random(37))
    for q in (0, 10, 25, 50, 90, 100):
        assert percentile(ys, q) == pytest.approx(float(np.percentile(ys, q)))
    assert iqr_ratio([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx((4.0 - 2.0) / 3.0)
    with pytest.raises(ValueError):
        label_of([])


def test_modified_z_outliers() -> None:
    base = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99]
    assert modified_z_outliers(base) == 0
    # MAD = 0.01: 0.6745 * (x - 1) / 0.01 > 14.8  <=>  x > 1.2194
    assert modified_z_outliers([*base, 1.2]) == 0
    # with two more values median 1.005 and MAD 0.015: the bound is 1.005 + 14.8 * 0.015 / 0.6745 = 1.334
    assert modified_z_outliers([*base, 1.3, 3.0]) == 1
    assert modified_z_outliers([*base, 1.4, 3.0]) == 2
    assert modified_z_outliers([1.0] * 5) == 0  # MAD 0: no outlier can be told


def test_stability_flags() -> None:
    p = TimingProtocol(min_sample_ms=1.0)
    steady = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.0, 1.01, 0.99]
    assert stability_flags(steady, [1.1], 1, p) == []
    noisy = [1.0, 1.5, 0.8, 1.3, 0.7, 1.6, 1.0, 0.9, 1.4, 1.2]
    assert {"high_cv", "high_iqr"} <= set(stability_flags(noisy, [1.0], 1, p))
    assert "outliers" in stability_flags([*steady, 5.0], [1.0], 1, p)
    assert "slow_first_run" in stability_flags(steady, [2.5, 1.0], 1, p)
    assert "too_short" in stability_flags([0.1] * 10, [0.1], 2, p)  # 0.2 ms per sample < 0.5 ms


def test_measure_calibrates_inner_loop_and_labels_the_minimum() -> None:
    m = measure(Spin(0.05), FAST)
    assert m.inner_loops >= 8  # 0.05 ms calls, samples of >= 0.5 ms
    assert min(m.samples_ms) * m.inner_loops >= 0.45
    assert len(m.samples_ms) >= FAST.min_samples
    assert m.label_ms == min(m.samples_ms) == m.min_ms
    assert m.median_ms == pytest.approx(float(np.median(m.samples_ms)))
    assert 0.05 <= m.label_ms < 0.08  # busy-wait: never shorter, a little loop overhead
    assert len(m.warmup_ms) == FAST.warmup_runs and "too_short" not in m.flags


def test_measure_flags_slow_first_run() -> None:
    m = measure(Spin(0.3, first_ms=3.0), FAST)
    assert "slow_first_run" in m.flags
    assert m.warmup_ms[0] >= 3.0 and m.label_ms < 0.5


def test_measure_stops_at_the_hard_cap() -> None:
    p = TimingProtocol(warmup_runs=1, min_sample_ms=1.0, min_samples=1000, min_time_s=10.0, max_time_s=0.3)
    t0 = time.perf_counter()
    m = measure(Spin(0.1, jitter=0.5), p)
    assert time.perf_counter() - t0 < 5.0  # far below min_time_s = 10 s
    assert "capped" in m.flags and len(m.samples_ms) < 400  # samples of >= 1 ms for 0.3 s


def test_measure_wraps_runtime_errors() -> None:
    class Broken:
        def run(self) -> None:
            raise RuntimeError("kernel exploded")

    with pytest.raises(BackendError, match="kernel exploded"):
        measure(Broken(), FAST)


def test_device_timer_is_used_when_present() -> None:
    class DeviceTimed(Spin):
        def time_calls(self, n: int) -> float:
            return 2.0 * n  # a device clock that says 2 ms per call

    m = measure(DeviceTimed(0.0), FAST)
    assert m.label_ms == pytest.approx(2.0) and m.inner_loops == 1
