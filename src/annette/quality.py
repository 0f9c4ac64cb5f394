"""A hardware bundle's ``quality``: what its fit achieved on held-out data, and what was measured with it since.

:class:`BundleQuality` is the bundle's ``quality`` object, in parts:

- :class:`FitQuality` (written by :func:`annette.fit.fit_records`): records used and skipped, samples per type,
  overheads, rule summary, held-out quality per type and kind (:class:`LayerQuality`), held-out end-to-end MAPE
  (:class:`EndToEnd`), fallbacks and pooled types; its keys sit at the top of ``quality``;
- ``validation`` (:class:`ValidationRecord`, written by ``annette build``): generated networks no stage measured;
- ``measured`` (:class:`MeasuredStudy` per study, written by ``scripts/record_accuracy.py``): real networks;
- ``heldout`` (:class:`HeldoutAccuracy`) and ``repeatability`` (written by ``scripts/build_shipped_models.py``
  for bundles fitted from foreign tables); ``note`` (converted bundles: why there are no figures);
- any other key, kept as read.

Numbers are kept as JSON gave them (an integer stays an integer), so that reading and writing a bundle gives
back the same JSON. ``from_dict`` raises :class:`ValueError` naming the part that is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from annette import checks


def _num(value: Any, where: str) -> float:
    """A finite JSON number, as JSON gave it (an int stays an int)."""
    checks.number(value, where)
    return value  # type: ignore[no-any-return]


def _opt_num(value: Any, where: str) -> float | None:
    return None if value is None else _num(value, where)


def _texts(value: Any, where: str) -> tuple[str, ...]:
    return tuple(checks.text(t, f"{where}[]") for t in checks.seq(value, where))


def _counts(value: Any, where: str) -> dict[str, int]:
    return {str(k): checks.integer(v, f"{where}[{k!r}]", low=0, high=None) for k, v in checks.obj(value, where).items()}


@dataclass(frozen=True)
class LayerQuality:
    """Held-out quality of one (type, kind): MAPE and R² of kernel time, sample counts (None: no test samples)."""

    type: str
    kind: str
    n_train: int
    n_test: int
    mape: float | None
    r2: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "kind": self.kind, "n_train": self.n_train, "n_test": self.n_test,
                "mape": self.mape, "r2": self.r2}

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "layer_quality") -> LayerQuality:
        d = checks.obj(d, where)
        return LayerQuality(
            checks.text(d.get("type"), f"{where}.type"), checks.text(d.get("kind"), f"{where}.kind"),
            checks.integer(d.get("n_train"), f"{where}.n_train", low=0, high=None),
            checks.integer(d.get("n_test"), f"{where}.n_test", low=0, high=None),
            _opt_num(d.get("mape"), f"{where}.mape"), _opt_num(d.get("r2"), f"{where}.r2"),
        )


@dataclass(frozen=True)
class EndToEnd:
    """MAPE (a fraction) of whole held-out records estimated end to end; n_incomplete: left out (unsupported)."""

    n: int
    n_incomplete: int
    mape: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "n_incomplete": self.n_incomplete, "mape": self.mape}

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "end_to_end") -> EndToEnd:
        d = checks.obj(d, where)
        return EndToEnd(checks.integer(d.get("n"), f"{where}.n", low=0, high=None),
                        checks.integer(d.get("n_incomplete"), f"{where}.n_incomplete", low=0, high=None),
                        _opt_num(d.get("mape"), f"{where}.mape"))


@dataclass(frozen=True)
class FitQuality:
    """What a fit used, skipped and achieved (the keys :func:`annette.fit.fit_records` writes). ``overhead`` is
    :meth:`annette.hardware.Overhead.to_dict` as written; ``pooled`` None: fitted before types were pooled."""

    target: str
    records_used: Mapping[str, int]
    skipped: Mapping[str, int]
    n_samples: Mapping[str, int]  # executed-layer type -> samples
    overhead: Mapping[str, Any]
    rules: tuple[str, ...]
    layer_quality: tuple[LayerQuality, ...]
    end_to_end_holdout: Mapping[str, EndToEnd]  # kind -> held-out end-to-end MAPE
    fallbacks: Mapping[str, str]
    pooled: Mapping[str, tuple[str, ...]] | None = None  # primary type -> fused types its model serves

    KEYS = ("target", "records_used", "skipped", "n_samples", "overhead", "rules", "layer_quality",
            "end_to_end_holdout", "fallbacks", "pooled")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "target": self.target,
            "records_used": dict(self.records_used),
            "skipped": dict(self.skipped),
            "n_samples": dict(self.n_samples),
            "overhead": dict(self.overhead),
            "rules": list(self.rules),
            "layer_quality": [q.to_dict() for q in self.layer_quality],
            "end_to_end_holdout": {k: e.to_dict() for k, e in self.end_to_end_holdout.items()},
            "fallbacks": dict(self.fallbacks),
        }
        if self.pooled is not None:
            out["pooled"] = {p: list(ts) for p, ts in self.pooled.items()}
        return out

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> FitQuality:
        missing = [k for k in FitQuality.KEYS[:-1] if k not in d]
        if missing:
            raise ValueError(f"quality lacks the fit's {', '.join(missing)}")
        pooled = d.get("pooled")
        return FitQuality(
            target=checks.text(d["target"], "quality.target"),
            records_used=_counts(d["records_used"], "quality.records_used"),
            skipped=_counts(d["skipped"], "quality.skipped"),
            n_samples=_counts(d["n_samples"], "quality.n_samples"),
            overhead=dict(checks.obj(d["overhead"], "quality.overhead")),
            rules=_texts(d["rules"], "quality.rules"),
            layer_quality=tuple(LayerQuality.from_dict(q, f"quality.layer_quality[{i}]")
                                for i, q in enumerate(checks.seq(d["layer_quality"], "quality.layer_quality"))),
            end_to_end_holdout={str(k): EndToEnd.from_dict(v, f"quality.end_to_end_holdout.{k}")
                                for k, v in checks.obj(d["end_to_end_holdout"], "quality.end_to_end_holdout").items()},
            fallbacks={str(k): checks.text(v, f"quality.fallbacks[{k!r}]")
                       for k, v in checks.obj(d["fallbacks"], "quality.fallbacks").items()},
            pooled=None if pooled is None else {
                str(p): _texts(ts, f"quality.pooled[{p!r}]") for p, ts in checks.obj(pooled, "quality.pooled").items()},
        )


@dataclass(frozen=True)
class Accuracy:
    """Estimates against measurements of a set of networks or layers (:class:`annette.evaluate.metrics.Metrics`
    as JSON: errors in percent; None: undefined, e.g. a rank correlation of one pair). The four middle figures
    are absent (None) where a record keeps only the five main ones (``scripts/record_accuracy.py``)."""

    n: int
    mape_pct: float | None
    within10_pct: float | None
    spearman: float | None
    kendall: float | None
    rmspe_pct: float | None = None
    max_ape_pct: float | None = None
    within5_pct: float | None = None
    mean_signed_pct: float | None = None

    ORDER = ("n", "mape_pct", "rmspe_pct", "max_ape_pct", "within5_pct", "within10_pct", "mean_signed_pct",
             "spearman", "kendall")  # Metrics' order, which JSON keeps
    MAIN = ("n", "mape_pct", "within10_pct", "spearman", "kendall")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.ORDER if k in self.MAIN or getattr(self, k) is not None}

    def main(self) -> Accuracy:
        """Only the five main figures (what a measured study records)."""
        return Accuracy(self.n, self.mape_pct, self.within10_pct, self.spearman, self.kendall)

    @staticmethod
    def from_dict(d: Any, where: str = "accuracy") -> Accuracy:
        d = checks.obj(d, where)
        missing = [k for k in Accuracy.MAIN if k not in d]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        values = {k: _opt_num(d.get(k), f"{where}.{k}") for k in Accuracy.ORDER if k != "n"}
        return Accuracy(n=checks.integer(d["n"], f"{where}.n", low=0, high=None), **values)


def _accuracies(value: Any, where: str) -> dict[str, Accuracy]:
    return {str(k): Accuracy.from_dict(v, f"{where}.{k}") for k, v in checks.obj(value, where).items()}


@dataclass(frozen=True)
class MeasuredStudy:
    """A study of real networks measured with the bundle's target (``annette evaluate``, ``benchmarks/*.py``):
    when, where, how, and each kind's accuracy beside the noise floor (round 1 against round 2)."""

    title: str
    date: str
    cpu: str | None
    loadavg: tuple[float, ...] | None
    settings: Mapping[str, Any]
    label: str
    kinds: Mapping[str, Accuracy]
    noise_floor: Accuracy

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "date": self.date,
            "cpu": self.cpu,
            "loadavg": None if self.loadavg is None else list(self.loadavg),
            "settings": dict(self.settings),
            "label": self.label,
            "kinds": {k: a.to_dict() for k, a in self.kinds.items()},
            "noise_floor": self.noise_floor.to_dict(),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "measured") -> MeasuredStudy:
        d = checks.obj(d, where)
        load, cpu = d.get("loadavg"), d.get("cpu")
        return MeasuredStudy(
            title=checks.text(d.get("title"), f"{where}.title", empty=True),
            date=checks.text(d.get("date"), f"{where}.date"),
            cpu=None if cpu is None else checks.text(cpu, f"{where}.cpu", empty=True),
            loadavg=None if load is None else tuple(
                _num(x, f"{where}.loadavg[]") for x in checks.seq(load, f"{where}.loadavg")),
            settings=dict(checks.obj(d.get("settings"), f"{where}.settings")),
            label=checks.text(d.get("label"), f"{where}.label"),
            kinds=_accuracies(d.get("kinds"), f"{where}.kinds"),
            noise_floor=Accuracy.from_dict(d.get("noise_floor"), f"{where}.noise_floor"),
        )

    @staticmethod
    def from_results(results: Mapping[str, Any]) -> MeasuredStudy:
        """The study in a results file of ``annette evaluate`` or ``benchmarks/*.py`` (``results.json``): its
        figures copied, the five main ones per kind."""
        meta = checks.obj(results.get("metadata"), "results.metadata")
        overall = checks.obj(results.get("overall"), "results.overall")
        return MeasuredStudy.from_dict({
            "title": results.get("title"),
            "date": meta.get("date"),
            "cpu": meta.get("cpu"),
            "loadavg": meta.get("loadavg"),
            "settings": results.get("settings"),
            "label": results.get("label_statistic"),
            "kinds": {k: Accuracy.from_dict(v, f"results.overall.{k}").main().to_dict() for k, v in overall.items()},
            "noise_floor": Accuracy.from_dict(results.get("noise_floor"), "results.noise_floor").main().to_dict(),
        }, "results")


