"""Alarm thresholds of the batch health, and the sequential test behind the outcome-rate alarms.

Thresholds and how they were chosen (:class:`HealthThresholds`):

* feature drift and prediction drift: PSI above 0.2, the usual "significant shift" rule of the
  credit-scoring practice (0.1-0.2 "moderate"). Under no drift the PSI of ``m`` rows against ``n``
  reference rows over ``b`` bins is about ``(1/n + 1/m) chi2(b - 1)``: ~0.01 for 1,500 against
  3,000 rows, far below 0.2, so the rule's false alarms come from real (if small) shifts only.
  A mean shift of ``delta`` standard deviations of a normal feature has a PSI of about ``delta**2``
  (the symmetric KL divergence), so 0.2 fires from ``delta`` ~ 0.45 on.
* outcome rates (conversion, unsubscription): a two-sided CUSUM (Page 1954) on the per-batch
  standardised residual ``z_b = (sum y - sum p) / sqrt(sum p (1 - p))`` of the batch's observed
  outcomes ``y`` against the model's calibrated predictions ``p`` of the sent pairs: the
  "reference rate" is what the model expects of exactly those sends, so the policy choosing other
  pairs as it learns is not a shift. ``S+ = max(0, S+ + z - k)``, ``S- = max(0, S- - z - k)``,
  alarm when either passes ``h``, then both restart at 0. ``k = 0.5`` (tuned to a shift of one
  standard deviation per batch) and ``h`` is solved from a target in-control run length
  ``ARL0`` with Siegmund's approximation of the one-sided ARL,
  ``(exp(2 k b) - 2 k b - 1) / (2 k**2)``, ``b = h + 1.166``, the two sides in parallel
  (``1/ARL0 = 2/ARL_one``): ARL0 = 500 batches (a 0.2% false-alarm rate per batch) gives h ≈ 5.1.
* calibration: ECE above its null mean plus 3.09 null standard deviations (a one-sided 0.1%
  normal tail), over the last ``calibration_window`` outcomes.
* exploration collapse: selection entropy, item coverage, overlap@K and allocation variance each
  below a fraction of their mean over the reference batches (entropy 0.8, coverage 0.5,
  overlap 0.5, variance 0.25): these have no null distribution to set a rate from; the fractions
  flag a halving (a quarter for the variance, which is quadratic in the probabilities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.optimize
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray
from evaluation.errors import EvaluationInputError

#: The correction of Siegmund's approximation for a normal CUSUM (the overshoot of the boundary).
SIEGMUND_OVERSHOOT = 1.166


@dataclass(frozen=True)
class Alarm:
    """One threshold crossed in one batch.

    Attributes:
        name: Which alarm (``feature_drift``, ``rate_shift.conversion``, ...).
        batch: The batch's index (or its position in the stream).
        value: The statistic that crossed.
        threshold: The threshold it crossed.
    """

    name: str
    batch: int
    value: float
    threshold: float


def siegmund_arl(k: float, h: float) -> float:
    """Siegmund's approximation of the in-control average run length of a one-sided CUSUM of
    N(0, 1) increments with reference ``k > 0`` and threshold ``h``."""
    if k <= 0 or h < 0:
        raise EvaluationInputError(f"need k > 0 and h >= 0, got {k}, {h}")
    b = h + SIEGMUND_OVERSHOOT
    return (math.exp(2 * k * b) - 2 * k * b - 1) / (2 * k * k)


def cusum_threshold(k: float, target_arl: float, sides: int = 2) -> float:
    """The CUSUM threshold ``h`` whose in-control ARL (``sides`` one-sided charts together) is ``target_arl``."""
    if target_arl <= 1 or sides not in (1, 2):
        raise EvaluationInputError(f"need target_arl > 1 and sides 1 or 2, got {target_arl}, {sides}")
    return float(scipy.optimize.brentq(lambda h: siegmund_arl(k, h) / sides - target_arl, 0.0, 200.0))


@dataclass(frozen=True)
class HealthThresholds:
    """The alarm thresholds (see the module docstring for how each was chosen).

    Attributes:
        psi: PSI of a feature or of the predictions above which drift is alarmed.
        cusum_k: The CUSUM's reference value (half the standardised shift it is tuned to).
        cusum_arl0: Its target in-control average run length, in batches.
        ece_z: Standard deviations of the null ECE above its null mean.
        entropy_ratio: Entropy below this fraction of the reference is a collapse.
        coverage_ratio: Coverage below this fraction of the reference.
        overlap_ratio: Overlap@K below this fraction of the reference.
        variance_ratio: Allocation variance below this fraction of the reference.
    """

    psi: float = 0.2
    cusum_k: float = 0.5
    cusum_arl0: float = 500.0
    ece_z: float = 3.09
    entropy_ratio: float = 0.8
    coverage_ratio: float = 0.5
    overlap_ratio: float = 0.5
    variance_ratio: float = 0.25

    def __post_init__(self) -> None:
        """Reject thresholds that cannot alarm.

        Raises:
            EvaluationInputError: naming the first offending field.
        """
        checks = (
            (self.psi > 0, "psi"),
            (self.cusum_k > 0, "cusum_k"),
            (self.cusum_arl0 > 1, "cusum_arl0"),
            (self.ece_z > 0, "ece_z"),
            (0 < self.entropy_ratio <= 1, "entropy_ratio"),
            (0 < self.coverage_ratio <= 1, "coverage_ratio"),
            (0 < self.overlap_ratio <= 1, "overlap_ratio"),
            (0 < self.variance_ratio <= 1, "variance_ratio"),
        )
        for ok, name in checks:
            if not ok:
                raise EvaluationInputError(f"health threshold {name} out of range: {getattr(self, name)}")

    @property
    def cusum_h(self) -> float:
        """The two-sided CUSUM threshold for :attr:`cusum_arl0`."""
        return cusum_threshold(self.cusum_k, self.cusum_arl0)


@dataclass(frozen=True)
class Cusum:
    """The state of a two-sided CUSUM: ``upper`` (S+) and ``lower`` (S-), both >= 0."""

    upper: float = 0.0
    lower: float = 0.0

    @property
    def statistic(self) -> float:
        """``max(S+, S-)``: what is compared with ``h``."""
        return max(self.upper, self.lower)

    def step(self, z: float, k: float, h: float) -> tuple[Cusum, float, bool]:
        """One increment ``z``.

        Returns:
            ``(next state, statistic before any restart, alarmed)``; after an alarm the next state is 0, 0.
            A nan increment (no outcomes) leaves the state as it is.
        """
        if math.isnan(z):
            return self, self.statistic, False
        nxt = Cusum(max(0.0, self.upper + z - k), max(0.0, self.lower - z - k))
        stat = nxt.statistic
        if stat > h:
            return Cusum(), stat, True
        return nxt, stat, False


def cusum_run(z: ArrayLike, k: float, h: float) -> tuple[FloatArray, FloatArray]:
    """Run a two-sided CUSUM over increments ``z (T,)`` from zero (restarting after each alarm).

    Returns:
        ``(statistic (T,), alarmed (T,) as 0/1)``.
    """
    state = Cusum()
    values = np.asarray(z, dtype=float)
    stats = np.empty(values.size)
    alarms = np.zeros(values.size)
    for t, zt in enumerate(values):  # sequential by nature: one step per batch
        state, stats[t], fired = state.step(float(zt), k, h)
        alarms[t] = float(fired)
    return stats, alarms


def standardised_residual(predicted: ArrayLike, observed: ArrayLike) -> float:
    """``(sum y - sum p) / sqrt(sum p (1 - p))`` of one batch's outcomes; nan without variance."""
    p = np.asarray(predicted, dtype=float)
    y = np.asarray(observed, dtype=float)
    var = float((p * (1.0 - p)).sum())
    return float((y.sum() - p.sum()) / math.sqrt(var)) if var > 0 else math.nan
