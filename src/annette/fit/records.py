"""The records a fit uses, and the seeded hold-out split every fit that scores on held-out records shares."""

from __future__ import annotations

import fnmatch
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from annette.errors import HardwareModelError
from annette.records import BenchRecord, Target

LAYER_RECORD_KINDS = ("micro", "multi")
CACHE_KIND = "cache"  # cache-pressure records (annette.bench.context_blocks): for fit_cache, not layer samples


def usable(
    records: Iterable[BenchRecord], exclude_flags: Sequence[str], target_key: str | None
) -> tuple[list[BenchRecord], Counter[str], Target]:
    """The ``ok`` records with a graph and a valid measurement, of one target (``target_key``: a key or a pattern
    that pools several, e.g. every batch; None: the only one), without an excluded stability flag; the counts of
    those skipped, by reason; and the target (batch 0 where the pooled targets differ in batch)."""
    skipped: Counter[str] = Counter()
    kept: list[BenchRecord] = []
    for r in records:
        if r.status != "ok":
            skipped["failed"] += 1
        elif r.graph is None:
            skipped["no graph"] += 1
        elif r.measurement is None or not math.isfinite(r.measurement.label_ms) or r.measurement.label_ms <= 0:
            skipped["no valid measurement"] += 1
        elif any(f in exclude_flags for f in r.measurement.flags):
            skipped["excluded flag"] += 1
        else:
            kept.append(r)
    keys = Counter(r.target.key for r in kept)
    if not keys:
        raise HardwareModelError(f"no usable benchmark record (skipped: {dict(skipped) or 'none given'})")
    if target_key is None:
        if len(keys) > 1:
            raise HardwareModelError(
                f"records of {len(keys)} targets: {dict(keys)}; choose one with target_key (a key, or a pattern "
                "such as 'external/cuda:0/fp32/b*/t1' that pools batches)"
            )
        target_key = next(iter(keys))
    matched = sorted(k for k in keys if fnmatch.fnmatchcase(k, target_key))
    if not matched:
        raise HardwareModelError(f"no usable record of target {target_key!r}; targets: {dict(keys)}")
    other = sum(n for k, n in keys.items() if k not in matched)
    if other:
        skipped["other target"] += other
    kept = [r for r in kept if r.target.key in matched]
    target = kept[0].target
    if len(matched) > 1:
        # Pooled targets (e.g. every batch size): batch 0 says so, and the pooled values are kept.
        batches = sorted({r.target.batch for r in kept})
        target = replace(target, batch=0 if len(batches) > 1 else target.batch,
                         extra={**target.extra, "pooled_targets": ",".join(matched)})
    return kept, skipped, target


def layer_records(records: Sequence[BenchRecord], use_networks: bool) -> list[BenchRecord]:
    """The records layer models learn from: micro and multi-layer ones, and network records if ``use_networks``
    (else those are for evaluation only)."""
    kinds = (*LAYER_RECORD_KINDS, "network") if use_networks else LAYER_RECORD_KINDS
    out = [r for r in records if r.kind in kinds]
    if not out:
        raise HardwareModelError(f"no usable {'/'.join(kinds)} record among {len(records)} usable records")
    return out


def held_out(
    records: Sequence[BenchRecord], fraction: float, seed: int, *, min_family: int = 1, by_name: bool = False
) -> list[int]:
    """Indices (ascending) of a seeded share of the records of every family: round(``fraction`` · n) of a family's
    n records, none of a family with fewer than ``min_family``. One generator (``seed``) draws a permutation per
    family, families in order of first appearance, or sorted by name (``by_name``)."""
    rng = np.random.default_rng(seed)
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_family[r.family].append(i)
    held: set[int] = set()
    for family in sorted(by_family) if by_name else by_family:
        idx = by_family[family]
        k = int(round(fraction * len(idx))) if len(idx) >= min_family else 0
        held.update(int(x) for x in rng.permutation(idx)[:k])
    return sorted(held)
