"""What a run of send batches earned, spent and explored, against the oracle.

A run is a list of :class:`BatchOutcome` records, one per batch, in batch order. Each record
holds the decisions of one batch over some pairs (all candidate pairs with fractional or 0/1
weights, or only the chosen pairs with weight 1), the TRUE expected reward and unsubscription
probability of those pairs (known in a simulator), the drawn outcomes, the oracle's objective and
the batch's constraint right-hand sides. :func:`summarise` turns the list into per-batch series
and totals; :func:`summary_rows` formats them for a table.

Expected quantities (not realised ones) measure regret and constraint usage: they are what the
policy controls, while realised outcomes add Bernoulli noise that hides the comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray, IntArray, weighted_bincount
from evaluation.errors import EvaluationInputError

# Relative slack before a constraint counts as violated (LP solutions sit on their bounds up to
# solver tolerance).
VIOLATION_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False, kw_only=True)
class BatchOutcome:
    """One batch of a run: decisions, their true expectations, outcomes and constraints.

    ``n`` is the number of pairs recorded (all candidates, or only the chosen ones); ``P`` the
    number of providers. Arrays are converted to float/int64 and made read-only.

    Attributes:
        batch_id: The batch.
        x: ``(n,)`` decision weight in [0, 1] of each pair (1 = sent; fractional for an LP).
        pair_item: ``(n,)`` int item id of each pair.
        pair_provider: ``(n,)`` int provider of each pair, in ``[0, P)``.
        expected_reward: ``(n,)`` TRUE expected reward of a send (p_conversion × value).
        expected_unsub: ``(n,)`` TRUE unsubscription probability of a send.
        realised_value: ``(n,)`` drawn value of each sent pair (0 where not sent or not converted).
        realised_unsub: ``(n,)`` 1 where a sent pair's user unsubscribed, else 0.
        oracle_objective: The oracle LP's expected reward on this batch.
        unsub_budget: The budget on expected unsubscriptions (> 0).
        provider_min: ``(P,)`` minimum exposure per provider (0 for none).
        provider_max: ``(P,)`` maximum exposure per provider (``inf`` for none).
        mean_entropy: Mean over users of the entropy of the policy's selection distribution
            (see :func:`mean_user_entropy`); nan when the policy does not report it.
        mean_posterior_std: Mean posterior std of the policy's scores (the pipeline reports its
            conversion head's, on the logit scale); nan if unknown.
        x_planned: ``(n,)`` or None: the fractional allocation ``x`` was sampled from (a
            randomised rounding has ``E[x] = x_planned``). When given, constraint usage
            (unsubscription budget, provider exposure) is measured on it: in expectation over
            the rounding, which is what the LP promises; the sends themselves vary around it.
    """

    batch_id: str
    x: FloatArray
    pair_item: IntArray
    pair_provider: IntArray
    expected_reward: FloatArray
    expected_unsub: FloatArray
    realised_value: FloatArray
    realised_unsub: FloatArray
    oracle_objective: float
    unsub_budget: float
    provider_min: FloatArray
    provider_max: FloatArray
    mean_entropy: float = math.nan
    mean_posterior_std: float = math.nan
    x_planned: FloatArray | None = None

    def __post_init__(self) -> None:
        """Convert and validate the arrays.

        Raises:
            EvaluationInputError: on mismatched shapes, non-finite values, ``x`` outside [0, 1],
                providers out of range, a non-positive budget or minimums above maximums.
        """
        per_pair_float = (
            "x",
            "expected_reward",
            "expected_unsub",
            "realised_value",
            "realised_unsub",
        )
        per_pair_int = ("pair_item", "pair_provider")
        for name in per_pair_float:
            object.__setattr__(self, name, np.array(getattr(self, name), dtype=float))
        for name in per_pair_int:
            object.__setattr__(self, name, np.array(getattr(self, name), dtype=np.int64))
        for name in ("provider_min", "provider_max"):
            object.__setattr__(self, name, np.array(getattr(self, name), dtype=float))
        n = self.x.shape
        if len(n) != 1:
            raise EvaluationInputError(f"{self.batch_id}: x must be 1-D, got shape {n}")
        for name in per_pair_float + per_pair_int:
            shape = getattr(self, name).shape
            if shape != n:
                raise EvaluationInputError(f"{self.batch_id}: {name} must have shape {n} like x, got {shape}")
        for name in per_pair_float:
            if not np.all(np.isfinite(getattr(self, name))):
                raise EvaluationInputError(f"{self.batch_id}: {name} has NaN or inf")
        if np.any(self.x < 0) or np.any(self.x > 1 + VIOLATION_TOLERANCE):
            raise EvaluationInputError(f"{self.batch_id}: x must lie in [0, 1]")
        if self.x_planned is not None:
            planned = np.array(self.x_planned, dtype=float)
            if (
                planned.shape != n
                or not np.all(np.isfinite(planned))
                or np.any(planned < 0)
                or np.any(planned > 1 + VIOLATION_TOLERANCE)
            ):
                raise EvaluationInputError(f"{self.batch_id}: x_planned must be finite in [0, 1] with shape {n}")
            planned.flags.writeable = False
            object.__setattr__(self, "x_planned", planned)
        n_providers = self.provider_min.shape
        if len(n_providers) != 1 or self.provider_max.shape != n_providers:
            raise EvaluationInputError(
                f"{self.batch_id}: provider_min and provider_max must be 1-D of equal length, "
                f"got {self.provider_min.shape} and {self.provider_max.shape}"
            )
        if self.pair_provider.size and (self.pair_provider.min() < 0 or self.pair_provider.max() >= n_providers[0]):
            raise EvaluationInputError(f"{self.batch_id}: pair_provider must be in [0, {n_providers[0]})")
        if not (np.all(np.isfinite(self.provider_min)) and np.all(self.provider_min >= 0)):
            raise EvaluationInputError(f"{self.batch_id}: provider_min must be finite and >= 0")
        if np.any(self.provider_max < self.provider_min) or np.any(np.isnan(self.provider_max)):
            raise EvaluationInputError(f"{self.batch_id}: provider_max must be >= provider_min")
        if not (math.isfinite(self.oracle_objective) and self.unsub_budget > 0):
            raise EvaluationInputError(
                f"{self.batch_id}: oracle_objective must be finite and unsub_budget > 0, "
                f"got {self.oracle_objective} and {self.unsub_budget}"
            )
        for name in per_pair_float + per_pair_int + ("provider_min", "provider_max"):
            getattr(self, name).flags.writeable = False

    @property
    def x_usage(self) -> FloatArray:
        """``(n,)`` the weights constraint usage is measured on: ``x_planned`` if given, else ``x``."""
        return self.x if self.x_planned is None else self.x_planned

    @property
    def provider_exposure(self) -> FloatArray:
        """``(P,)`` sum of :attr:`x_usage` per provider."""
        return weighted_bincount(self.pair_provider, self.x_usage, self.provider_min.shape[0])


@dataclass(frozen=True, eq=False)
class RunSummary:
    """Per-batch series (each ``(B,)``, batch order) and totals of a run.

    Attributes:
        batch_ids: ``(B,)`` the batches.
        expected_reward: True expected reward of the decisions, ``sum(x * expected_reward)``.
        oracle_reward: The oracle's objective.
        realised_reward: ``sum(x * realised_value)``.
        expected_unsub: ``sum(x * expected_unsub)``.
        realised_unsubs: ``sum(x * realised_unsub)``.
        unsub_budget: The budget.
        unsub_usage: ``expected_unsub / unsub_budget``; above 1 is a violation.
        provider_min_ratio: Worst provider's ``exposure / provider_min`` over providers with a
            positive minimum (nan when none has one); below 1 is a violation.
        provider_max_ratio: Worst provider's ``exposure / provider_max`` over providers with a
            finite maximum (nan when none); above 1 is a violation.
        providers_below_min: Number of providers under their minimum (beyond tolerance).
        sends: ``sum(x)``.
        distinct_items: Number of distinct items with ``x > 0``.
        mean_entropy: As reported per batch (nan where unknown).
        mean_posterior_std: As reported per batch (nan where unknown).
    """

    batch_ids: tuple[str, ...]
    expected_reward: FloatArray
    oracle_reward: FloatArray
    realised_reward: FloatArray
    expected_unsub: FloatArray
    realised_unsubs: FloatArray
    unsub_budget: FloatArray
    unsub_usage: FloatArray
    provider_min_ratio: FloatArray
    provider_max_ratio: FloatArray
    providers_below_min: FloatArray
    sends: FloatArray
    distinct_items: FloatArray
    mean_entropy: FloatArray
    mean_posterior_std: FloatArray

    @property
    def n_batches(self) -> int:
        """Number of batches ``B``."""
        return len(self.batch_ids)

    @property
    def cumulative_expected_reward(self) -> FloatArray:
        """``(B,)`` running total of :attr:`expected_reward`."""
        return np.cumsum(self.expected_reward)

    @property
    def cumulative_oracle_reward(self) -> FloatArray:
        """``(B,)`` running total of :attr:`oracle_reward`."""
        return np.cumsum(self.oracle_reward)

    @property
    def cumulative_realised_reward(self) -> FloatArray:
        """``(B,)`` running total of :attr:`realised_reward`."""
        return np.cumsum(self.realised_reward)

    @property
    def cumulative_regret(self) -> FloatArray:
        """``(B,)`` oracle minus policy, cumulative expected reward.

        Negative entries are possible when the policy violates constraints the oracle keeps.
        """
        return self.cumulative_oracle_reward - self.cumulative_expected_reward

    @property
    def total_regret(self) -> float:
        """Final cumulative regret."""
        return float(self.cumulative_regret[-1])

    @property
    def reward_fraction(self) -> float:
        """Policy's total expected reward as a fraction of the oracle's."""
        total_oracle = float(self.oracle_reward.sum())
        return float(self.expected_reward.sum()) / total_oracle if total_oracle > 0 else math.nan

    @property
    def budget_violations(self) -> int:
        """Batches whose expected unsubscriptions exceed the budget beyond tolerance."""
        return int(np.sum(self.unsub_usage > 1 + VIOLATION_TOLERANCE))

    @property
    def provider_violations(self) -> int:
        """Batches where some provider is outside its [minimum, maximum] beyond tolerance."""
        over = np.nan_to_num(self.provider_max_ratio, nan=0.0) > 1 + VIOLATION_TOLERANCE
        return int(np.sum((self.providers_below_min > 0) | over))


def summarise(outcomes: list[BatchOutcome]) -> RunSummary:
    """Summarise a run, batch by batch.

    Args:
        outcomes: One record per batch, in batch order (at least one).

    Returns:
        The per-batch series; cumulative series and totals are properties of it.

    Raises:
        EvaluationInputError: if ``outcomes`` is empty.
    """
    if not outcomes:
        raise EvaluationInputError("summarise needs at least one batch outcome")

    def series(values: list[float]) -> FloatArray:
        array = np.asarray(values, dtype=float)
        array.flags.writeable = False
        return array

    min_ratio: list[float] = []
    max_ratio: list[float] = []
    below: list[float] = []
    for outcome in outcomes:  # one iteration per batch; everything inside is vectorised
        exposure = outcome.provider_exposure
        has_min = outcome.provider_min > 0
        has_max = np.isfinite(outcome.provider_max)
        min_ratio.append(
            float(np.min(exposure[has_min] / outcome.provider_min[has_min])) if has_min.any() else math.nan
        )
        max_ratio.append(
            float(np.max(exposure[has_max] / np.maximum(outcome.provider_max[has_max], 1e-300)))
            if has_max.any()
            else math.nan
        )
        below.append(float(np.sum(exposure < outcome.provider_min * (1 - VIOLATION_TOLERANCE) - 1e-9)))
    expected_unsub = series([float(o.x_usage @ o.expected_unsub) for o in outcomes])
    budget = series([o.unsub_budget for o in outcomes])
    return RunSummary(
        batch_ids=tuple(o.batch_id for o in outcomes),
        expected_reward=series([float(o.x @ o.expected_reward) for o in outcomes]),
        oracle_reward=series([o.oracle_objective for o in outcomes]),
        realised_reward=series([float(o.x @ o.realised_value) for o in outcomes]),
        expected_unsub=expected_unsub,
        realised_unsubs=series([float(o.x @ o.realised_unsub) for o in outcomes]),
        unsub_budget=budget,
        unsub_usage=series((expected_unsub / budget).tolist()),
        provider_min_ratio=series(min_ratio),
        provider_max_ratio=series(max_ratio),
        providers_below_min=series(below),
        sends=series([float(o.x.sum()) for o in outcomes]),
        distinct_items=series([float(np.unique(o.pair_item[o.x > 0]).size) for o in outcomes]),
        mean_entropy=series([o.mean_entropy for o in outcomes]),
        mean_posterior_std=series([o.mean_posterior_std for o in outcomes]),
    )


def summary_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """Format a summary as ``(label, value)`` rows for a two-column table (e.g. rich.Table).

    Args:
        summary: The run's summary.

    Returns:
        Rows in reading order: reward and regret, constraint usage, exploration.
    """
    b = summary.n_batches
    total_oracle = float(summary.oracle_reward.sum())
    regret = summary.total_regret
    regret_share = f" ({regret / total_oracle:.1%} of oracle)" if total_oracle > 0 else ""
    return [
        ("batches", str(b)),
        ("cumulative expected reward", f"{summary.expected_reward.sum():.3f}"),
        ("oracle cumulative expected reward", f"{total_oracle:.3f}"),
        ("cumulative regret", f"{regret:.3f}{regret_share}"),
        ("reward / oracle", f"{summary.reward_fraction:.3f}"),
        ("cumulative realised reward", f"{summary.realised_reward.sum():.3f}"),
        (
            "unsub budget usage mean / max (true probabilities)",
            f"{summary.unsub_usage.mean():.3f} / {summary.unsub_usage.max():.3f}",
        ),
        ("batches over unsub budget (true probabilities)", f"{summary.budget_violations} of {b}"),
        ("realised unsubscriptions", f"{summary.realised_unsubs.sum():.0f}"),
        ("worst provider exposure / minimum", _nan_aware(np.min, summary.provider_min_ratio)),
        ("batches with a provider out of bounds", f"{summary.provider_violations} of {b}"),
        ("distinct items sent per batch (mean)", f"{summary.distinct_items.mean():.1f}"),
        ("mean selection entropy", _nan_aware(np.mean, summary.mean_entropy)),
        ("mean posterior std", _nan_aware(np.mean, summary.mean_posterior_std)),
    ]


def mean_user_entropy(probabilities: ArrayLike, pair_user: ArrayLike) -> float:
    """Mean over users of the entropy (nats) of each user's selection distribution.

    The exploration measure of a randomised policy: e.g. Thompson-sampling selection
    frequencies of each user's candidates. A deterministic policy has entropy 0; uniform over
    ``K`` candidates has ``log K``.

    Args:
        probabilities: ``(E,)`` selection probability of each pair; each user's sum to 1
            (normalised here if they do not, users with total 0 are skipped).
        pair_user: ``(E,)`` int user index of each pair.

    Returns:
        The mean entropy over users with positive total probability (nan if none).

    Raises:
        EvaluationInputError: on mismatched shapes or negative / non-finite probabilities.
    """
    p = np.asarray(probabilities, dtype=float)
    users = np.asarray(pair_user, dtype=np.int64)
    if p.ndim != 1 or users.shape != p.shape:
        raise EvaluationInputError(
            f"probabilities and pair_user must be 1-D of equal length, got {p.shape}, {users.shape}"
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise EvaluationInputError("probabilities must be finite and >= 0")
    if p.size == 0:
        return math.nan
    totals = weighted_bincount(users, p)
    q = np.divide(p, totals[users], out=np.zeros_like(p), where=totals[users] > 0)
    # 0 log 0 = 0.
    terms = np.where(q > 0, -q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    entropy = weighted_bincount(users, terms, totals.size)
    active = totals > 0
    return float(entropy[active].mean()) if active.any() else math.nan


def _nan_aware(reduce: Callable[[FloatArray], float], values: FloatArray) -> str:
    # Exploration measures are nan for policies that do not report them: show "n/a".
    finite = values[~np.isnan(values)]
    return "n/a" if finite.size == 0 else f"{float(reduce(finite)):.3f}"
