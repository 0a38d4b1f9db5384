"""Estimating target policies on a replayed log: every estimator, bootstrap intervals, budget usage, ``ope.json``.

The estimators are ``evaluation.ope``'s (IPS, SNIPS, DM, DR, Switch-DR, DRos), computed from
their per-round statistics, and the intervals are its percentile bootstrap over rounds (the same
resamples for every estimator, outcome and policy, from one seed). With more than one item sent
per user this is the independent per-pair (marginal) IPS family of ``evaluation.ope.estimators``:
each pair is weighted by its own marginal propensity.

Support. ``evaluation.ope.evaluate`` refuses a target that puts mass where the logging policy's
propensity is 0. A Thompson-LP mixture of K plans gives propensity 0 to every pair no plan
sends, and a deterministic target (``nn_lp``, ``greedy``) or ``uniform`` usually sends some of
them. No estimator sees an outcome there: the model estimators (DM, DR, Switch-DR, DRos) use the
outcome model on those pairs (Switch-DR's rule for an unbounded weight), IPS counts nothing and
SNIPS extrapolates the supported pairs' ratio to them. :func:`estimate_policy` does this and
reports the share of the target's expected sends off support (``unsupported_share``); with full
support it is exactly ``evaluation.ope.evaluate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.ope import (
    ESTIMATORS,
    Estimate,
    LoggedPairs,
    OutcomePairs,
    bootstrap_counts,
    logged_value,
    percentile_interval,
)
from streams.replay.errors import ReplayInputError
from streams.replay.log import OUTCOMES, ReplayLog
from streams.replay.targets import TargetSettings, make_target

#: How ope.json names the slate assumption behind every estimate.
SLATE = (
    "independent per-pair IPS: each sent pair weighted by target / logged marginal propensity; "
    "unbiased when a round's outcome is the sum of its pairs' and a pair's outcome does not depend on the others sent"
)


@dataclass(frozen=True)
class PolicyEstimate:
    """One target policy's estimates on one log.

    Attributes:
        name: the policy.
        estimates: outcome -> estimator -> :class:`evaluation.ope.Estimate` (per round: per decision).
        unsupported_share: share of the target's expected sends on pairs the log's propensity is 0.
        expected_sends: the target's expected sends per round.
        budget_usage: batch_id -> budget name -> the target's expected use of it under the logged
            calibrated means, divided by its limit (``sum target * mean / limit``; None without a mean).
    """

    name: str
    estimates: Mapping[str, Mapping[str, Estimate]]
    unsupported_share: float
    expected_sends: float
    budget_usage: Mapping[str, Mapping[str, float | None]]


def estimate_policy(
    logged: LoggedPairs,
    target: FloatArray,
    predicted: Mapping[str, FloatArray],
    *,
    outcomes: Sequence[str] = OUTCOMES,
    n_bootstrap: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[dict[str, dict[str, Estimate]], float]:
    """Every estimator of every outcome for ``target``, with the support rule of the module docstring.

    Args:
        logged: the log.
        target: ``(m,)`` the target's send probability of each pair, in [0, 1].
        predicted: outcome -> ``(m,)`` the outcome model's expected outcome if sent.
        outcomes: the outcomes to estimate.
        n_bootstrap, alpha, seed: the percentile bootstrap (as ``evaluation.ope.evaluate``).

    Returns:
        ``(outcome -> estimator -> Estimate, unsupported share)``.

    Raises:
        ReplayInputError: a target of the wrong shape or outside [0, 1], or bootstrap options out of range.
    """
    t = np.asarray(target, dtype=np.float64)
    if t.shape != (logged.n_pairs,) or not np.all((t >= 0) & (t <= 1)):
        raise ReplayInputError(f"a target must be ({logged.n_pairs},) probabilities in [0, 1]")
    if n_bootstrap < 2 or not 0 < alpha < 1:
        raise ReplayInputError(f"need n_bootstrap >= 2 and 0 < alpha < 1, got {n_bootstrap} and {alpha}")
    sent = logged.sent
    weight = np.zeros(logged.n_pairs)
    np.divide(t, logged.propensity, out=weight, where=sent)  # propensity > 0 on sent pairs (LoggedPairs)
    off = logged.propensity <= 0
    total = float(t.sum())
    unsupported = float(t[off].sum()) / total if total > 0 else 0.0

    estimators = [cls() for cls in ESTIMATORS.values()]
    blocks: list[tuple[str, Any, int, int]] = []
    rows: list[FloatArray] = []
    start = 0
    for outcome in outcomes:
        pairs = OutcomePairs(
            round_index=logged.round_index,
            n_rounds=logged.n_rounds,
            weight=weight,
            reward=np.where(sent, logged.outcomes[outcome], 0.0),
            target=t,
            predicted=np.asarray(predicted[outcome], dtype=np.float64),
        )
        for estimator in estimators:
            stats = estimator.round_statistics(pairs)
            rows.append(stats)
            blocks.append((outcome, estimator, start, start + stats.shape[0]))
            start += stats.shape[0]
    statistics = np.concatenate(rows)
    n = logged.n_rounds
    full = statistics.sum(axis=1, keepdims=True)
    samples = np.empty((len(blocks), n_bootstrap))
    done = 0
    for counts in bootstrap_counts(n, n_bootstrap, np.random.default_rng(seed)):
        weights = counts.astype(np.float64)
        totals = statistics @ weights.T
        for i, (_, estimator, a, b) in enumerate(blocks):
            samples[i, done : done + counts.shape[0]] = estimator.combine(totals[a:b], weights.sum(axis=1))
        done += counts.shape[0]
    result: dict[str, dict[str, Estimate]] = {outcome: {} for outcome in outcomes}
    for i, (outcome, estimator, a, b) in enumerate(blocks):
        value = float(estimator.combine(full[a:b], np.array([float(n)]))[0])
        result[outcome][estimator.name] = Estimate(value, percentile_interval(samples[i], alpha), n)
    return result, unsupported


def budget_usage(log: ReplayLog, target: FloatArray) -> dict[str, dict[str, float | None]]:
    """batch_id -> budget name -> ``sum over the batch's pairs of target * mean(outcome) / limit``."""
    pair_batch = log.batch_of_pairs()
    out: dict[str, dict[str, float | None]] = {}
    for b, control in enumerate(log.batches):
        mask = pair_batch == b
        usage: dict[str, float | None] = {}
        for budget in control.budgets:
            used = float(target[mask] @ log.mean(budget.outcome)[mask])
            usage[budget.name] = used / budget.limit if np.isfinite(used) and budget.limit > 0 else None
        out[control.batch_id] = usage
    return out


