"""Is this machine still the one a bundle was built on? (``annette hw check``)

A CPU bundle is specific to its machine, and a machine is not constant: a virtual machine that reports one CPU
model runs at another speed on another host or beside other tenants (this project's 2-vCPU Xeon ran a build's
validation networks at 1.38x their build's times a day later, and at 0.94x-1.08x the same afternoon), and another
CPU is another machine altogether. Nothing in an estimate can see that; a measurement can. The check measures again, end to end, the
generated networks of the bundle's build validation (``quality.validation``: regenerated from their seed and
matched by name, so nothing is shipped but the recorded times) and compares:

- their times now against the times the build recorded: the ratio per network, whose median is this machine's
  speed against the bundle's (> 1: slower now, so the estimates read low by about 1 - 1/ratio);
- the bundle's estimates against the times now (MAPE, ±10 %, Spearman), beside the figures recorded at the build.

It takes about a minute and changes nothing; `annette calibrate` is what adapts a bundle to this machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from annette.errors import HardwareModelError, InvalidOptionError
from annette.evaluate.metrics import Metrics, compute_metrics
from annette.hardware import HardwareModel, target_mismatch
from annette.quality import Accuracy

SPEED_TOLERANCE = 0.05  # a median ratio within 5 % of 1 (or twice the noise floor, if larger) is the same speed


@dataclass(frozen=True)
class DriftCheck:
    """``annette hw check``'s result: ``n`` validation networks measured again in ``rounds`` rounds (label: the
    minimum). ``ratio``: median over networks of (time now / time at the build), with its quartiles; ``now``: the
    bundle's estimates against the times now; ``then``: the same as the build recorded it; ``noise``: round 1
    against the last, now (``then_noise_pct``: at the build); ``mismatch``: what differs between the bundle's
    target and this machine (None: nothing it records)."""

    bundle: str
    kind: str
    n: int
    rounds: int
    ratio: float
    ratio_q1: float
    ratio_q3: float
    now: Metrics
    then: Accuracy
    noise: Metrics
    built_at: str | None
    mismatch: str | None
    networks: tuple[Mapping[str, Any], ...] = ()
    then_noise_pct: float = 0.0  # the noise floor the build recorded (MAPE, %)

    @property
    def tolerance(self) -> float:
        """What the timings of this machine can tell apart: 5 %, or twice the larger noise floor (now, at the build)."""
        return max(SPEED_TOLERANCE, 2.0 * max(self.noise.mape_pct, self.then_noise_pct) / 100.0)

    @property
    def same_speed(self) -> bool:
        return abs(self.ratio - 1.0) <= self.tolerance

    @property
    def holds(self) -> bool:
        """The same speed, and estimates about as accurate as at the build."""
        return self.same_speed and self.now.mape_pct <= (self.then.mape_pct or 0.0) + 100.0 * self.tolerance

    def verdict(self) -> str:
        """One sentence: how this machine compares, and what to do about it."""
        when = f" (measured {self.built_at})" if self.built_at else ""
        speed = (f"its {self.n} validation networks run at {self.ratio:.2f}x the time its build recorded{when}, "
                 f"the middle half of them at {self.ratio_q1:.2f}-{self.ratio_q3:.2f}x")
        acc = (f"estimates them with MAPE {self.now.mape_pct:.1f} % (mean {self.now.mean_signed_pct:+.1f} %, "
               f"{self.now.within10_pct:.0f} % within ±10 %) against {self.then.mape_pct or 0.0:.1f} % at the build")
        tol = f"(this machine tells apart {100 * self.tolerance:.0f} %)"
        if self.holds:
            return f"{self.bundle} holds on this machine {tol}: {speed}, and it {acc}."
        why = (f"runs {'slower' if self.ratio > 1 else 'faster'} than the one it was built on" if not self.same_speed
               else "runs the bundle's networks at the same speed overall but not each one")
        return (f"{self.bundle} does not hold on this machine, which {why} {tol}: {speed}, and it {acc}; "
                f"`annette calibrate --hw {self.bundle} -o NEW.json` adapts it here in a few minutes")

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "kind": self.kind, "n": self.n, "rounds": self.rounds, "ratio": self.ratio,
                "ratio_q1": self.ratio_q1, "ratio_q3": self.ratio_q3, "holds": self.holds, "same_speed": self.same_speed,
                "tolerance": self.tolerance, "now": self.now.to_dict(), "then": self.then.to_dict(),
                "noise_floor": self.noise.to_dict(), "built_at": self.built_at, "mismatch": self.mismatch,
                "verdict": self.verdict(), "networks": [dict(n) for n in self.networks]}


def _positive(value: Any) -> float:
    """A recorded time in ms, or 0.0 where it is not a positive finite number (a row the check then skips)."""
    x = value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
    return float(x) if math.isfinite(x) and x > 0 else 0.0


def check_bundle(hw: HardwareModel, *, rounds: int = 2, backend_options: Mapping[str, Any] | None = None
                 ) -> DriftCheck:
    """Measure ``hw``'s build-validation networks here again and compare (see the module docstring). Raises
    :class:`HardwareModelError` for a bundle without a build validation to compare with (only ``annette build``
    writes one) or none of whose networks this version can generate again."""
    from annette.build import VALIDATE_N, measure_and_estimate, validation_networks

    if rounds < 1:
        raise InvalidOptionError(f"rounds must be >= 1, got {rounds}")
    v = hw.quality.validation
    if v is None or not v.networks:
        raise HardwareModelError(f"{hw.name} records no build validation to check this machine against (bundles "
                                 "written by `annette build` do)")
    recorded = {str(r.get("network")): _positive(r.get("measured_ms")) for r in v.networks}
    nets = [(k, m) for k, m in validation_networks(v.drawn or VALIDATE_N) if recorded.get(k, 0.0) > 0.0]
    if not nets:
        raise HardwareModelError(f"none of {hw.name}'s {len(recorded)} validation networks can be generated again "
                                 "by this annette version: nothing to compare with")
    options = {"threads": hw.target.threads, **dict(backend_options or {})}
    kind = v.kind if v.kind in hw.kinds else hw.kinds[-1]
    run = measure_and_estimate(nets, hw, kind=kind, backend=hw.target.backend, backend_options=options, rounds=rounds)
    if not run.names:
        raise HardwareModelError(f"none of {hw.name}'s validation networks could be measured here")
    ratios = run.measured_ms / np.array([recorded[k] for k in run.names])
    q1, med, q3 = (float(x) for x in np.percentile(ratios, [25, 50, 75]))
    rows = tuple({"network": k, "measured_ms": float(m), "built_ms": recorded[k], "estimated_ms": float(e),
                  "rounds_ms": run.rounds_ms[k]}
                 for k, m, e in zip(run.names, run.measured_ms, run.estimated_ms, strict=True))
    return DriftCheck(hw.name, kind, len(run.names), rounds, med, q1, q3,
                      compute_metrics(run.measured_ms, run.estimated_ms), v.metrics, run.noise,
                      v.measured_at or str(hw.provenance.get("fitted_at") or "") or None,
                      target_mismatch(hw.target), rows, v.noise_floor.mape_pct or 0.0)
