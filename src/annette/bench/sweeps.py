"""Configurations to benchmark: grids, log-uniform random draws, priors from real networks, and adaptive
refinement around the points where a model errs.

A configuration is a family (``annette.bench.blocks.FAMILIES``) and a JSON parameter dict; its
``config_id`` is a stable hash of (family, params, target key), the store's resume key.

Priors: ``src/annette/data/layer_priors.json`` holds the layer configurations that occur in torchvision
networks (batch 1, native input size) and how often each layer type occurs; it was extracted once by
``scripts/extract_layer_priors.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from annette.bench.blocks import FAMILIES, canonical, sample_params
from annette.errors import ModelFileError

log = logging.getLogger(__name__)

PRIORS_FILE = "layer_priors.json"
PRIORS_SCHEMA = "annette.layer_priors"


@dataclass(frozen=True)
class BenchConfig:
    """One configuration to measure."""

    family: str
    params: Mapping[str, Any]
    config_id: str
    kind: str = field(default="micro")
    source: str = "random"  # grid | random | prior | refine | external

    @property
    def model_name(self) -> str:
        """The ONNX graph name of the configuration's network (carries the id, e.g. for test triggers)."""
        return f"{self.family}-{self.config_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "params": dict(self.params), "config_id": self.config_id, "kind": self.kind,
                "source": self.source}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> BenchConfig:
        return BenchConfig(str(d["family"]), dict(d["params"]), str(d["config_id"]), str(d.get("kind", "micro")),
                           str(d.get("source", "random")))


def config_id(family: str, params: Mapping[str, Any], target_key: str) -> str:
    """Stable 16-hex-digit id of (family, params, target)."""
    return hashlib.sha256(f"{family}|{canonical(params)}|{target_key}".encode()).hexdigest()[:16]


def make_config(family: str, params: Mapping[str, Any], target_key: str, source: str = "random") -> BenchConfig:
    fam = FAMILIES.get(family)
    clean = json.loads(canonical(params))  # JSON-native values only
    return BenchConfig(family, clean, config_id(family, clean, target_key), fam.kind, source)


def grid(family: str, target_key: str, base: Mapping[str, Any], **axes: Sequence[Any]) -> list[BenchConfig]:
    """The cartesian product of ``axes`` over ``base`` params (invalid combinations skipped)."""
    fam = FAMILIES.get(family)
    names = list(axes)
    out = []
    for values in itertools.product(*(axes[n] for n in names)):
        params = {**base, **dict(zip(names, values, strict=True))}
        if fam.cost(params) > 0:
            out.append(make_config(family, params, target_key, "grid"))
    return out


def random_configs(family: str, n: int, target_key: str, *, seed: int = 0) -> list[BenchConfig]:
    """``n`` log-uniform random configurations of ``family`` (cost-capped, see ``blocks.sample_params``)."""
    rng = np.random.default_rng(seed)
    return [make_config(family, sample_params(family, rng), target_key, "random") for _ in range(n)]


