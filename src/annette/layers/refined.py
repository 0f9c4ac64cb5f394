"""Refined roofline (ANNETTE): the compute roof scaled by the utilisation of the unrolled dimensions.

For each dimension d (h = output height, w = output width, c = input channels, f = output channels) with
size x and parallelism par_d, eff_d = x / (ceil(x / par_d) · par_d); blended with α_d ∈ [0, 1],
eff = Π_d 1 / ((1 − α_d) + α_d / eff_d), and t = max(flops / (peak · eff), bytes / bandwidth) + overhead.
par_d is searched over ``par_candidates`` one dimension at a time, in up to ``max_passes`` passes, keeping a
dimension only where it lowers the fit loss by more than its two parameters' worth (a BIC-like factor, so few
samples cannot buy four dimensions); then peak, bandwidth, overhead and the α_d are refitted jointly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from annette import checks
from annette.errors import InvalidOptionError
from annette.layers.base import LAYER_MODELS
from annette.layers.roofline import LOG_ROOF_BOUNDS, RooflineModel, Roofs, fit_roofs, robust_log_fit

DIMENSIONS: Mapping[str, str] = {"h": "out_h", "w": "out_w", "c": "in_c", "f": "out_c"}


def dim_efficiency(x: np.ndarray, par: float, replication: bool = False) -> np.ndarray:
    """eff_d = x / (ceil(x / par) · par); 1 where x ≤ 0 or par ≤ 1, and with ``replication`` (the original
    ANNETTE's rule: a dimension smaller than its parallelism is replicated) also where x < par."""
    x = np.asarray(x, dtype=np.float64)
    if par <= 1:
        return np.ones_like(x)
    safe = np.where(x > 0, x, 1.0)
    full = (x <= 0) | (x < par) if replication else x <= 0
    return np.where(full, 1.0, safe / (np.ceil(safe / par) * par))  # type: ignore[no-any-return]


def efficiency(
    sizes: Mapping[str, np.ndarray], par: Mapping[str, float], alpha: Mapping[str, float], replication: bool = False
) -> np.ndarray:
    """eff = Π_d 1 / ((1 − α_d) + α_d / eff_d) over the dimensions in ``par``."""
    n = len(next(iter(sizes.values()))) if sizes else 0
    eff = np.ones(n)
    for d, p in par.items():
        a = alpha.get(d, 0.0)
        eff = eff / ((1.0 - a) + a / dim_efficiency(sizes[d], p, replication))
    return eff


class RefinedRooflineModel(RooflineModel):
    """Roofline whose compute roof is scaled by the unrolled-dimension efficiency."""

    kind = "refined"
    roofs_: Roofs
    par_: dict[str, float]
    alpha_: dict[str, float]

    def __init__(
        self,
        dims: Sequence[str] = ("h", "w", "c", "f"),
        par_candidates: Sequence[int] = (2, 4, 8, 16, 32, 64),
        overhead: bool = True,
        max_passes: int = 3,
        work: str = "flops",
        traffic: Sequence[str] = ("bytes",),
        replication: bool = False,
        compute_bound_only: bool = False,
    ) -> None:
        self.dims = tuple(dims)
        self.par_candidates = tuple(par_candidates)
        self.overhead = overhead
        self.max_passes = max_passes
        self.work = work
        self.traffic = tuple(traffic)
        self.replication = replication
        self.compute_bound_only = compute_bound_only


    def _gate(self, roofs: Roofs, flops: np.ndarray, nbytes: np.ndarray, eff: np.ndarray) -> np.ndarray:
        """With ``compute_bound_only`` (the original ANNETTE implementation), rows whose unrefined compute time
        does not exceed their memory time are not refined (efficiency 1)."""
        if not self.compute_bound_only:
            return eff
        compute, memory = roofs.terms_ms(flops, nbytes)
        return np.where(compute > memory, eff, 1.0)  # type: ignore[no-any-return]

    @staticmethod
    def _sizes(X: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        return {d: X[:, list(names).index(col)] for d, col in DIMENSIONS.items()}

    def _fit(self, X: np.ndarray, y_ms: np.ndarray, names: tuple[str, ...]) -> None:
        unknown = [d for d in self.dims if d not in DIMENSIONS]
        if unknown:
            raise InvalidOptionError(f"unknown refined-roofline dimensions {unknown}; valid: {list(DIMENSIONS)}")
        flops, nbytes = self._roof_columns(X, names)
        sizes = self._sizes(X, names)
        roofs, best = fit_roofs(flops, nbytes, y_ms, overhead=self.overhead)
        par: dict[str, float] = {}
        alpha: dict[str, float] = {}
        # A dimension (two parameters, par and α) must lower the loss by a BIC-like factor to be kept:
        # n·log(new/old) < −2·log(n), i.e. ~25 % at 20 samples, ~8 % at 100, ~1.4 % at 1,000.
        n = len(y_ms)
        keep = min(1 - 1e-3, float(np.exp(-2 * np.log(max(n, 2)) / n)))
        if roofs.peak_flops_per_s is not None:
            # Coordinate search over par per dimension (1 = dimension dropped), fitting that dimension's α with
            # the compute roof; passes repeat until nothing changes, so an early wrong choice can be undone.
            for _ in range(self.max_passes):
                changed = False
                for d in self.dims:
                    for p in (1, *self.par_candidates):
                        if p == par.get(d, 1):
                            continue
                        others = {k: v for k, v in par.items() if k != d}
                        trial = {**others, d: float(p)} if p > 1 else others
                        rest = {k: v for k, v in alpha.items() if k != d}
                        (peak, a), cost = self._fit_alpha(flops, nbytes, y_ms, sizes, roofs, trial, rest, d)
                        if (cost < best * keep if p > 1 else cost <= best / keep) and (p == 1 or a > 0.01):
                            best, par, changed = cost, trial, True
                            alpha = {**rest, d: a} if p > 1 else rest
                            roofs = Roofs(peak, roofs.bandwidth_bytes_per_s, roofs.overhead_ms)
                if not changed:
                    break
            if par:
                roofs, alpha = self._refit_joint(flops, nbytes, y_ms, sizes, roofs, par, alpha)
        self.roofs_, self.par_, self.alpha_ = roofs, par, {d: alpha[d] for d in par}

    def _fit_alpha(
        self,
        flops: np.ndarray,
        nbytes: np.ndarray,
        y_ms: np.ndarray,
        sizes: Mapping[str, np.ndarray],
        roofs: Roofs,
        par: Mapping[str, float],
        alpha: Mapping[str, float],
        d: str,
    ) -> tuple[tuple[float, float], float]:
        """Fit (peak, α_d) for a trial ``par``, all else fixed."""

        def model(th: np.ndarray) -> np.ndarray:
            eff = efficiency(sizes, par, {**alpha, d: float(th[1])}, self.replication)
            r = Roofs(float(np.exp(th[0])), roofs.bandwidth_bytes_per_s, roofs.overhead_ms)
            return r.time_ms(flops, nbytes, self._gate(r, flops, nbytes, eff))

        assert roofs.peak_flops_per_s is not None
        log_p = float(np.log(roofs.peak_flops_per_s))
        starts = [np.array([log_p, 0.5]), np.array([log_p + 0.5, 0.9])]
        lo, hi = LOG_ROOF_BOUNDS
        theta, cost = robust_log_fit(model, y_ms, starts, np.array([lo, 0.0]), np.array([hi, 1.0]))
        return (float(np.exp(theta[0])), float(theta[1])), cost

    def _refit_joint(
        self,
        flops: np.ndarray,
        nbytes: np.ndarray,
        y_ms: np.ndarray,
        sizes: Mapping[str, np.ndarray],
        roofs: Roofs,
        par: Mapping[str, float],
        alpha: Mapping[str, float],
    ) -> tuple[Roofs, dict[str, float]]:
        dims = list(par)
        use_b = roofs.bandwidth_bytes_per_s is not None

        def unpack(th: np.ndarray) -> tuple[Roofs, dict[str, float]]:
            i = 1
            bw = None
            if use_b:
                bw, i = float(np.exp(th[1])), 2
            o = float(th[i]) if self.overhead else 0.0
            a = {d: float(v) for d, v in zip(dims, th[i + (1 if self.overhead else 0) :], strict=True)}
            return Roofs(float(np.exp(th[0])), bw, o), a

        def model(th: np.ndarray) -> np.ndarray:
            r, a = unpack(th)
            return r.time_ms(flops, nbytes, self._gate(r, flops, nbytes, efficiency(sizes, par, a, self.replication)))

        assert roofs.peak_flops_per_s is not None
        x0 = [float(np.log(roofs.peak_flops_per_s))]
        lo, hi = [LOG_ROOF_BOUNDS[0]], [LOG_ROOF_BOUNDS[1]]
        if use_b:
            assert roofs.bandwidth_bytes_per_s is not None
            x0.append(float(np.log(roofs.bandwidth_bytes_per_s)))
            lo.append(LOG_ROOF_BOUNDS[0])
            hi.append(LOG_ROOF_BOUNDS[1])
        if self.overhead:
            x0.append(roofs.overhead_ms)
            lo.append(0.0)
            hi.append(float(np.max(y_ms)))
        x0.extend(alpha[d] for d in dims)
        lo.extend(0.0 for _ in dims)
        hi.extend(1.0 for _ in dims)
        theta, _ = robust_log_fit(model, y_ms, [np.array(x0)], np.array(lo), np.array(hi))
        return unpack(theta)

    def _efficiency(self, X: np.ndarray) -> np.ndarray:
        """The unrolled-dimension efficiency of each row (1 where no dimension was kept)."""
        eff = efficiency(self._sizes(X, self.feature_names_), self.par_, self.alpha_, self.replication)
        return self._gate(self.roofs_, *self._columns(X), eff)

    def _learned_to_dict(self) -> dict[str, Any]:
        return {**super()._learned_to_dict(), "par": dict(self.par_), "alpha": dict(self.alpha_)}

    def _check_loaded(self) -> None:
        super()._check_loaded()
        missing = [col for col in DIMENSIONS.values() if col not in self.feature_names_]
        if missing:
            raise ValueError(f"refined roofline: its features lack the unrolled dimensions' columns {missing}")

    def _learned_from_dict(self, d: Mapping[str, Any]) -> None:
        super()._learned_from_dict(d)
        self.par_ = {str(k): checks.number(v, f"par.{k}", positive=True) for k, v in checks.obj(d["par"], "par").items()}
        self.alpha_ = {
            str(k): checks.number(v, f"alpha.{k}", low=0.0, high=1.0) for k, v in checks.obj(d["alpha"], "alpha").items()
        }
        unknown = sorted(set(self.par_) - set(DIMENSIONS))
        if unknown:
            raise ValueError(f"refined roofline: par given for unknown dimensions {unknown} (known: {list(DIMENSIONS)})")
        missing = [k for k in self.par_ if k not in self.alpha_]
        if missing:
            raise ValueError(f"refined roofline: par given for {missing} but no alpha")


LAYER_MODELS.register("refined", RefinedRooflineModel)
