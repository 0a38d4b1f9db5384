"""Deciding one batch, without Kafka: one LP per Thompson draw, one plan picked and rounded, encoded.

The policy is a uniform mixture over the batch's K plans: plan ``k`` is the LP solved on draw
``k`` of every pair's scores; the allocator picks one plan uniformly at random and rounds it
per user (systematic sampling: pair ``e`` is sent with probability ``x_k[e]``). The probability
that the policy sends pair ``e`` is then exactly ``(1/K) sum_k P(send e | plan k)``, which is
what every candidate's logged propensity is (``plans_of``). With K = 1 it is ``x_e`` of the one
plan, which an LP solved on one draw makes almost always 0 or 1: no off-policy estimate can be
made from such logs, which is why K > 1 exists. Every plan meets the budgets and provider
bounds on its own draw, so the mixture meets them in expectation over the draws; with the mean
rows (``AllocatorWorkerConfig.mean_budget_rows``, ``streams.decide.batch_lp``) every plan also meets
each budget on the posterior means.

Users of the batch that the LP did not decide (never scored; all of them when no plan could be
solved) are decided by the fallback (``streams.decide.fallback_batch``) in the same transaction,
after the LP's plan and within what it left of the rows.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from allocator import AllocationProblem, AllocatorError, round_allocation
from allocator.exploration import spread_plan, with_floor
from streams.avro.decisions import DecisionColumns
from streams.avro.serde import AvroSerde
from streams.decide.arm_knobs import KnobTable, with_arm_knobs
from streams.decide.batch_lp import BatchLP, batch_seed
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.contexts import ScoresContext, context_columns, encode_contexts
from streams.decide.estimates import Estimates, FallbackMemory, pair_estimates
from streams.decide.fallback_batch import FallbackDecided, LPPlan, decide_fallback, fallback_users
from streams.decide.report import encode_report
from streams.decide.solve import AllocationRejected, DualMemory, Solved, solve_batch
from streams.decide.window import BatchWindow

log = logging.getLogger("banditlp.allocator")

#: The name decisions carry in their ``policy`` field.
POLICY = "banditlp"


@dataclass(frozen=True, eq=False)
class DecidedBatch:
    """What one batch's transaction publishes.

    Attributes:
        records: ``(user key, decisions value)`` per decided user, in the LP's user order.
        report: the ``allocation-reports`` value.
        status: the solver's status, or ``"rejected"`` (no publishable allocation: no decisions,
            and the report says why).
        contexts: ``(user key, decision-contexts value)`` per user the LP decided, in the same
            order (``streams.decide.contexts``); published in the same transaction as ``records``.
            The fallback's users have none (the allocator reads no features).
        fallback_users: users decided by the fallback (their records follow the LP's);
            fallback_sends: the items it sent them.
        solve_seconds: the solver time of each draw's LP that was solved (for the metrics; the
            report carries their sum).
        versions: ``(model name, model version, parameter version) -> users`` of the LP's records.
    """

    records: list[tuple[bytes, bytes]]
    report: bytes
    status: str
    contexts: list[tuple[bytes, bytes]] = field(default_factory=list)
    fallback_users: int = 0
    fallback_sends: int = 0
    solve_seconds: tuple[float, ...] = ()
    versions: Mapping[tuple[str, int, str], int] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Plans:
    """The K plans of one batch and the policy's send probability of every pair.

    Attributes:
        solved: the plan of each draw that could be solved (``Solved.x``: ``(E,)``).
        marginal: ``(len(solved), E)``: each plan's send probability per pair under the
            rounding (``x`` for ``"sample"``; 0 or 1 for the deterministic ``"top"``).
        propensity: ``(E,)``: their mean, the mixture's send probability.
    """

    solved: list[Solved]
    marginal: np.ndarray
    propensity: np.ndarray


def plans_of(lp: BatchLP, problem: AllocationProblem | None, cfg: AllocatorWorkerConfig, duals: DualMemory) -> Plans:
    """Solve the LP of every Thompson draw (each dual solve warm-started from the last one's duals).

    A draw whose LP cannot be solved into a publishable plan is left out of the mixture (the
    propensities are those of the mixture actually used). With ``cfg.exploration_floor`` > 0 each
    plan is mixed with its draw's spread plan (``allocator.exploration``: every row of the draw's
    LP still holds, and every candidate gets a send probability).

    Raises:
        AllocationRejected: no draw could be solved.
    """
    solved: list[Solved] = []
    failures: list[str] = []
    floored = cfg.exploration_floor > 0 and problem is not None and cfg.rounding == "sample"
    # the draws differ in their cost rows only: one spread plan serves all K
    spread = spread_plan(problem) if floored and problem is not None else None
    for k in range(lp.n_draws):
        draw = lp.draw(k)
        try:
            draw_problem = draw.to_problem() if problem is not None else None
            sol = solve_batch(draw, cfg, draw_problem, duals)
            if spread is not None and draw_problem is not None:
                sol = replace(sol, x=with_floor(draw_problem, sol.x, cfg.exploration_floor, spread).x)
            solved.append(sol)
        except AllocationRejected as exc:
            failures.append(f"draw {k + 1}: {exc}")
    if not solved:
        raise AllocationRejected("; ".join(failures) or "no Thompson draw to solve")
    if failures:
        log.warning("%d of %d draws left out of the mixture: %s", len(failures), lp.n_draws, "; ".join(failures))
    if cfg.rounding == "top" and problem is not None:
        marginal = np.zeros((len(solved), lp.n_pairs))
        for i, sol in enumerate(solved):
            marginal[i, round_allocation(problem, sol.x, mode="top").pairs] = 1.0
    else:
        marginal = np.stack([sol.x for sol in solved]) if solved[0].x.size else np.zeros((len(solved), 0))
    return Plans(solved, marginal, marginal.mean(axis=0))


def pick_and_round(
    lp: BatchLP, problem: AllocationProblem, plans: Plans, rounding: Literal["sample", "top"], rng: np.random.Generator
) -> tuple[int, np.ndarray]:
    """Pick one plan uniformly at random and round it per user: ``(plan index, chosen (E,) bool)``.

    Raises:
        AllocationRejected: the rounding gave a user more items than its cap (never published).
    """
    k = int(rng.integers(len(plans.solved)))
    chosen = np.zeros(lp.n_pairs, dtype=bool)
    chosen[round_allocation(problem, plans.solved[k].x, mode=rounding, rng=rng).pairs] = True
    n_chosen = np.bincount(lp.user, weights=chosen, minlength=lp.n_users)
    if np.any(n_chosen > lp.user_cap):
        raise AllocationRejected("rounding gave a user more items than its cap")
    return k, chosen


def decide_batch(
    window: BatchWindow,
    cfg: AllocatorWorkerConfig,
    serde: AvroSerde,
    duals: DualMemory,
    clock: Callable[[], float],
    contexts: Mapping[str, ScoresContext] | None = None,
    memory: FallbackMemory | None = None,
    knobs: KnobTable | None = None,
) -> DecidedBatch:
    """Solve every draw's LP, pick and round one plan, decide the users it left to the fallback,
    and encode the batch's decisions, their contexts and the report.

    ``clock`` (the worker's monotonic clock) dates the report's ``window_seconds``; ``duals`` starts
    the dual solver and learns this batch's prices; ``contexts`` holds each user's scores τ and
    features (``streams.decide.contexts``; a user without one gets a context without them);
    ``memory`` holds the last batches' duals and item estimates for the fallback (empty if None);
    ``knobs``: each user's arm's allocator knobs (``streams.decide.arm_knobs``; none if None).
    """
    assert window.opened is not None
    memory = memory if memory is not None else FallbackMemory()
    control = window.opened
    lp = BatchLP.build(control, window.scores, mean_rows=cfg.mean_budget_rows)
    per_pair = pair_estimates(lp, control.reward_outcome, [b.outcome for b in control.budgets])
    estimates = Estimates.of_batch(lp, per_pair)
    lp = with_arm_knobs(lp, control, knobs) if knobs is not None else lp  # after the fallback's estimates
    decided_at = int(time.time() * 1000)
    try:
        problem = lp.to_problem() if lp.n_pairs else None
        plans = plans_of(lp, problem, cfg, duals)
        chosen, k = np.zeros(lp.n_pairs, dtype=bool), 0
        if problem is not None:
            # Seeded by (seed, batch_id): a batch re-decided after a crash picks and draws the same.
            rng = np.random.default_rng(batch_seed(cfg.seed, window.batch_id))
            k, chosen = pick_and_round(lp, problem, plans, cfg.rounding, rng)
    except (AllocationRejected, AllocatorError) as exc:
        # No plan: the report says why, and every user of the batch is decided by the fallback
        # (its records are released: a stuck batch would pin the offsets forever).
        log.error("batch %s: no LP plan (%s); every user goes to the fallback", window.batch_id, exc)
        everyone = decide_fallback(
            window, lp, None, per_pair, estimates, memory, fallback_users(window, False), decided_at
        )
        report = encode_report(
            serde,
            window,
            lp,
            None,
            decided_at,
            clock(),
            cfg.open_timeout_s,
            status=f"rejected: {exc}"[:500],
            fallback=everyone,
            estimates=estimates,
        )
        return _with_fallback([], report, "rejected", [], everyone, serde)
    sol = plans.solved[k]
    # Each user's decision names the policy its scores came from (a registered policy's users,
    # ``worker processors --policy``); one name for the batch when all are the LP's own.
    named = [r.policy for r in lp.records]
    policies: str | list[str] = POLICY if all(name == POLICY for name in named) else named
    # One record per user, the whole batch encoded at once (streams.avro.decisions).
    values = serde.encode_decisions(
        DecisionColumns(
            window.batch_id,
            lp.user_ids,
            lp.starts,
            lp.item,
            lp.item_names,
            lp.provider,
            lp.provider_names,
            sol.x,
            chosen,
            plans.propensity,
            [r.model_name for r in lp.records],
            [r.model_version for r in lp.records],
            [r.parameter_version for r in lp.records],
            sol.solver,
            cfg.rounding,
            decided_at,
            n_draws=len(plans.solved),
            policy=policies,
        )
    )
    records = [(user.encode(), value) for user, value in zip(lp.user_ids, values)]
    context_records = encode_contexts(
        serde,
        context_columns(
            lp,
            window.batch_id,
            x=sol.x,
            propensity=plans.propensity,
            contexts=contexts or {},
            policy=policies,
            n_draws=len(plans.solved),
            rounding=cfg.rounding,
            decided_at_ms=decided_at,
        ),
    )
    unscored = fallback_users(window, True)
    fallback = None
    if unscored:
        # the LP's prices when it had users; with none (an empty LP), the last batch's
        # the batch's own rows (their mean twins and the per-arm rows follow them); each budget is
        # priced by its draw row's dual plus its mean twin's
        cost, budget_dual = lp.draw(k).cost[: lp.n_budgets], lp.batch_row_duals(sol.budget_dual)
        plan = LPPlan(sol.x, cost, budget_dual, sol.provider_dual) if lp.n_pairs else None
        fallback = decide_fallback(window, lp, plan, per_pair, estimates, memory, unscored, decided_at)
    # window_seconds ends here: the decisions are encoded and go to the producer next.
    # The report: the rounded plan's usage and duals, the solver's work summed over all K plans.
    work = replace(
        sol, seconds=sum(p.seconds for p in plans.solved), iterations=sum(p.iterations for p in plans.solved)
    )
    report = encode_report(
        serde,
        window,
        lp.draw(k),
        work,
        decided_at,
        clock(),
        cfg.open_timeout_s,
        fallback=fallback,
        estimates=estimates,
    )
    decided = _with_fallback(records, report, sol.status, context_records, fallback, serde)
    versions = Counter((r.model_name, r.model_version, r.parameter_version) for r in lp.records)
    return replace(decided, solve_seconds=tuple(p.seconds for p in plans.solved), versions=dict(versions))


def _with_fallback(
    records: list[tuple[bytes, bytes]],
    report: bytes,
    status: str,
    contexts: list[tuple[bytes, bytes]],
    fallback: FallbackDecided | None,
    serde: AvroSerde,
) -> DecidedBatch:
    """The batch's publication: the LP's records, then the fallback's (if any)."""
    if fallback is None:
        return DecidedBatch(records, report, status, contexts)
    values = serde.encode_decisions(fallback.columns)
    extra = [(user.encode(), value) for user, value in zip(fallback.user_ids, values)]
    return DecidedBatch(records + extra, report, status, contexts, len(extra), fallback.sends)