@dataclass(frozen=True)
class ValidationRecord:
    """``annette build``'s validation: generated networks no stage measured, estimated with ``kind``, against the
    minimum of their rounds (``metrics``), and round 1 against round 2 (``noise_floor``); per network, as
    written (network, measured_ms, estimated_ms, rounds_ms); ``drawn``: how many networks were drawn (their seed
    regenerates them: ``annette hw check``), ``measured_at``: when (both None in bundles built before they were
    recorded)."""

    kind: str
    metrics: Accuracy
    noise_floor: Accuracy
    networks: tuple[Mapping[str, Any], ...] = ()
    drawn: int | None = None
    measured_at: str | None = None

    @property
    def n(self) -> int:
        return self.metrics.n

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "metrics": self.metrics.to_dict(), "noise_floor": self.noise_floor.to_dict(),
                "networks": [dict(n) for n in self.networks],
                **({"drawn": self.drawn} if self.drawn is not None else {}),
                **({"measured_at": self.measured_at} if self.measured_at is not None else {})}

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "validation") -> ValidationRecord:
        d = checks.obj(d, where)
        return ValidationRecord(
            kind=checks.text(d.get("kind"), f"{where}.kind"),
            metrics=Accuracy.from_dict(d.get("metrics"), f"{where}.metrics"),
            noise_floor=Accuracy.from_dict(d.get("noise_floor"), f"{where}.noise_floor"),
            networks=tuple(dict(checks.obj(n, f"{where}.networks[]"))
                           for n in checks.seq(d.get("networks", []), f"{where}.networks")),
            drawn=None if d.get("drawn") is None else checks.integer(d.get("drawn"), f"{where}.drawn", low=1),
            measured_at=None if d.get("measured_at") is None else checks.text(d.get("measured_at"),
                                                                              f"{where}.measured_at"),
        )


