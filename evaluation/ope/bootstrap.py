"""Percentile bootstrap intervals over rounds, and :func:`evaluate`, the entry point of off-policy evaluation.

Rounds are the resampled unit: the pairs of one round share a user and a decision, so they are
not independent of each other, while rounds are (as far as the log tells). A resample is a vector
of multinomial counts of the ``n`` rounds; every estimator of every outcome is evaluated on the
same resamples, with one matrix product per chunk of resamples.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray, IntArray
from evaluation.errors import OPEInputError
from evaluation.ope.data import LoggedPairs, check_outcome_names, check_predicted, check_target, outcome_pairs
from evaluation.ope.estimators import ESTIMATORS, Estimator

#: Largest number of entries of one chunk of the ``(B, n)`` count matrix (64 MiB of float64).
_CHUNK_ENTRIES = 1 << 23


@dataclass(frozen=True)
class Estimate:
    """One estimate and its bootstrap interval.

    Attributes:
        value: The estimate on the whole log.
        ci: ``(low, high)`` percentile bootstrap interval at level ``1 - alpha``.
        n_rounds: The rounds of the log it was computed from.
    """

    value: float
    ci: tuple[float, float]
    n_rounds: int


def bootstrap_counts(n_rounds: int, n_bootstrap: int, rng: np.random.Generator) -> Iterator[IntArray]:
    """Chunks of the ``(n_bootstrap, n_rounds)`` matrix of multinomial counts of rounds, ``(b, n_rounds)`` each.

    Each row sums to ``n_rounds``: a resample of the rounds with replacement. The chunks are
    sized to keep one chunk under 64 MiB, and are drawn in order from ``rng``.
    """
    chunk = max(1, min(n_bootstrap, _CHUNK_ENTRIES // n_rounds))
    uniform = np.full(n_rounds, 1.0 / n_rounds)
    for start in range(0, n_bootstrap, chunk):
        yield rng.multinomial(n_rounds, uniform, size=min(chunk, n_bootstrap - start)).astype(np.int64)


def percentile_interval(samples: FloatArray, alpha: float) -> tuple[float, float]:
    """The ``alpha / 2`` and ``1 - alpha / 2`` quantiles of ``(B,)`` bootstrap estimates."""
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _resolve_estimators(estimators: Sequence[str | Estimator] | None) -> tuple[list[Estimator], bool]:
    """The estimator instances (defaults for names) and whether the caller named them."""
    if estimators is None:
        return [cls() for cls in ESTIMATORS.values()], False
    if isinstance(estimators, str):
        estimators = (estimators,)  # one name, not its letters
    resolved: list[Estimator] = []
    for item in estimators:
        if isinstance(item, Estimator):
            resolved.append(item)
        elif isinstance(item, str) and item in ESTIMATORS:
            resolved.append(ESTIMATORS[item]())
        else:
            raise OPEInputError(f"unknown estimator {item!r}; known: {sorted(ESTIMATORS)}")
    names = [e.name for e in resolved]
    if len(set(names)) != len(names):
        raise OPEInputError(f"estimators are repeated: {names}")
    if not resolved:
        raise OPEInputError("no estimator to run: estimators is empty")
    return resolved, True


def _check_options(n_bootstrap: int, alpha: float, seed: int) -> None:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 2:
        raise OPEInputError(f"n_bootstrap must be an integer >= 2, got {n_bootstrap!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not (0 < alpha < 1):
        raise OPEInputError(f"alpha must lie in (0, 1), got {alpha!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise OPEInputError(f"seed must be an integer >= 0, got {seed!r}")


def evaluate(
    logged: LoggedPairs,
    target: ArrayLike,
    predicted: Mapping[str, ArrayLike] | None,
    *,
    outcomes: Sequence[str] | None = None,
    estimators: Sequence[str | Estimator] | None = None,
    n_bootstrap: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, dict[str, Estimate]]:
    """Estimate the target's value of each outcome with each estimator, with percentile bootstrap intervals.

    Args:
        logged: The behaviour's log.
        target: ``(m,)`` the target's marginal send probability of each pair, in [0, 1].
        predicted: None, or name -> ``(m,)`` an outcome model's expected outcome of each pair if sent.
        outcomes: The outcomes to evaluate (default: all of the log's).
        estimators: Registry names (their default parameters) or configured :class:`Estimator`
            instances; default: all of :data:`ESTIMATORS`, where the model estimators run for the
            outcomes ``predicted`` has a model of and are skipped, without error, for the others.
        n_bootstrap: Resamples of the rounds, >= 2.
        alpha: The intervals are at level ``1 - alpha``.
        seed: Seed of the resamples; the same seed gives the same intervals.

    Returns:
        outcome -> estimator name -> :class:`Estimate`.

    Raises:
        OPEInputError: on invalid inputs or options, an unknown outcome or estimator, or a model
            estimator named by the caller without a model of one of the outcomes.
    """
    _check_options(n_bootstrap, alpha, seed)
    names = check_outcome_names(logged, outcomes)
    chosen, named = _resolve_estimators(estimators)
    t = check_target(logged, target)
    models = check_predicted(logged, predicted)

    # Every (outcome, estimator)'s statistics are stacked in one (K, n) matrix, rows [start, stop) each.
    blocks: list[tuple[str, Estimator, int, int]] = []
    rows: list[FloatArray] = []
    start = 0
    for outcome in names:
        pairs = outcome_pairs(logged, t, models, outcome, checked=True)
        for estimator in chosen:
            if estimator.needs_predicted and pairs.predicted is None:
                if named:
                    raise OPEInputError(
                        f"estimator {estimator.name!r} needs an outcome model of {outcome!r}: "
                        f"predicted has {'none' if models is None else sorted(models)}"
                    )
                continue
            stats = estimator.round_statistics(pairs)
            rows.append(stats)
            blocks.append((outcome, estimator, start, start + stats.shape[0]))
            start += stats.shape[0]
    statistics = np.concatenate(rows)

    n = logged.n_rounds
    full = statistics.sum(axis=1, keepdims=True)
    values = [float(e.combine(full[a:b], np.array([float(n)]))[0]) for _, e, a, b in blocks]
    samples = np.empty((len(blocks), n_bootstrap))
    done = 0
    for counts in bootstrap_counts(n, n_bootstrap, np.random.default_rng(seed)):
        weights = counts.astype(np.float64)
        totals = statistics @ weights.T
        total_weight = weights.sum(axis=1)
        for i, (_, estimator, a, b) in enumerate(blocks):
            samples[i, done : done + counts.shape[0]] = estimator.combine(totals[a:b], total_weight)
        done += counts.shape[0]

    result: dict[str, dict[str, Estimate]] = {outcome: {} for outcome in names}
    for i, (outcome, estimator, _, _) in enumerate(blocks):
        result[outcome][estimator.name] = Estimate(
            value=values[i], ci=percentile_interval(samples[i], alpha), n_rounds=n
        )
    return result
