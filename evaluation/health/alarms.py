"""Alarm thresholds of the batch health, and a normal-increment CUSUM (:class:`Cusum`, for
already standardised per-batch statistics; the outcome-rate alarms use the likelihood-ratio CUSUM of
:mod:`evaluation.health.rates`).

Thresholds and how they were chosen (:class:`HealthThresholds`):

* feature drift: PSI above 0.2, the usual "significant shift" rule of the
  credit-scoring practice (0.1-0.2 "moderate"). Under no drift the PSI of ``m`` rows against ``n``
  reference rows over ``b`` bins is about ``(1/n + 1/m) chi2(b - 1)``: ~0.01 for 1,500 against
  3,000 rows, far below 0.2, so the rule's false alarms come from real (if small) shifts only.
  A mean shift of ``delta`` standard deviations of a normal feature has a PSI of about ``delta**2``
  (the symmetric KL divergence), so 0.2 fires from ``delta`` ~ 0.45 on.
* prediction drift: PSI above 0.1 (the practice's "moderate shift") of the model's scores on the
  batch's pairs against the same model's scores on the reference (training) rows. The model is
  retrained between batches, and a retrain moves its predictions of one population by far more than
  0.2 (its PSI against the previous batches' predictions went past 0.2 in a third of the null
  batches of the drift experiment); scoring both populations with the batch's own model leaves only
  what the population moved. The batch's model is known through its predictions: a least-squares
  fit of their logits on the pair features (a linear read-out of the model), applied to both sets
  of rows. Under no drift this is the PSI of one fixed projection, about ``(1/n + 1/m) chi2(9)``:
  ~0.004 (99.9% point 0.012) for 3,000 rows against 9,000, ~0.009 (0.028) against 1,500.
* outcome rates (conversion, unsubscription): the Bernoulli likelihood-ratio CUSUM of
  :mod:`evaluation.health.rates` on the sent pairs' outcomes against the model's calibrated
  predictions of those pairs, tuned to odds x ``rate_ratio`` (1.5) either way, started after the
  reference batches; ``h`` gives a two-sided in-control ARL of ``rate_arl0`` = 500 batches (0.2%
  false alarms per batch), computed by the Markov chain of :func:`~evaluation.health.rates.cusum_arl`
  for batches like the reference ones (their mean sends and mean expected count), unless
  ``rate_h`` fixes it. The null odds ratio of the predictions on the sent pairs
  (``rate_null_odds_*``) was measured on unshifted runs of the email world.
* outcome rates against a frozen reference (``rate_shift_ref.<outcome>``): the same CUSUM, ratio,
  ARL and ``h`` rule, of the same outcomes against a read-out of the model frozen at the close of
  the reference window (:mod:`evaluation.health.reference`), which does not learn a shift as the
  retrained model does; its null odds take up the frozen model's bias on the pairs later policies
  send, estimated per run from lagged batches (:class:`~evaluation.health.monitor.MonitorConfig`).
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
from evaluation.health.rates import DEFAULT_ARL0, DEFAULT_NULL_ODDS, DEFAULT_RATIO

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
        psi: PSI of a feature above which drift is alarmed.
        prediction_psi: PSI of the batch model's scores (batch rows against reference rows) above
            which prediction drift is alarmed.
        rate_ratio: The odds ratio the outcome-rate CUSUM is tuned to (and its inverse).
        rate_arl0: The rate CUSUM's two-sided in-control average run length, in batches.
        rate_h: Its threshold (and the frozen-reference chart's); None: solved from ``rate_arl0``
            for the reference batches (the null-odds window's for the frozen-reference chart).
        rate_null_odds_conversion: Odds of the observed over the predicted conversions on sent
            pairs when nothing has shifted (the null of the rate CUSUM).
        rate_null_odds_unsubscription: The same for unsubscriptions.
        ece_z: Standard deviations of the null ECE above its null mean.
        entropy_ratio: Entropy below this fraction of the reference is a collapse.
        coverage_ratio: Coverage below this fraction of the reference.
        overlap_ratio: Overlap@K below this fraction of the reference.
        variance_ratio: Allocation variance below this fraction of the reference.
    """

    psi: float = 0.2
    prediction_psi: float = 0.1
    rate_ratio: float = DEFAULT_RATIO
    rate_arl0: float = DEFAULT_ARL0
    rate_h: float | None = None
    rate_null_odds_conversion: float = DEFAULT_NULL_ODDS["conversion"]
    rate_null_odds_unsubscription: float = DEFAULT_NULL_ODDS["unsubscription"]
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
            (self.prediction_psi > 0, "prediction_psi"),
            (self.rate_ratio > 1, "rate_ratio"),
            (self.rate_arl0 > 1, "rate_arl0"),
            (self.rate_h is None or self.rate_h > 0, "rate_h"),
            (self.rate_null_odds_conversion > 0, "rate_null_odds_conversion"),
            (self.rate_null_odds_unsubscription > 0, "rate_null_odds_unsubscription"),
            (self.ece_z > 0, "ece_z"),
            (0 < self.entropy_ratio <= 1, "entropy_ratio"),
            (0 < self.coverage_ratio <= 1, "coverage_ratio"),
            (0 < self.overlap_ratio <= 1, "overlap_ratio"),
            (0 < self.variance_ratio <= 1, "variance_ratio"),
        )
        for ok, name in checks:
            if not ok:
                raise EvaluationInputError(f"health threshold {name} out of range: {getattr(self, name)}")

    def null_odds(self, outcome: str) -> float:
        """The rate CUSUM's null odds ratio of ``outcome``."""
        return float(getattr(self, f"rate_null_odds_{outcome}"))


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
