"""Training samples: one per executed layer a record shows (profiled kernel time, or the measured time of an
unprofiled single-layer record less the overheads), with its features, type and hold-out side."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annette.hardware import Overhead
from annette.layers.features import Features, executed_type, extract
from annette.mapping.apply import apply
from annette.mapping.learn import ProfiledRun, read_profile
from annette.mapping.mapped import ExecutedLayer
from annette.mapping.rules import MappingRules
from annette.records import BenchRecord


@dataclass(frozen=True, eq=False)
class Samples:
    layers: list[ExecutedLayer]
    times: np.ndarray
    record: np.ndarray  # index of the record each sample comes from


def read_profiles(records: Sequence[BenchRecord]) -> list[ProfiledRun | None]:
    """Each record's profile resolved to its graph (:func:`annette.mapping.learn.read_profile`), read once for
    both rule learning and sample collection."""
    return [read_profile(r) for r in records]


def collect_samples(
    records: Sequence[BenchRecord],
    rules: MappingRules,
    overhead: Overhead,
    profiles: Sequence[ProfiledRun | None] | None = None,
) -> Samples:
    """Training samples (executed layer, kernel ms, record index) from records: profiled kernel times as the
    profiler reports them (summed over the nodes of a layer split into several kernels; estimates take the
    profiler's own per-node cost, ``overhead.profiler_node_ms``, off each layer's prediction, which keeps the
    layer models' targets as measured), or, for an unprofiled single-layer record, the measured time less the
    per-run and per-node overheads. ``profiles``: :func:`read_profiles` of ``records``, where already read."""
    positions = {r.op_type: r.position for r in rules.insertions}
    if rules.layouts is not None:
        positions.update({rules.layouts.to_blocked: "before", rules.layouts.to_plain: "after"})
    runs = read_profiles(records) if profiles is None else profiles
    layers: list[ExecutedLayer] = []
    times: list[float] = []
    owner: list[int] = []
    for i, (rec, run) in enumerate(zip(records, runs, strict=True)):
        if run is not None:
            for ex, t, _ in run.executed(positions):
                layers.append(ex)
                times.append(t)
                owner.append(i)
            continue
        assert rec.graph is not None and rec.measurement is not None
        executed = apply(rec.graph, rules).executed
        if len(executed) == 1:
            layers.append(executed[0])  # the kernel as a profiler would report it (see estimate_many)
            times.append(rec.measurement.label_ms - overhead.per_run_ms - overhead.per_node_ms
                         + overhead.profiler_node_ms)
            owner.append(i)
    return Samples(layers, np.array(times, dtype=np.float64), np.array(owner, dtype=np.intp))


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """Samples ready to fit: features, kernel ms, executed-layer type, usable (features and a positive time),
    held out (from a held-out record), and the seed of the models' own randomness."""

    X: Features
    times: np.ndarray
    types: np.ndarray  # object array of type names
    valid: np.ndarray
    is_test: np.ndarray
    seed: int

    @property
    def n_samples(self) -> dict[str, int]:
        """Usable samples per type, by type name."""
        return dict(sorted(Counter(self.types[self.valid].tolist()).items()))

    def rows(self, where: np.ndarray) -> np.ndarray:
        """Indices of the usable samples where ``where`` holds."""
        return np.flatnonzero(self.valid & where)


def training_set(samples: Samples, held: Sequence[int], seed: int) -> TrainingSet:
    """The samples' features and types; those of the records ``held`` (indices) are the test side."""
    X = extract(samples.layers)
    types = np.array([executed_type(ex) for ex in samples.layers], dtype=object)
    valid = np.array([i not in X.errors for i in range(len(X))]) & np.isfinite(samples.times) & (samples.times > 0)
    return TrainingSet(X, samples.times, types, valid, np.isin(samples.record, list(held)), seed)
