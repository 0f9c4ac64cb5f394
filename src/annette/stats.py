"""Sample statistics of timings: percentiles, the label statistic, dispersion and outliers (one place for all).

The label (``LABEL_STATISTIC``): the **minimum** sample. Interference on a shared machine only ever adds
time, and the minimum repeats best between independent sessions. Measured with
``benchmarks/label_repeatability.py`` (2026-11-27, this 2-vCPU shared VM, Intel Xeon, ONNX Runtime 1.32, 1
thread; 12 models: resnet18, mobilenet_v2, squeezenet1_1, shufflenet_v2 and 8 blocks from 0.025 to 1.4 ms;
two independent back-to-back rounds, a fresh session per measurement), relative difference between rounds:

    statistic   mean    worst
    min         0.94 %  4.9 %
    p10         1.30 %  4.6 %
    median      2.00 %  5.4 %

The minimum repeats about twice as well as the median on average (the worst cases are alike, ~5 %), in
line with DESIGN.md's earlier 2.9 % vs 7.9 % on 16 networks.
The protocol (``annette.bench.runner``) stores median and min beside the label on every record; profiled
kernel times are labelled with the same statistic (``annette.mapping.observed``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from annette.errors import InsufficientDataError

LABEL_STATISTIC = "min"
MODIFIED_Z_OUTLIER = 14.8


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    xs = sorted(samples)
    if not xs:
        raise InsufficientDataError("percentile of no samples")
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


STATISTICS: dict[str, Callable[[list[float]], float]] = {
    "min": min,
    "p10": lambda xs: percentile(xs, 10.0),
    "median": statistics.median,
}


def label_of(samples: Sequence[float], statistic: str = LABEL_STATISTIC) -> float:
    """The label statistic of ``samples`` (ms)."""
    if not samples:
        raise InsufficientDataError("label of no samples")
    return float(STATISTICS[statistic](list(samples)))


def iqr_ratio(samples: Sequence[float]) -> float:
    """The interquartile range over the median (infinite for a median of 0): the dispersion of ``samples``."""
    med = statistics.median(samples)
    return (percentile(samples, 75.0) - percentile(samples, 25.0)) / med if med > 0 else math.inf


def modified_z_outliers(samples: Sequence[float], threshold: float = MODIFIED_Z_OUTLIER) -> int:
    """Number of samples whose modified z-score 0.6745 (x - median) / MAD exceeds ``threshold``."""
    med = statistics.median(samples)
    mad = statistics.median(abs(x - med) for x in samples)
    if mad == 0:
        return 0
    return sum(1 for x in samples if abs(0.6745 * (x - med) / mad) > threshold)
