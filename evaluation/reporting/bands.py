"""Means over seeds with 95% confidence bands, and paired differences between methods.

A method's per-batch measure is an ``(S, B)`` array: ``S`` seeds (independent repetitions of
the experiment), ``B`` batches. The band of a batch is the 95% confidence interval of the mean
over seeds, Student's t: ``mean ± t_{0.975, n-1} · s / sqrt(n)`` with ``n`` the seeds whose value
is finite there and ``s`` their sample standard deviation. One seed gives no band (nan width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from banditlp.arrays import FloatArray

#: The confidence level of every band and interval on the page.
CONFIDENCE = 0.95


@dataclass(frozen=True, eq=False)
class Band:
    """Mean over seeds of a per-batch measure and its confidence band.

    Attributes:
        mean: ``(B,)`` mean over the seeds with a finite value (nan where none has one).
        low: ``(B,)`` lower end of the band (nan where fewer than two seeds have a value).
        high: ``(B,)`` upper end of the band (nan likewise).
        n_seeds: ``(B,)`` number of seeds with a finite value.
    """

    mean: FloatArray
    low: FloatArray
    high: FloatArray
    n_seeds: FloatArray


def t_half_width(std: FloatArray, n: FloatArray) -> FloatArray:
    """Half-width of the t interval of a mean, elementwise.

    Args:
        std: Sample standard deviations (ddof=1), any shape.
        n: Sample sizes, the same shape.

    Returns:
        ``t_{(1+CONFIDENCE)/2, n-1} · std / sqrt(n)``; nan where ``n < 2``.
    """
    std = np.asarray(std, dtype=float)
    n = np.asarray(n, dtype=float)
    valid = n >= 2
    safe_n = np.where(valid, n, 2.0)
    quantile = np.asarray(stats.t.ppf(0.5 + CONFIDENCE / 2, safe_n - 1), dtype=float)
    return np.where(valid, quantile * std / np.sqrt(safe_n), math.nan)


def band(values: FloatArray) -> Band:
    """Mean and confidence band over seeds, per batch.

    Args:
        values: ``(S, B)`` per-seed, per-batch values; nan marks a missing value.

    Returns:
        The band, each series ``(B,)``.
    """
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    n = finite.sum(axis=0).astype(float)
    filled = np.where(finite, values, 0.0)
    mean = np.divide(filled.sum(axis=0), n, out=np.full(n.shape, math.nan), where=n > 0)
    deviations = np.where(finite, values - mean, 0.0)
    variance = np.divide((deviations**2).sum(axis=0), n - 1, out=np.full(n.shape, math.nan), where=n > 1)
    half = t_half_width(np.sqrt(variance), n)
    return Band(mean=mean, low=mean - half, high=mean + half, n_seeds=n)


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its confidence interval.

    Attributes:
        mean: The mean (nan when no seed has a finite value).
        half_width: Half-width of the interval (nan with fewer than two seeds).
        n: The number of seeds behind it.
    """

    mean: float
    half_width: float
    n: int

    def format(self, digits: int | None = None) -> str:
        """``mean ± half_width`` (just the mean when there is no interval; ``n/a`` for no mean).

        Args:
            digits: Decimals; by default 3 below 10, 2 below 100, 1 above (about four significant).
        """
        if math.isnan(self.mean):
            return "n/a"
        if digits is None:
            digits = decimals_for(self.mean)
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def decimals_for(value: float) -> int:
    """Decimals that show about four significant digits: 3 below 10, 2 below 100, else 1."""
    size = abs(value)
    return 3 if size < 10 else 2 if size < 100 else 1


def interval(samples: FloatArray) -> Interval:
    """Mean and confidence interval of per-seed values.

    Args:
        samples: ``(S,)`` one value per seed; nan values are left out.

    Returns:
        The interval over the finite values.
    """
    samples = np.asarray(samples, dtype=float).ravel()
    finite = samples[np.isfinite(samples)]
    n = finite.size
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    std = float(finite.std(ddof=1)) if n > 1 else math.nan
    half = float(t_half_width(np.array(std), np.array(float(n))))
    return Interval(float(finite.mean()), half, n)