@dataclass(frozen=True)
class HeldoutAccuracy:
    """Held-out rows of a foreign table (:func:`annette.convert.h200.heldout_accuracy`): a seeded ``fraction``
    of each kind's rows, each layer-model kind's accuracy on them, overall (``all``) and per table kind."""

    label: str
    fraction: float
    seed: int
    n_train: int
    n_test: int
    by_kind: Mapping[str, Mapping[str, Accuracy]]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "fraction": self.fraction, "seed": self.seed, "n_train": self.n_train,
                "n_test": self.n_test,
                "by_kind": {k: {f: a.to_dict() for f, a in per.items()} for k, per in self.by_kind.items()}}

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str = "heldout") -> HeldoutAccuracy:
        d = checks.obj(d, where)
        return HeldoutAccuracy(
            label=checks.text(d.get("label"), f"{where}.label"),
            fraction=_num(d.get("fraction"), f"{where}.fraction"),
            seed=checks.integer(d.get("seed"), f"{where}.seed", high=None),
            n_train=checks.integer(d.get("n_train"), f"{where}.n_train", low=0, high=None),
            n_test=checks.integer(d.get("n_test"), f"{where}.n_test", low=0, high=None),
            by_kind={str(k): _accuracies(per, f"{where}.by_kind.{k}")
                     for k, per in checks.obj(d.get("by_kind"), f"{where}.by_kind").items()},
        )


