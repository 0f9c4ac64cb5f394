"""Layer models per executed-layer type and kind: fitted on the training side, scored on the held-out side, refitted
on all samples; then, per primary type, one model pooled over its fused variants where that predicts them better.

Types with fewer samples than a kind needs (:data:`MIN_SAMPLES`) lack that kind (estimates fall back to a
simpler one); types with fewer than the roofline's minimum have no model: their layers use their primary
member's type (``Conv[grouped]+Relu`` → ``Conv[grouped]``), else the generic model fitted on all samples
(``*``), and the estimate says so per layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from annette.fit.report import Quality, scores
from annette.fit.samples import TrainingSet
from annette.hardware import KIND_FALLBACKS
from annette.layers import LAYER_MODELS, LayerModel
from annette.layers.features import GENERIC_TYPE, Features
from annette.layers.layertype import LayerType

MIN_SAMPLES: dict[str, int] = {"roofline": 8, "refined": 12, "statistical": 30, "mixed": 30}

Progress = Callable[[str], None]
Models = Mapping[str, LayerModel]  # kind -> model


@dataclass(frozen=True)
class Fitted:
    """One type's models: per kind, fitted on the training side (``train``, scored in ``quality``) and on all its
    samples (``final``, what the bundle keeps)."""

    train: Models = field(default_factory=dict)
    final: Models = field(default_factory=dict)
    quality: tuple[Quality, ...] = ()


@dataclass(frozen=True)
class Selection:
    """The models of every type, in the bundle's order; type redirects; pooled primary types."""

    fitted: Mapping[str, Fitted]
    fallbacks: Mapping[str, str]  # type with too little data -> the generic type
    pooled: Mapping[str, list[str]] = field(default_factory=dict)  # primary type -> fused types its model serves

    @property
    def final(self) -> dict[str, dict[str, LayerModel]]:
        return {t: dict(f.final) for t, f in self.fitted.items() if f.final}

    @property
    def train(self) -> dict[str, dict[str, LayerModel]]:
        return {t: dict(f.train) for t, f in self.fitted.items() if f.train}

    @property
    def quality(self) -> tuple[Quality, ...]:
        return tuple(q for f in self.fitted.values() for q in f.quality)


def fit_kind(kind: str, X: Features, y: np.ndarray, seed: int) -> LayerModel:
    """A layer model of ``kind`` fitted on (X, y), seeded where the kind takes a seed."""
    cls = LAYER_MODELS.get(kind)
    settings: dict[str, Any] = {"seed": seed} if "seed" in cls().get_params() else {}
    return cls(**settings).fit(X, y)


def fit_type(data: TrainingSet, t: str, idx: np.ndarray, kinds: Sequence[str], say: Progress) -> Fitted:
    """The models of type ``t`` on samples ``idx``: every kind with enough samples, scored where its training side
    has enough on its own."""
    train_idx, test_idx = idx[~data.is_test[idx]], idx[data.is_test[idx]]
    train: dict[str, LayerModel] = {}
    final: dict[str, LayerModel] = {}
    quality: list[Quality] = []
    for kind in kinds:
        if len(idx) < MIN_SAMPLES[kind]:
            continue
        if len(train_idx) >= MIN_SAMPLES[kind]:
            m = fit_kind(kind, data.X.take(train_idx), data.times[train_idx], data.seed)
            train[kind] = m
            pred = m.predict(data.X.take(test_idx)) if len(test_idx) else np.zeros(0)
            mape, r2 = scores(pred, data.times[test_idx])
            quality.append(Quality(t, kind, len(train_idx), len(test_idx), mape, r2))
        final[kind] = fit_kind(kind, data.X.take(idx), data.times[idx], data.seed)
    say(f"{t}: {len(idx)} samples, kinds {', '.join(final) or 'none'}")
    return Fitted(train, final, tuple(quality))