@lru_cache(maxsize=1)
def load_priors() -> dict[str, Any]:
    """The shipped priors: ``{"op_counts": {op: n}, "families": {family: [params, ...]}, "models": [...]}``."""
    text = resources.files("annette").joinpath("data").joinpath(PRIORS_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    if data.get("schema") != PRIORS_SCHEMA:
        raise ModelFileError(f"{PRIORS_FILE}: expected schema {PRIORS_SCHEMA!r}, got {data.get('schema')!r}")
    return dict(data)


def prior_configs(family: str, target_key: str) -> list[BenchConfig]:
    """The configurations of ``family`` that occur in the shipped real networks (deduplicated)."""
    return [make_config(family, p, target_key, "prior") for p in load_priors()["families"].get(family, [])]


def family_weights(floor: float = 0.02) -> dict[str, float]:
    """Micro families weighted by how often their layer type occurs in real networks (each >= ``floor``), times
    the family's own ``weight`` (1 unless a family asks for less, e.g. the many small transformer families)."""
    counts: Mapping[str, int] = load_priors().get("family_counts", {})
    micro = [n for n in FAMILIES.names() if FAMILIES.get(n).kind == "micro"]
    total = sum(counts.get(f, 0) for f in micro) or 1
    raw = {f: max(floor, counts.get(f, 0) / total) * FAMILIES.get(f).weight for f in micro}
    norm = sum(raw.values())
    return {f: w / norm for f, w in raw.items()}


def refine(
    configs: Iterable[BenchConfig],
    error: Callable[[BenchConfig], float],
    target_key: str,
    *,
    n: int,
    top: float = 0.2,
    spread: float = 0.25,
    seed: int = 0,
    max_cost: float | None = None,
) -> list[BenchConfig]:
    """Adaptive sampling (nn-Meter): ``n`` new configurations near the points where a model errs most.

    ``error(config)`` is the model's error on a measured configuration (e.g. |predicted - measured| /
    measured). The ``top`` fraction with the largest errors are the seeds, drawn in proportion to their error;
    each new configuration perturbs a seed's integer sizes by a log-normal factor (sigma ``spread``), keeping its structural parameters
    (kernel, stride, groups, modes) and the seed's validity (cost cap ``max_cost``, default the single-layer
    ``blocks.MAX_COST``); duplicates are skipped.
    """
    from annette.bench.blocks import MAX_COST

    cap = MAX_COST if max_cost is None else max_cost
    scored = sorted(((error(c), c) for c in configs), key=lambda t: -t[0])
    if not scored:
        return []
    head = scored[: max(1, math.ceil(len(scored) * top))]
    seeds = [c for _, c in head]
    errs = np.array([max(0.0, e) for e, _ in head])
    prob = errs / errs.sum() if errs.sum() > 0 else None
    rng = np.random.default_rng(seed)
    seen = {c.config_id for _, c in scored}
    out: list[BenchConfig] = []
    for _ in range(n * 20):
        if len(out) >= n:
            break
        base = seeds[int(rng.choice(len(seeds), p=prob))]
        try:
            params = _perturb(base.family, base.params, rng, spread)
            cost = FAMILIES.get(base.family).cost(params)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:  # a family whose sizes are coupled
            log.debug("refine: cannot perturb %s %s: %r", base.family, base.params, exc)
            continue
        if not 0 < cost <= cap:
            continue
        cfg = make_config(base.family, params, target_key, "refine")
        if cfg.config_id not in seen:
            seen.add(cfg.config_id)
            out.append(cfg)
    return out


# sizes that may be perturbed; everything else (kernel, stride, pad, groups, modes, perms) is structural
_SIZE_KEYS = ("n", "cin", "cout", "c", "h", "w", "m", "k", "b", "s", "d")
_STRUCTURAL = {"conv": ("k",), "matmul": ()}


def _perturb(family: str, params: Mapping[str, Any], rng: np.random.Generator, spread: float) -> dict[str, Any]:
    p = dict(params)

    def jitter(v: int) -> int:
        return max(1, int(round(v * math.exp(rng.normal(0.0, spread)))))

    fixed = set(_STRUCTURAL.get(family, ("k",)))
    if family == "conv" and p.get("groups", 1) == p.get("cin") == p.get("cout"):
        p["cin"] = p["cout"] = p["groups"] = jitter(int(p["cin"]))  # stay depthwise
        fixed |= {"cin", "cout"}
    for key in _SIZE_KEYS:
        if key in p and key not in fixed and isinstance(p[key], int) and key != "n":
            p[key] = jitter(p[key])
    if "h" in p and "w" in p and params.get("h") == params.get("w"):
        p["w"] = p["h"]
    if family == "conv" and p.get("groups", 1) > 1:
        g = int(p["groups"])
        p["cin"], p["cout"] = max(g, p["cin"] // g * g), max(g, p["cout"] // g * g)
    if "heads" in p and "d" in p:  # attention: the width stays a multiple of the head count
        p["d"] = max(p["heads"], p["d"] // p["heads"] * p["heads"])
    if "shape" in p:
        p["shape"] = [p["shape"][0], *(jitter(int(v)) for v in p["shape"][1:])]
        if "to" in p:
            p["to"] = [p["shape"][0], int(np.prod(p["shape"][1:]))]
    if "cs" in p:
        p["cs"] = [jitter(int(v)) for v in p["cs"]]
    return p
