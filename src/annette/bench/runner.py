"""The measurement protocol, once for every backend (after pyperf and hyperfine).

1. Setup is never timed: the caller prepares the model (session creation, compilation) before ``measure``.
2. Warm-up: ``warmup_runs`` single calls, timed but discarded; the first is kept to flag a slow first run.
3. Inner loop: one sample is the mean over ``inner_loops`` back-to-back calls; the count is calibrated
   (grown until a timed batch lasts at least ``min_sample_ms``), so timer resolution and loop overhead
   are negligible.
4. Adaptive stop: at least ``min_samples`` samples; then stop as soon as the samples are stable
   (IQR/median < ``stable_iqr``) or ``min_time_s`` of sampling has passed; never sample longer than
   ``max_time_s`` or more than ``max_samples`` samples (the hard cap, flagged ``capped``).
5. All raw samples are kept, with stability flags: ``high_cv`` (CV >= 10 %), ``high_iqr``
   (IQR/median >= 10 %), ``outliers`` (modified z-score > 14.8), ``slow_first_run`` (the first warm-up
   call took over twice the median), ``too_short`` (the median sample lasted under half ``min_sample_ms``:
   the inner loop hit its cap), ``capped``.

The label is ``annette.stats.LABEL_STATISTIC`` (the minimum; ``annette.stats`` says why). Median and min
are stored beside the label on every record.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from annette.errors import BackendError
from annette.records import Measurement
from annette.stats import iqr_ratio, label_of, modified_z_outliers

UNSTABLE = 0.10


@dataclass(frozen=True)
class TimingProtocol:
    warmup_runs: int = 3
    min_sample_ms: float = 1.0
    min_samples: int = 10
    stable_iqr: float = 0.10
    min_time_s: float = 0.25
    max_time_s: float = 3.0
    max_samples: int = 1000

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


DEFAULT_PROTOCOL = TimingProtocol()

# Whole networks (ground truth) sample for at least a second whatever the dispersion: a 10-sample stop is
# enough for a 1 ms micro-kernel, whose minimum finds a quiet moment easily, but on a shared machine a
# 25-400 ms network needs more tries for its minimum to find one (seen here at load 3-4 on 2 vCPUs:
# ResNet-18's 10-sample minimum ranged 24.8-73 ms between rounds).
NETWORK_PROTOCOL = TimingProtocol(min_samples=15, stable_iqr=0.0, min_time_s=1.0, max_time_s=6.0)


# What each stability flag of a measurement means (reports explain every flag they show).
FLAG_MEANINGS: dict[str, str] = {
    "high_cv": "the samples' coefficient of variation is 10 % or more",
    "high_iqr": "the samples' interquartile range is 10 % of the median or more",
    "outliers": "some samples lie far from the others (modified z-score above 14.8): interference",
    "slow_first_run": "the first warm-up call took over twice the median (discarded; lazy initialisation)",
    "too_short": "a sample lasted under half the minimum sample time: the inner loop hit its cap",
    "capped": "sampling stopped at the time or sample cap before the samples were stable",
}


def stability_flags(samples: Sequence[float], warmup_ms: Sequence[float], inner_loops: int, p: TimingProtocol) -> list[str]:
    flags = []
    med = statistics.median(samples)
    if len(samples) > 1 and statistics.pstdev(samples) / med >= UNSTABLE:
        flags.append("high_cv")
    if iqr_ratio(samples) >= UNSTABLE:
        flags.append("high_iqr")
    if modified_z_outliers(samples):
        flags.append("outliers")
    if warmup_ms and warmup_ms[0] > 2.0 * med:
        flags.append("slow_first_run")
    if med * inner_loops < 0.5 * p.min_sample_ms:
        flags.append("too_short")
    return flags


def time_calls(prepared: Any, n: int) -> float:
    """Milliseconds for ``n`` back-to-back ``run()`` calls (the device's clock where it has one)."""
    device_timer = getattr(prepared, "time_calls", None)
    if device_timer is not None:
        return float(device_timer(n))
    run = prepared.run
    t0 = time.perf_counter()
    for _ in range(n):
        run()
    return (time.perf_counter() - t0) * 1000.0


MAX_INNER_LOOPS = 100_000


def calibrate_inner_loops(prepared: Any, per_call_ms: float, min_sample_ms: float) -> int:
    """The smallest call count whose batch lasts >= ``min_sample_ms`` (grown until a timed batch does).

    Warm-up calls are often slower than steady state, so the estimate from them is checked and raised.
    """
    inner = max(1, min(MAX_INNER_LOOPS, math.ceil(min_sample_ms / per_call_ms))) if per_call_ms > 0 else 1
    while inner < MAX_INNER_LOOPS:
        elapsed = time_calls(prepared, inner)
        if elapsed >= min_sample_ms:
            break
        inner = min(MAX_INNER_LOOPS, max(inner + 1, math.ceil(inner * 1.2 * min_sample_ms / max(elapsed, 1e-6))))
    return inner


def measure(prepared: Any, protocol: TimingProtocol = DEFAULT_PROTOCOL) -> Measurement:
    """Time ``prepared.run()`` under the protocol; raises BackendError when a run fails."""
    p = protocol
    try:
        warmup = [time_calls(prepared, 1) for _ in range(max(1, p.warmup_runs))]
        inner = calibrate_inner_loops(prepared, min(warmup), p.min_sample_ms)
        samples: list[float] = []
        capped = False
        start = time.perf_counter()
        while True:
            samples.append(time_calls(prepared, inner) / inner)
            elapsed = time.perf_counter() - start
            if len(samples) >= p.min_samples and (elapsed >= p.min_time_s or iqr_ratio(samples) < p.stable_iqr):
                break
            if elapsed >= p.max_time_s or len(samples) >= p.max_samples:
                capped = True
                break
    except BackendError:
        raise
    except Exception as exc:  # a runtime's own error class: report it as a backend failure
        raise BackendError(f"run failed: {type(exc).__name__}: {exc}") from exc
    flags = stability_flags(samples, warmup, inner, p)
    if capped:
        flags.append("capped")
    return Measurement(
        samples_ms=tuple(samples),
        inner_loops=inner,
        label_ms=label_of(samples),
        median_ms=float(statistics.median(samples)),
        min_ms=float(min(samples)),
        warmup_ms=tuple(warmup),
        flags=tuple(flags),
    )