def select(data: TrainingSet, kinds: Sequence[str], say: Progress) -> Selection:
    """Every type with enough samples for a roofline fitted on its own, the generic type (roofline only) on all
    samples, the sparse types redirected to it; then each primary type pooled where that helps
    (:func:`pool_primary`)."""
    counts = data.n_samples
    sparse = {t for t, n in counts.items() if n < MIN_SAMPLES["roofline"]}
    groups = {t: data.rows(data.types == t) for t in counts if t not in sparse}
    groups[GENERIC_TYPE] = data.rows(np.ones(len(data.types), dtype=bool))
    fitted = {t: fit_type(data, t, idx, ("roofline",) if t == GENERIC_TYPE else kinds, say)
              for t, idx in sorted(groups.items())}
    selection = Selection(fitted, {t: GENERIC_TYPE for t in sorted(sparse)})
    primary = np.array([LayerType.parse(str(t)).primary for t in data.types], dtype=object)
    for p in sorted(set(primary[data.valid].tolist())):
        selection = pool_primary(data, selection, p, data.rows(primary == p), kinds, say)
    return selection


def pool_primary(
    data: TrainingSet, selection: Selection, p: str, idx: np.ndarray, kinds: Sequence[str], say: Progress
) -> Selection:
    """Where primary type ``p`` has fused variants (``Conv``: ``Conv+BatchNormalization+Relu``, ...), try one model
    of ``p`` fitted on all of them (samples ``idx``; the fused members are features: ``n_members``, ``n_inputs``,
    the bytes), which gives sparse variants the data of the whole family. A fused variant keeps its own models
    only where they beat the pooled ones on its held-out samples. The pooled models replace the per-type ones
    where that lowers the family's held-out MAPE (kind: the most refined one fitted), else nothing changes but
    the place of ``p``'s models (last). Returns the selection with ``p`` pooled or not."""
    ref = kinds[-1]
    types = data.types
    fused = sorted({str(t) for t in types[idx]} - {p})
    test = idx[data.is_test[idx]]
    if not fused or len(test) == 0 or len(idx[~data.is_test[idx]]) < MIN_SAMPLES[ref]:
        return selection
    own = selection.fitted
    pool = fit_type(data, p, idx, kinds, say)
    others = {t: f for t, f in own.items() if t != p}
    if ref not in pool.train:
        return replace(selection, fitted={**others, p: pool})

    def mape(model: LayerModel | None, t: str) -> float:
        rows = test[types[test] == t]
        if model is None or not len(rows):
            return math.inf
        return float(np.mean(np.abs(model.predict(data.X.take(rows)) / data.times[rows] - 1)))

    def resolved(models: Mapping[str, Fitted], t: str) -> LayerModel | None:
        for name in (t, p):  # what an estimate would use: the type's own model, else its primary's
            train = models[name].train if name in models else {}
            for k in KIND_FALLBACKS[ref]:
                if k in train:
                    return train[k]
        return None

    keep = [t for t in fused if mape(resolved(own, t), t) < mape(pool.train[ref], t)]
    tested = [(t, int((types[test] == t).sum())) for t in (p, *fused) if (types[test] == t).any()]
    pooled = {**{t: own[t] for t in keep if t in own}, p: pool}
    before = sum(mape(resolved(own, t), t) * n for t, n in tested)
    after = sum(mape(resolved(pooled, t), t) * n for t, n in tested)
    if not after < before:  # the per-type models stay
        say(f"{p}: per-type models kept (held-out {ref} MAPE {before / len(test):.3f} vs pooled "
            f"{after / len(test):.3f})")
        return replace(selection, fitted={**others, p: own.get(p, Fitted())})
    served = [t for t in fused if t not in keep]
    say(f"{p}: pooled over {len(fused) + 1} types (held-out {ref} MAPE {before / len(test):.3f} → "
        f"{after / len(test):.3f}); own models kept for {keep or 'none'}")
    emptied = {t: (Fitted(quality=f.quality) if t in served else f) for t, f in others.items()}
    return Selection({**emptied, p: pool}, {t: v for t, v in selection.fallbacks.items() if t not in served},
                     {**selection.pooled, p: served})
