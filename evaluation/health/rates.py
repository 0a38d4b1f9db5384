"""The outcome-rate shift detector: a Bernoulli likelihood-ratio CUSUM of the observed outcomes
of the sent pairs against the model's predictions of exactly those pairs, with the in-control
average run length (ARL) computed by a Markov chain.

Each sent pair ``i`` has the model's calibrated prediction ``p_i`` and an outcome ``y_i``. The
null is "the world is as the model says, up to the null odds ratio ``c``": ``y_i ~ Bernoulli(q_i)``
with ``odds(q_i) = c odds(p_i)``. ``c`` is 1 for a calibrated model, but a model is not calibrated
on the pairs its LP chooses (the optimizer's curse: the LP picks where the estimate errs low), so
``c`` is measured on the unshifted world (:data:`DEFAULT_NULL_ODDS`, how in the README). The
alternative is a change of the outcome's odds by ``r`` on every pair, the form of the drift
experiment's rate shifts (a logit offset of ``log r``; ``r`` = :data:`DEFAULT_RATIO`, why
there). One batch's log-likelihood ratio is::

    l(r) = sum_i [ y_i log r - log(1 + (r - 1) q_i) ]

(``q_i = c p_i / (1 - p_i + c p_i)``; ``~ Y log r - (r - 1) sum q`` for small rates: the Poisson
CUSUM). The upper chart tests ``r = ratio`` (a rise), the lower one ``r = 1 / ratio`` (a fall):
``S = max(0, S + l)`` each, from 0 (Page 1954; the LLR CUSUM is optimal for a change to exactly
``r``, Moustakides 1986), an alarm when either exceeds ``h``, both restarted at 0 after an alarm.

Unlike a CUSUM of a per-batch z-score, the increments carry every event at its weight: a batch
with three expected unsubscriptions and six seen adds ``6 log 2 - 3 = 1.16`` to the upper chart
whatever its variance. Under the null ``E exp(l) = 1`` (Wald), so the one-sided ARL grows like
``exp(h)`` nearly whatever the batch's size: one ``h`` serves small and large batches alike.

:func:`cusum_arl` computes the ARL of one chart for batches whose event count has a given
probability mass function (a Markov chain on a grid of the statistic, Brook and Evans 1972: the
statistic's transition from each grid point, split linearly between neighbouring points, then
``(I - Q) L = 1``); :func:`rate_threshold` solves ``h`` for a target two-sided ARL with
``1 / ARL = 1 / ARL_upper + 1 / ARL_lower`` (the two charts are rarely near their boundary
together; it ignores their dependence and was 3.5% above a simulation of both at an ARL of 30).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg
import scipy.stats
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray
from evaluation.errors import EvaluationInputError

#: The odds ratio the detector is tuned to. Not the shift's 2: a model retrained every batch absorbs
#: a shift within 2-3 retrains, so the ratio seen on the sent pairs is smaller (in the drift
#: experiment's x2 odds runs, pooled over 5 seeds: 1.64 in the shift's batch, then 1.46, 1.19, ~1.0),
#: and a chart tuned to ``r`` gains only while the ratio is above ``(r - 1) / log r``: 1.44 for
#: ``r = 2``, 1.23 for ``r = 1.5``.
DEFAULT_RATIO = 1.5
#: The target in-control ARL of the two charts together, in batches.
DEFAULT_ARL0 = 500.0
#: Null odds ratio (observed over predicted, on the sent pairs) per outcome, measured on the
#: unshifted email world at its defaults (seeds 5-9, batches 4-20; ``python -m
#: evaluation.health.drift --kinds '' --first-seed 5``): 0.99 [0.96, 1.03] for conversion and 1.01
#: [0.93, 1.10] for unsubscription, so 1: the calibrated means show no optimizer's curse on the
#: pairs the LP sends there (the uncalibrated and sampled ones do, DESIGN.md).
DEFAULT_NULL_ODDS: Mapping[str, float] = {"conversion": 1.0, "unsubscription": 1.0}


def null_probability(predicted: ArrayLike, null_odds: float) -> FloatArray:
    """``q = c p / (1 - p + c p)``: the predictions with their odds multiplied by ``c``; shape of ``predicted``."""
    p = np.asarray(predicted, dtype=float)
    return (null_odds * p) / (1.0 - p + null_odds * p)


def odds_llr(predicted: ArrayLike, observed: ArrayLike, ratio: float, null_odds: float = 1.0) -> FloatArray:
    """Log-likelihood ratio of odds ``ratio`` against 1 (on the null's odds), summed over the last axis.

    Args:
        predicted: ``(..., n)`` predicted probabilities in [0, 1].
        observed: ``(..., n)`` outcomes (0/1).
        ratio: The alternative's odds ratio ``r > 0``.
        null_odds: The null's odds ratio ``c > 0`` on the predictions.

    Returns:
        ``(...)`` the LLR of each batch (0 for an empty batch).
    """
    if ratio <= 0 or null_odds <= 0:
        raise EvaluationInputError(f"need ratio > 0 and null_odds > 0, got {ratio}, {null_odds}")
    q = null_probability(predicted, null_odds)
    y = np.asarray(observed, dtype=float)
    if q.shape != y.shape:
        raise EvaluationInputError(f"predictions and outcomes differ in shape: {q.shape}, {y.shape}")
    return np.asarray((y * math.log(ratio) - np.log1p((ratio - 1.0) * q)).sum(axis=-1), dtype=float)


@dataclass(frozen=True)
class RateCusum:
    """The state of the two charts: ``upper`` tests odds ``ratio``, ``lower`` odds ``1 / ratio``."""

    upper: float = 0.0
    lower: float = 0.0

    @property
    def statistic(self) -> float:
        """``max(upper, lower)``: what is compared with ``h``."""
        return max(self.upper, self.lower)

    def step(
        self, predicted: ArrayLike, observed: ArrayLike, ratio: float, null_odds: float, h: float
    ) -> tuple[RateCusum, float, bool]:
        """One batch's sends (``predicted (n,)``, ``observed (n,)``).

        Returns:
            ``(next state, statistic before any restart, alarmed)``; after an alarm the next state
            is 0, 0. A batch without sends leaves the state as it is (its LLR is 0).
        """
        up = float(odds_llr(predicted, observed, ratio, null_odds))
        down = float(odds_llr(predicted, observed, 1.0 / ratio, null_odds))
        nxt = RateCusum(max(0.0, self.upper + up), max(0.0, self.lower + down))
        stat = nxt.statistic
        if stat > h:
            return RateCusum(), stat, True
        return nxt, stat, False


def cusum_update(state: ArrayLike, llr: ArrayLike) -> FloatArray:
    """``max(0, S + l)`` elementwise: one step of many one-sided charts at once (``(m,)`` each)."""
    return np.maximum(0.0, np.asarray(state, dtype=float) + np.asarray(llr, dtype=float))


def count_llr(counts: ArrayLike, ratio: float, q: ArrayLike) -> FloatArray:
    """The LLR of a batch of ``n`` pairs of one null probability ``q`` with ``counts`` events:
    ``Y log r - n log(1 + (r - 1) q)``, for every count of ``counts (K,)`` (``q``: ``(n,)``)."""
    y = np.asarray(counts, dtype=float)
    return y * math.log(ratio) - float(np.log1p((ratio - 1.0) * np.asarray(q, dtype=float)).sum())


def cusum_arl(pmf: ArrayLike, increment: ArrayLike, h: float, grid: int = 4000) -> float:
    """ARL from 0 of one chart ``S = max(0, S + l)``, alarm at ``S > h``, whose per-batch
    increment is ``increment[y]`` with probability ``pmf[y]`` (Markov chain on ``grid`` points).

    Args:
        pmf: ``(K,)`` probabilities of the batch's event counts 0..K-1 (the tail beyond is dropped).
        increment: ``(K,)`` the increment for each count.
        h: The threshold, >= 0.
        grid: Grid points on [0, h].

    Returns:
        The expected number of batches to the first alarm.
    """
    w = np.asarray(pmf, dtype=float)
    inc = np.asarray(increment, dtype=float)
    if w.shape != inc.shape or w.ndim != 1 or h < 0 or grid < 2:
        raise EvaluationInputError(f"need equal (K,) pmf and increments, h >= 0 and grid >= 2: {w.shape}, {inc.shape}")
    n = grid
    step = h / (n - 1) if h > 0 else 1.0
    s = np.arange(n) * step
    target = np.maximum(0.0, s[:, None] + inc[None, :])  # (n, K)
    inside = target <= h
    pos = np.where(inside, target / step, 0.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    mass = np.where(inside, w[None, :], 0.0)
    rows = np.repeat(np.arange(n), w.size)
    # (I - Q) as a sparse matrix: each row has at most 2K entries
    q = scipy.sparse.coo_matrix(
        (
            np.r_[(mass * (1.0 - frac)).ravel(), (mass * frac).ravel()],
            (np.r_[rows, rows], np.r_[lo.ravel(), hi.ravel()]),
        ),
        shape=(n, n),
    ).tocsc()
    arl = scipy.sparse.linalg.spsolve(scipy.sparse.identity(n, format="csc") - q, np.ones(n))
    return float(arl[0])


def count_pmf(predicted: ArrayLike, odds: float = 1.0, tail: float = 1e-12) -> FloatArray:
    """Probabilities of the event count of one batch whose pairs convert at ``odds x`` the odds of
    ``predicted (n,)``: the Poisson-binomial distribution (by convolution), cut where its tail is below ``tail``."""
    q = null_probability(predicted, odds)
    pmf = np.ones(1)
    for qi in q:  # a batch's few hundred pairs, once per threshold computation
        pmf = np.convolve(pmf, [1.0 - qi, qi])
    keep = max(1, int(np.searchsorted(np.cumsum(pmf), 1.0 - tail)) + 1)
    return pmf[:keep]


def chart_arls(
    predicted: ArrayLike, ratio: float, h: float, null_odds: float = 1.0, true_odds: float = 1.0, grid: int = 4000
) -> tuple[float, float]:
    """``(ARL of the upper chart, ARL of the lower)`` for batches of pairs ``predicted (n,)`` whose
    outcomes have ``true_odds x`` the null's odds (1: the null)."""
    q = null_probability(predicted, null_odds)
    pmf = count_pmf(q, true_odds)
    y = np.arange(pmf.size)
    up = cusum_arl(pmf, count_llr(y, ratio, q), h, grid)
    down = cusum_arl(pmf, count_llr(y, 1.0 / ratio, q), h, grid)
    return up, down


def two_sided_arl(predicted: ArrayLike, ratio: float, h: float, null_odds: float = 1.0, grid: int = 4000) -> float:
    """In-control ARL of the two charts together, ``1 / (1 / ARL_upper + 1 / ARL_lower)``."""
    up, down = chart_arls(predicted, ratio, h, null_odds, 1.0, grid)
    return 1.0 / (1.0 / up + 1.0 / down)


def rate_threshold(
    predicted: ArrayLike, ratio: float = DEFAULT_RATIO, target_arl: float = DEFAULT_ARL0, grid: int = 3000
) -> float:
    """``h`` whose two-sided in-control ARL is ``target_arl`` for batches like ``predicted (n,)``
    (``grid`` points of the chain: 3,000 put the ARL within ~1-2% of a finer grid's)."""
    if target_arl <= 1:
        raise EvaluationInputError(f"target_arl must be > 1, got {target_arl}")
    return float(
        scipy.optimize.brentq(
            lambda h: two_sided_arl(predicted, ratio, h, grid=grid) - target_arl, 0.05, 40.0, xtol=1e-3
        )
    )


def poisson_like(mean: float, pairs: int) -> FloatArray:
    """``(pairs,)`` equal predictions summing to ``mean``: a batch whose count is ~ Poisson(mean)."""
    if mean <= 0 or pairs < 1 or mean >= pairs:
        raise EvaluationInputError(f"need 0 < mean < pairs, got {mean}, {pairs}")
    return np.full(pairs, mean / pairs)


def null_odds_mle(predicted: ArrayLike, observed: ArrayLike) -> float:
    """Maximum-likelihood ``c`` of ``odds(y) = c odds(p)`` over ``predicted (n,)`` and their
    outcomes ``observed (n,)`` (the root of the score ``sum(y - q(c))``, monotone in ``log c``);
    ``c`` is kept in ``[exp(-10), exp(10)]``, its bound when no outcome or every outcome occurred."""
    p = np.asarray(predicted, dtype=float)
    y = np.asarray(observed, dtype=float)
    if p.shape != y.shape or p.ndim != 1 or p.size == 0:
        raise EvaluationInputError(f"need equal non-empty (n,) predictions and outcomes: {p.shape}, {y.shape}")

    def score(t: float) -> float:
        return float((y - null_probability(p, math.exp(t))).sum())

    if score(-10.0) <= 0:
        return math.exp(-10.0)
    if score(10.0) >= 0:
        return math.exp(10.0)
    return math.exp(scipy.optimize.brentq(score, -10.0, 10.0, xtol=1e-8))


def null_odds_estimate(predicted: ArrayLike, observed: ArrayLike) -> tuple[float, float, float]:
    """Maximum-likelihood ``c`` of ``odds(y) = c odds(p)`` over pooled sends, with a 95% profile-likelihood interval.

    Args:
        predicted: ``(n,)`` predictions of the sends.
        observed: ``(n,)`` their outcomes.

    Returns:
        ``(c, lower, upper)``.
    """
    p = np.asarray(predicted, dtype=float)
    y = np.asarray(observed, dtype=float)

    def loglik(log_c: float) -> float:
        q = null_probability(p, math.exp(log_c))
        return float((y * np.log(q) + (1.0 - y) * np.log1p(-q)).sum())

    # the score in log c is sum(y - q): monotone, so the MLE is its root
    best = scipy.optimize.brentq(lambda t: float((y - null_probability(p, math.exp(t))).sum()), -10.0, 10.0)
    top = loglik(best)
    cut = scipy.stats.chi2.ppf(0.95, 1) / 2.0
    lower = scipy.optimize.brentq(lambda t: top - loglik(t) - cut, best - 10.0, best)
    upper = scipy.optimize.brentq(lambda t: top - loglik(t) - cut, best, best + 10.0)
    return math.exp(best), math.exp(lower), math.exp(upper)
