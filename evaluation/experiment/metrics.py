"""The measures of one batch of one method: pure functions of arrays, vectorised over pairs.

Every measure is taken under the TRUE probabilities of the simulated world and on the method's
plan ``x`` (the fractional allocation its sends are drawn from, ``E[sent] = x``): what the
policy controls, without the Bernoulli noise of the outcomes. ``E`` is the number of candidate
pairs of the batch, ``P`` the number of providers, ``I`` the number of items.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray, IntArray, weighted_bincount
from evaluation.errors import EvaluationInputError

#: Bins of :func:`calibration_error` and :func:`calibration_curve`.
CALIBRATION_BINS = 10


def expected_reward(x: ArrayLike, true_reward: ArrayLike) -> float:
    """Expected reward of a plan, ``sum_e x_e r_e``.

    Args:
        x: ``(E,)`` plan in [0, 1].
        true_reward: ``(E,)`` true expected reward of a send (``p_conversion * value``).

    Returns:
        The expected reward.
    """
    return float(np.asarray(x, dtype=float) @ np.asarray(true_reward, dtype=float))


def unsub_usage(x: ArrayLike, true_unsub: ArrayLike, budget: float) -> float:
    """Expected unsubscriptions of a plan over the budget, ``sum_e x_e p_e / B``; above 1 is a violation.

    Args:
        x: ``(E,)`` plan.
        true_unsub: ``(E,)`` true unsubscription probability of a send.
        budget: The budget ``B > 0``.

    Returns:
        The usage.

    Raises:
        EvaluationInputError: if ``budget`` is not positive and finite.
    """
    if not (math.isfinite(budget) and budget > 0):
        raise EvaluationInputError(f"budget must be positive and finite, got {budget}")
    return float(np.asarray(x, dtype=float) @ np.asarray(true_unsub, dtype=float)) / budget


def provider_exposure(x: ArrayLike, pair_provider: ArrayLike, n_providers: int) -> FloatArray:
    """``(P,)`` expected sends per provider, ``sum_{e of p} x_e``.

    Args:
        x: ``(E,)`` plan.
        pair_provider: ``(E,)`` int provider of each pair, in ``[0, P)``.
        n_providers: ``P``.
    """
    return weighted_bincount(np.asarray(pair_provider, dtype=np.int64), np.asarray(x, dtype=float), n_providers)


def provider_min_shortfall(exposure: ArrayLike, provider_min: ArrayLike) -> float:
    """The largest relative shortfall below a provider minimum; 0 when every minimum is met.

    ``max_p max(0, (lo_p - exposure_p) / lo_p)`` over the providers with ``lo_p > 0``.

    Args:
        exposure: ``(P,)`` expected sends per provider.
        provider_min: ``(P,)`` minimums (0 for none).

    Returns:
        A number in [0, 1].
    """
    lo = np.asarray(provider_min, dtype=float)
    has = lo > 0
    if not has.any():
        return 0.0
    short = (lo[has] - np.asarray(exposure, dtype=float)[has]) / lo[has]
    return float(max(0.0, short.max()))


def provider_max_excess(exposure: ArrayLike, provider_max: ArrayLike) -> float:
    """The largest relative excess above a provider maximum; 0 when every maximum is met.

    ``max_p max(0, (exposure_p - hi_p) / hi_p)`` over the providers with a finite ``hi_p > 0``.

    Args:
        exposure: ``(P,)`` expected sends per provider.
        provider_max: ``(P,)`` maximums (``inf`` for none).

    Returns:
        A number >= 0.
    """
    hi = np.asarray(provider_max, dtype=float)
    has = np.isfinite(hi) & (hi > 0)
    if not has.any():
        return 0.0
    excess = (np.asarray(exposure, dtype=float)[has] - hi[has]) / hi[has]
    return float(max(0.0, excess.max()))


def item_exposure(x: ArrayLike, pair_item: ArrayLike, n_items: int) -> FloatArray:
    """``(I,)`` expected sends per item, ``sum_{e of i} x_e``.

    Args:
        x: ``(E,)`` plan.
        pair_item: ``(E,)`` int item of each pair, in ``[0, I)``.
        n_items: ``I``.
    """
    return weighted_bincount(np.asarray(pair_item, dtype=np.int64), np.asarray(x, dtype=float), n_items)


def top_k_items(exposure: ArrayLike, k: int) -> IntArray:
    """The ``k`` items with the largest exposure, ties to the lower item id.

    Args:
        exposure: ``(I,)`` exposure per item.
        k: How many (clipped to ``I``).

    Returns:
        ``(min(k, I),)`` int64 item ids, largest exposure first.
    """
    e = np.asarray(exposure, dtype=float)
    order = np.lexsort((np.arange(e.size), -e))
    return order[: min(int(k), e.size)].astype(np.int64)


def overlap_at_k(previous_exposure: ArrayLike, exposure: ArrayLike, k: int) -> float:
    """Overlap@K of two consecutive allocations: the share of this batch's top-K items (by
    expected sends) that were also among the previous batch's top-K.

    Items are compared rather than (user, item) pairs because every batch draws new candidate
    lists, so a user's items of two batches need not overlap at all; the item exposures of two
    batches are comparable (each item is a candidate of about the same share of users).

    Args:
        previous_exposure: ``(I,)`` the previous batch's exposure per item.
        exposure: ``(I,)`` this batch's.
        k: K >= 1.

    Returns:
        ``|top_K(previous) ∩ top_K(this)| / min(K, I)`` in [0, 1].

    Raises:
        EvaluationInputError: if ``k < 1`` or the shapes differ.
    """
    prev = np.asarray(previous_exposure, dtype=float)
    cur = np.asarray(exposure, dtype=float)
    if k < 1 or prev.shape != cur.shape or prev.ndim != 1 or prev.size == 0:
        raise EvaluationInputError(f"need k >= 1 and equal 1-D exposures, got k={k}, {prev.shape}, {cur.shape}")
    a, b = top_k_items(prev, k), top_k_items(cur, k)
    return float(np.intersect1d(a, b).size) / a.size


def allocation_variance(plans: ArrayLike) -> float:
    """Mean over pairs of the variance of ``x_e`` across plans of the same batch.

    The plans are the method's decisions for one batch and one model version under independent
    draws of its randomness (Thompson samples, random scores): 0 for a deterministic method,
    at most 0.25 (a pair sent by half the plans).

    Args:
        plans: ``(R, E)`` R >= 1 plans.

    Returns:
        ``mean_e Var_r(x_{r,e})`` (population variance); 0 for a single plan.
    """
    p = np.asarray(plans, dtype=float)
    if p.ndim != 2 or p.shape[0] < 1:
        raise EvaluationInputError(f"plans must be (R, E) with R >= 1, got {p.shape}")
    return float(p.var(axis=0).mean()) if p.shape[1] else 0.0


def weighted_mean(values: ArrayLike, weights: ArrayLike) -> float:
    """``sum(w v) / sum(w)``; nan when the weights sum to 0 (e.g. the mean over chosen pairs, weights ``x``)."""
    w = np.asarray(weights, dtype=float)
    total = float(w.sum())
    return float(w @ np.asarray(values, dtype=float)) / total if total > 0 else math.nan


def _equal_mass_bins(pred: FloatArray, weights: FloatArray, n_bins: int) -> IntArray:
    # Bin b holds the pairs whose cumulative weight (in order of prediction) falls in
    # [b/n_bins, (b+1)/n_bins) of the total: equal-mass bins, fine where predictions crowd
    # (a 1% outcome puts every prediction in the first of equal-width bins).
    order = np.argsort(pred, kind="stable")
    cum = np.cumsum(weights[order]) - 0.5 * weights[order]
    bins = np.empty(pred.size, dtype=np.int64)
    bins[order] = np.minimum((cum / weights.sum() * n_bins).astype(np.int64), n_bins - 1)
    return bins


def calibration_curve(
    pred: ArrayLike, truth: ArrayLike, weights: ArrayLike | None = None, n_bins: int = CALIBRATION_BINS
) -> tuple[FloatArray, FloatArray]:
    """Mean predicted and mean TRUE probability per equal-mass bin of the predictions.

    Args:
        pred: ``(n,)`` predicted probabilities.
        truth: ``(n,)`` the world's true probabilities of the same pairs.
        weights: ``(n,)`` non-negative weights (e.g. ``x`` for the chosen pairs); ones when None.
        n_bins: B >= 1.

    Returns:
        ``(predicted (B,), true (B,))``; nan in a bin without weight (and everywhere when the
        weights sum to 0).
    """
    p = np.asarray(pred, dtype=float)
    t = np.asarray(truth, dtype=float)
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=float)
    if p.shape != t.shape or p.shape != w.shape or p.ndim != 1 or n_bins < 1:
        raise EvaluationInputError(f"pred, truth and weights must be equal 1-D, got {p.shape}, {t.shape}, {w.shape}")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise EvaluationInputError("weights must be finite and >= 0")
    if p.size == 0 or w.sum() <= 0:
        return np.full(n_bins, math.nan), np.full(n_bins, math.nan)
    bins = _equal_mass_bins(p, w, n_bins)
    mass = weighted_bincount(bins, w, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.where(mass > 0, weighted_bincount(bins, w * p, n_bins) / mass, math.nan)
        mean_true = np.where(mass > 0, weighted_bincount(bins, w * t, n_bins) / mass, math.nan)
    return mean_pred, mean_true


def calibration_error(
    pred: ArrayLike, truth: ArrayLike, weights: ArrayLike | None = None, n_bins: int = CALIBRATION_BINS
) -> float:
    """Expected calibration error against the TRUE probabilities, on equal-mass bins.

    ``sum_b (m_b / m) |mean_w(pred in b) - mean_w(truth in b)|`` with ``m_b`` the weight of bin
    ``b``. The simulator knows each pair's true probability, so the error is measured against it
    rather than against drawn outcomes (no Bernoulli noise; a 1% outcome has too few positives
    per batch for an outcome-based ECE).

    Args:
        pred: ``(n,)`` predicted probabilities.
        truth: ``(n,)`` true probabilities.
        weights: ``(n,)`` weights (``x`` for the chosen pairs); ones when None.
        n_bins: B >= 1.

    Returns:
        The error (nan when the weights sum to 0).
    """
    p = np.asarray(pred, dtype=float)
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=float)
    mean_pred, mean_true = calibration_curve(p, truth, w, n_bins)
    total = float(w.sum())
    if total <= 0:
        return math.nan
    mass = weighted_bincount(_equal_mass_bins(p, w, n_bins), w, n_bins)
    gap = np.where(mass > 0, np.abs(np.nan_to_num(mean_pred) - np.nan_to_num(mean_true)), 0.0)
    return float(mass @ gap) / total
