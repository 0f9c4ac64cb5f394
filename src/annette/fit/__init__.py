"""Fit a hardware model from benchmark records: overheads, mapping rules, then layer models per type and kind.

1. Records (:mod:`.records`): ``ok`` ones with a graph and a measurement, of one target, without an excluded
   stability flag; micro and multi-layer records train, network records only with ``use_networks``.
2. Overheads (:mod:`.overhead`): where a record has a per-node profile, its measured time minus the summed
   kernel times is regressed on the number of executed nodes: per-node and per-run overhead, added per executed
   layer and per run by every estimate.
3. Mapping rules: :func:`annette.mapping.learn_rules` (profiles first, timing test where singles exist), with a
   recipe's fixed rules added (:class:`Recipe`).
4. Samples (:mod:`.samples`): every profiled node of a record is one sample of its executed-layer type (kernel
   time; nodes covering the same layers, a layer split into several kernels, are one sample); a record without
   profile that maps to a single executed layer is one sample (measured time less the overheads). Each record's
   profile is read once, for the rules and the samples.
5. Models and quality (:mod:`.select`): ~``holdout`` of the records of each family are held out; each type and
   kind is fitted on the rest and scored on them (MAPE, R² on ms, n), primary types are pooled over their fused
   variants where that predicts them better, held-out multi-layer records are estimated end to end
   (:mod:`.report`); then every model is refitted on all records.
6. The cache model (:mod:`.cache`), by :func:`fit_store`, from cache-pressure records.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from annette.errors import HardwareModelError
from annette.fit.cache import CACHE_CANDIDATES_MB, fit_cache
from annette.fit.overhead import CHAIN_FAMILY, describe, fit_overhead
from annette.fit.recipe import Recipe
from annette.fit.records import CACHE_KIND, LAYER_RECORD_KINDS, held_out, layer_records, usable
from annette.fit.report import FitReport, Quality, describe_rules, end_to_end, provenance_of
from annette.fit.samples import Samples, TrainingSet, collect_samples, read_profiles, training_set
from annette.fit.select import MIN_SAMPLES, Selection, select
from annette.hardware import HardwareModel
from annette.layers import KINDS, LAYER_MODELS
from annette.mapping.learn import learn_rules
from annette.quality import BundleQuality
from annette.records import BenchRecord

__all__ = [
    "CACHE_CANDIDATES_MB", "CACHE_KIND", "CHAIN_FAMILY", "LAYER_RECORD_KINDS", "MIN_SAMPLES", "FitReport", "Quality",
    "Recipe", "Samples", "Selection", "TrainingSet", "collect_samples", "fit_cache", "fit_overhead", "fit_records",
    "fit_store", "held_out",
]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


def fit_records(
    records: Iterable[BenchRecord],
    *,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    holdout: float = 0.15,
    alpha: float = 0.5,
    exclude_flags: Sequence[str] = (),
    use_networks: bool = False,
    target_key: str | None = None,
    name: str | None = None,
    provenance: dict[str, Any] | None = None,
    progress: Progress | None = None,
    generic_default: bool = True,
    recipe: Recipe | None = None,
) -> tuple[HardwareModel, FitReport]:
    """Build a hardware model from benchmark records; see the module docstring for the steps.

    ``generic_default``: op types no benchmark covered (e.g. ReduceL2, Einsum) are estimated with the generic
    model fitted on all types (roofline over FLOPs and bytes, plus the per-node overhead; a recipe can name
    another, ``recipe.default_type``), and each such layer says so in its note; without it they are
    *unsupported* (left out of the total, listed). ``recipe``: what is known of the target beyond its records
    (:class:`Recipe`). The report's ``rules`` are the learned ones.
    """
    for k in kinds:
        LAYER_MODELS.get(k)
    recipe = recipe or Recipe()
    say = progress or (lambda msg: logger.info("%s", msg))
    all_records = list(records)
    kept, skipped, target = usable(all_records, exclude_flags, target_key)
    fit_set = layer_records(kept, use_networks)
    used = dict(Counter(r.kind for r in fit_set))
    say(f"{len(fit_set)} records of {target.key} ({used})")
    overhead = fit_overhead(fit_set)
    say(describe(overhead))
    profiles = read_profiles(fit_set)
    learned = learn_rules(fit_set, alpha=alpha, run_overhead_ms=overhead.per_run_ms, profiles=profiles)
    say(describe_rules(learned))
    rules = recipe.mapping(learned)
    held = held_out(fit_set, holdout, seed, min_family=5)
    data = training_set(collect_samples(fit_set, rules, overhead, profiles), held, seed)
    if not data.valid.all():
        skipped["samples without features or positive time"] += int((~data.valid).sum())
    chosen = select(data, kinds, say)
    hw_name = name or f"{target.backend}-{target.device}-{target.precision}-b{target.batch}-t{target.threads}"
    scored = HardwareModel(hw_name, target, rules, chosen.train, overhead, chosen.fallbacks, data.X.names)
    report = FitReport(
        target, used, dict(skipped), data.n_samples, overhead, learned.summary(), chosen.quality,
        end_to_end([fit_set[i] for i in held if fit_set[i].kind != "micro"], scored, kinds),
        dict(chosen.fallbacks), dict(chosen.pooled),
    )
    models = recipe.layer_models(chosen.final)
    hw = replace(
        scored,
        layer_models=models,
        fallbacks=recipe.redirects(chosen.fallbacks, models),
        provenance=provenance_of(all_records, fit_set, seed, holdout, kinds, exclude_flags, provenance),
        quality=BundleQuality(fit=report.fit_quality()),
        default_type=recipe.default(models, generic_default),
        element_bits=recipe.element_bits,
    )
    return hw, report


def fit_store(
    store_dir: str | Path | Sequence[str | Path], cache_dirs: Sequence[str | Path] = (), **opts: Any
) -> tuple[HardwareModel, FitReport]:
    """Fit a hardware model from one benchmark store directory or several (e.g. a campaign and a targeted one;
    their records are pooled), with the options of :func:`fit_records`; then its cache model (:func:`fit_cache`)
    from their cache-pressure records (kind ``cache``, measured by ``annette build``) and those of the stores in
    ``cache_dirs``, where there are any."""
    from annette.bench.store import BenchStore

    dirs = [Path(store_dir)] if isinstance(store_dir, (str, Path)) else [Path(d) for d in store_dir]
    if not dirs:
        raise HardwareModelError("fit_store needs at least one benchmark store directory")
    records = [r for d in dirs for r in BenchStore(d, create=False).records(status=None)]
    cache_records = [r for r in records if r.kind == CACHE_KIND]
    stores = [str(d.resolve()) for d in dirs]
    extra = {"store": stores[0] if len(stores) == 1 else stores, **dict(opts.pop("provenance", None) or {})}
    if cache_dirs:
        extra["cache_store"] = [str(Path(d).resolve()) for d in cache_dirs]
    hw, report = fit_records(records, provenance=extra, **opts)
    cache_records += [r for d in cache_dirs for r in BenchStore(Path(d), create=False).records()]
    if cache_records:
        cache = fit_cache(cache_records, hw, kind="mixed" if "mixed" in hw.kinds else hw.kinds[-1])
        logger.info("cache model: %s", cache)
        hw = replace(hw, cache=cache)
    return hw, report
