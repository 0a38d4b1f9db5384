"""One number per seed from a per-batch measure, the way the summary table and the sweeps read it.

A measure is an ``(S, B)`` array (seeds x batches, nan where missing). Reward-like measures are
summed over the run (cumulative reward), the oracle fraction is read at the last batch, the
unsubscription budget usage is averaged over batches 4-20 (the window the budget criterion is
judged on: after the warm-up), and every other measure is averaged over its batches.
"""

from __future__ import annotations

import math

import numpy as np

from banditlp.arrays import FloatArray

#: Batches (1-based, inclusive) over which the mean budget usage is judged, unless the
#: experiment's config says where its summary starts (``summary_from``).
USAGE_WINDOW = (4, 20)

#: Measures summed over the run.
CUMULATIVE_MEASURES = ("reward", "realised_reward", "oracle_reward")


def usage_window(n_batches: int, first: int = USAGE_WINDOW[0]) -> tuple[int, int]:
    """Batches ``(first, last)``, 1-based inclusive, of the usage window that a run of ``n_batches`` has.

    Args:
        n_batches: The run's batches.
        first: The window's first batch; a run shorter than that is judged on all its batches.

    Returns:
        The window, ``last = min(USAGE_WINDOW[1], n_batches)``.
    """
    if n_batches < first:
        return 1, max(n_batches, 1)
    return first, min(max(USAGE_WINDOW[1], first), n_batches)


def cumulative_per_seed(values: FloatArray) -> FloatArray:
    """``(S,)`` each seed's sum over batches (nan batches count as 0; an all-nan seed is nan)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    totals = np.where(finite, values, 0.0).sum(axis=1)
    return np.where(finite.any(axis=1), totals, math.nan)


def mean_per_seed(values: FloatArray) -> FloatArray:
    """``(S,)`` each seed's mean over its finite batches (nan for a seed without one)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    totals = np.where(finite, values, 0.0).sum(axis=1)
    means: FloatArray = np.divide(totals, count, out=np.full(count.shape, math.nan), where=count > 0)
    return means


def last_per_seed(values: FloatArray) -> FloatArray:
    """``(S,)`` each seed's value at the last batch."""
    return np.asarray(values, dtype=float)[:, -1]


def regret_per_seed(method: FloatArray, oracle: FloatArray) -> FloatArray | None:
    """``(S, B)`` cumulative regret of each seed against the oracle on the same seed, or None.

    Args:
        method: ``(S, B)`` the method's reward.
        oracle: ``(S, B)`` the oracle's reward.

    Returns:
        ``cumsum(oracle - method)`` along batches; None when the shapes differ (seeds cannot be paired).
    """
    if method.shape != oracle.shape:
        return None
    return np.cumsum(np.nan_to_num(oracle - method, nan=0.0), axis=1)


def per_seed_summary(name: str, values: FloatArray, usage_from: int = USAGE_WINDOW[0]) -> tuple[FloatArray, str]:
    """One number per seed for a measure, and what that number is.

    Args:
        name: The measure's name (``"reward"``, ``"unsub_usage"``, ...).
        values: ``(S, B)`` its values.
        usage_from: First batch of the usage window.

    Returns:
        ``(S,)`` values and a description such as ``"cumulative"`` or ``"mean of batches 4–20"``.
    """
    if name in CUMULATIVE_MEASURES:
        return cumulative_per_seed(values), "cumulative"
    if name == "oracle_fraction":
        return last_per_seed(values), "last batch"
    if name == "unsub_usage":
        first, last = usage_window(values.shape[1], usage_from)
        return mean_per_seed(values[:, first - 1 : last]), f"mean of batches {first}–{last}"
    return mean_per_seed(values), "mean over batches"