@dataclass(frozen=True)
class ReplayEvaluation:
    """Every policy's estimates on one log, and what the log itself observed.

    Attributes:
        policies: the estimates, in the order asked.
        logged: outcome -> the observed mean per round (``evaluation.ope.logged_value``).
        n_rounds, n_pairs, n_sent: the log's size.
        n_bootstrap, alpha, seed: the bootstrap.
        source: where the log came from (prefix or dataset), for the report.
    """

    policies: tuple[PolicyEstimate, ...]
    logged: Mapping[str, float]
    n_rounds: int
    n_pairs: int
    n_sent: int
    n_bootstrap: int
    alpha: float
    seed: int
    source: Mapping[str, Any]
    log: ReplayLog

    def as_json(self) -> dict[str, Any]:
        """The ``ope.json`` document: ``policies`` and ``logged`` as the issue defines them, then
        the extras (support, expected sends, budget usage, the join's report, the options)."""
        policies = {
            p.name: {
                **{
                    outcome: {name: {"value": e.value, "ci": [e.ci[0], e.ci[1]]} for name, e in by_name.items()}
                    for outcome, by_name in p.estimates.items()
                },
                "unsupported_share": p.unsupported_share,
                "expected_sends_per_round": p.expected_sends,
                "budget_usage": {b: dict(u) for b, u in p.budget_usage.items()},
            }
            for p in self.policies
        }
        return {
            "policies": policies,
            "logged": {**self.logged, "n": self.n_rounds, "pairs": self.n_pairs, "sent": self.n_sent},
            "estimators": sorted(ESTIMATORS),
            "slate": SLATE,
            "per_round": "every value is the mean per logged decision (round)",
            "bootstrap": {"resamples": self.n_bootstrap, "alpha": self.alpha, "seed": self.seed, "unit": "round"},
            "source": dict(self.source),
            "join": self.log.report.as_json(),
        }


def evaluate_log(
    log: ReplayLog,
    policies: Sequence[str],
    *,
    settings: TargetSettings | None = None,
    n_bootstrap: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    source: Mapping[str, Any] | None = None,
) -> ReplayEvaluation:
    """Estimate each named target policy on ``log`` with every estimator (module docstring).

    Raises:
        ReplayInputError: no or repeated policy names, an unknown one, a target that cannot be
            computed on this log, or a log without the calibrated means DM and DR need.
    """
    if not policies:
        raise ReplayInputError("name at least one target policy")
    if len(set(policies)) != len(policies):
        raise ReplayInputError(f"policies are repeated: {list(policies)}")
    targets = [make_target(name, settings) for name in policies]
    logged = log.logged_pairs()
    predicted = log.predicted()
    n_rounds = log.n_rounds
    estimates = []
    for name, policy in zip(policies, targets):
        target = policy.probabilities(log)
        by_outcome, unsupported = estimate_policy(
            logged, target, predicted, n_bootstrap=n_bootstrap, alpha=alpha, seed=seed
        )
        estimates.append(
            PolicyEstimate(
                name=name,
                estimates=by_outcome,
                unsupported_share=unsupported,
                expected_sends=float(target.sum()) / n_rounds,
                budget_usage=budget_usage(log, target),
            )
        )
    return ReplayEvaluation(
        policies=tuple(estimates),
        logged={outcome: logged_value(logged, outcome) for outcome in OUTCOMES},
        n_rounds=n_rounds,
        n_pairs=log.n_pairs,
        n_sent=int(log.sent.sum()),
        n_bootstrap=n_bootstrap,
        alpha=alpha,
        seed=seed,
        source=dict(source or {}),
        log=log,
    )