@dataclass(frozen=True)
class BundleQuality:
    """A bundle's ``quality`` object (see the module docstring); every part is optional."""

    fit: FitQuality | None = None
    note: str | None = None
    validation: ValidationRecord | None = None
    measured: Mapping[str, MeasuredStudy] = field(default_factory=dict)  # study name -> study
    heldout: HeldoutAccuracy | None = None
    repeatability: Mapping[str, Any] | None = None  # convert.h200.repeatability, as written
    extra: Mapping[str, Any] = field(default_factory=dict)  # other keys, kept as read

    def with_study(self, name: str, study: MeasuredStudy) -> BundleQuality:
        """This quality with the measured ``study`` recorded as ``name`` (replacing one of that name)."""
        return replace(self, measured={**self.measured, name: study})

    @property
    def end_to_end(self) -> Mapping[str, EndToEnd]:
        """The fit's held-out end-to-end MAPE per kind (none for a bundle that was not fitted)."""
        return {} if self.fit is None else self.fit.end_to_end_holdout

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.fit is None else self.fit.to_dict()
        if self.note is not None:
            out["note"] = self.note
        if self.validation is not None:
            out["validation"] = self.validation.to_dict()
        if self.measured:
            out["measured"] = {k: s.to_dict() for k, s in self.measured.items()}
        if self.heldout is not None:
            out["heldout"] = self.heldout.to_dict()
        if self.repeatability is not None:
            out["repeatability"] = dict(self.repeatability)
        return {**out, **self.extra}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> BundleQuality:
        d = checks.obj(d, "quality")
        known = {*FitQuality.KEYS, *(f.name for f in fields(BundleQuality))} - {"fit", "extra"}
        note, validation, heldout, repeat = (d.get(k) for k in ("note", "validation", "heldout", "repeatability"))
        return BundleQuality(
            fit=FitQuality.from_dict(d) if any(k in d for k in FitQuality.KEYS) else None,
            note=None if note is None else checks.text(note, "quality.note", empty=True),
            validation=None if validation is None else ValidationRecord.from_dict(validation, "quality.validation"),
            measured={str(k): MeasuredStudy.from_dict(v, f"quality.measured.{k}")
                      for k, v in checks.obj(d.get("measured", {}), "quality.measured").items()},
            heldout=None if heldout is None else HeldoutAccuracy.from_dict(heldout, "quality.heldout"),
            repeatability=None if repeat is None else dict(checks.obj(repeat, "quality.repeatability")),
            extra={k: v for k, v in d.items() if k not in known},
        )
