"""The fallback half of a batch's decision: the users its LP did not decide, through ``fallback``.

Who: every user the batch was told of (a candidates listing, CLOSED's or OPENED's ``user_ids``)
whose scores never reached the window; when the LP could not be solved into a publishable plan,
every scored user too. A user known only by name (no candidates record read) gets a decision
with no candidates: nothing is sent, and the decision says it was decided.

With what: each candidate's estimates (``streams.decide.estimates``: the item's mean over the
batch's scored pairs, else the memory's, else the batch's or the memory's overall mean; a pair
with none is never sent), priced by this batch's LP duals, or the last batch's when this LP has
none (no scored user, or no publishable plan; a budget's price is its row's dual plus its mean
twin's); what the LP's plan left: each budget less the larger of the plan's use on its own draw
and on the estimates (so both views of the plan plus the fallback stay within it: the LP's pair
estimates are its mean rows' costs, so the fallback keeps the mean rows as well as the draw's),
each provider maximum less the plan's exposure, each minimum's deficit.

The sends are checked again before they are published (caps, budgets and maximums on the
fallback's estimates); a plan that failed the check (a bug) would be replaced by sending nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain

import numpy as np

from banditlp.arrays import FloatArray
from streams.avro.decisions import DecisionColumns
from streams.decide.batch_lp import MEAN_SUFFIX, BatchLP
from streams.decide.estimates import Estimates, FallbackMemory, estimate_items
from streams.decide.fallback import FallbackPlan, FallbackProblem, plan_fallback
from streams.decide.listing import CandidateListing
from streams.decide.window import BatchWindow

log = logging.getLogger("banditlp.allocator")

#: The name fallback decisions carry in their ``policy`` (and ``solver``) field.
POLICY = "fallback"
ROUNDING = "greedy"


@dataclass(frozen=True, eq=False)
class LPPlan:
    """What the batch's LP decided, as the fallback needs it (``E`` LP pairs, ``L`` budgets).

    Attributes:
        x: ``(E,)`` the picked plan's values.
        draw_cost: ``(L, E)`` the costs of the batch's ``L`` budgets in the draw that plan was solved on.
        budget_dual: ``(L,)`` each budget's price (its row's dual plus its mean twin's, if any);
            provider_dual: ``(P_lp,)`` its duals (allocator sign).
    """

    x: FloatArray
    draw_cost: FloatArray
    budget_dual: FloatArray
    provider_dual: FloatArray


@dataclass(frozen=True, eq=False)
class FallbackDecided:
    """The fallback's decisions of one batch.

    Attributes:
        user_ids: ``(n,)`` the users it decided, sorted.
        columns: their decisions (``policy`` = ``"fallback"``).
        budget_used: ``{budget name: estimated use of the fallback's sends}``.
        exposure: ``{provider id: the fallback's sends}`` (every provider it sent from).
        deficit: ``{provider id: what is still missing of its minimum}`` (short ones only).
        sends: items sent in all.
    """

    user_ids: list[str]
    columns: DecisionColumns
    budget_used: dict[str, float]
    exposure: dict[str, float]
    deficit: dict[str, float]
    sends: int


def fallback_users(window: BatchWindow, lp_decided: bool) -> list[str]:
    """The users the fallback decides: the unscored ones, and the scored ones too when the LP
    decided nobody (``lp_decided`` False), sorted."""
    users = window.unscored()
    return users if lp_decided else sorted(set(users).union(window.scores))


def decide_fallback(
    window: BatchWindow,
    lp: BatchLP,
    plan: LPPlan | None,
    per_pair: Mapping[str, FloatArray],
    estimates: Estimates,
    memory: FallbackMemory,
    users: list[str],
    decided_at_ms: int,
) -> FallbackDecided:
    """Decide ``users`` (``fallback_users``) of ``window`` by the fallback after the LP's ``plan``
    (None: the LP decided nobody; its rows are all left and the memory's duals price them).

    ``per_pair``: ``{outcome: (E,)}`` the LP pairs' estimates (``estimates.pair_estimates``).
    """
    control = window.opened
    assert control is not None
    listings: list[CandidateListing | None] = [
        window.listings.get(u) or (CandidateListing.of_scores(window.scores[u]) if u in window.scores else None)
        for u in users
    ]
    counts = np.fromiter((0 if li is None else len(li.item_ids) for li in listings), dtype=np.int64, count=len(users))
    starts = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    present = [li for li in listings if li is not None]
    pair_items = list(chain.from_iterable(li.item_ids for li in present))  # (E_f,)
    pair_providers = list(chain.from_iterable(li.provider_ids for li in present))
    caps = np.fromiter(
        (0 if li is None else control.default_user_cap if li.user_cap is None else li.user_cap for li in listings),
        dtype=np.float64,
        count=len(users),
    )
    # Providers: the batch's constrained ones first (its order), then every other one, sorted.
    names = [p.provider_id for p in control.providers]
    index = {name: i for i, name in enumerate(names)}
    for name in sorted(set(pair_providers).difference(index)):
        index[name] = len(names)
        names.append(name)
    lo = np.zeros(len(names))
    hi = np.full(len(names), np.inf)
    lo[: len(control.providers)] = [p.min_exposure for p in control.providers]
    hi[: len(control.providers)] = [p.max_exposure for p in control.providers]
    provider = np.fromiter(map(index.__getitem__, pair_providers), dtype=np.int64, count=len(pair_providers))
    item_names = sorted(set(pair_items))
    item_at = {name: i for i, name in enumerate(item_names)}
    item = np.fromiter(map(item_at.__getitem__, pair_items), dtype=np.int64, count=len(pair_items))

    budget_names = [b.name for b in control.budgets]
    budget = np.array([b.limit for b in control.budgets], dtype=np.float64)
    lp_used, lp_exposure = np.zeros(len(budget)), np.zeros(len(names))
    if plan is not None and lp.n_pairs:
        mean_cost = np.stack([per_pair[b.outcome] for b in control.budgets]) if control.budgets else plan.draw_cost
        lp_used = np.maximum(plan.draw_cost @ plan.x, mean_cost @ plan.x) if len(budget) else lp_used
        by_name = dict(
            zip(lp.provider_names, np.bincount(lp.provider, weights=plan.x, minlength=len(lp.provider_names)))
        )
        lp_exposure = np.array([by_name.get(n, 0.0) for n in names])
    if plan is not None:
        budget_dual = np.asarray(plan.budget_dual, dtype=np.float64)
        lp_dual = dict(zip(lp.provider_names, map(float, plan.provider_dual)))
        provider_dual = np.array([lp_dual.get(n, 0.0) for n in names])
    else:
        # a budget's price is its row's dual plus its mean twin's (``BatchLP.batch_row_duals``)
        duals = memory.budget_dual
        budget_dual = np.array([duals.get(n, 0.0) + duals.get(f"{n}{MEAN_SUFFIX}", 0.0) for n in budget_names])
        provider_dual = np.array([memory.provider_dual.get(n, 0.0) for n in names])

    outcomes = list(dict.fromkeys((control.reward_outcome, *(b.outcome for b in control.budgets))))
    est = estimate_items(pair_items, outcomes, estimates, memory)  # (O, E_f)
    problem = FallbackProblem(
        starts=starts,
        provider=provider,
        reward=est[outcomes.index(control.reward_outcome)],
        cost=np.stack([est[outcomes.index(b.outcome)] for b in control.budgets])
        if control.budgets
        else np.zeros((0, len(pair_items))),
        user_cap=caps,
        budget_room=budget - lp_used,
        provider_room=hi - lp_exposure,
        provider_deficit=np.maximum(lo - lp_exposure, 0.0),
        budget_dual=budget_dual,
        provider_dual=provider_dual,
    )
    result = _checked(problem, plan_fallback(problem), window.batch_id)
    chosen = result.chosen
    model = lp.records[0] if lp.records else None
    sent = chosen.astype(np.float64)
    columns = DecisionColumns(
        window.batch_id,
        users,
        starts,
        item,
        item_names,
        provider,
        names,
        sent,
        chosen,
        sent,
        [model.model_name if model else "none"] * len(users),
        [model.model_version if model else 0] * len(users),
        [model.parameter_version if model else "default"] * len(users),
        POLICY,
        ROUNDING,
        decided_at_ms,
        n_draws=1,
        policy=POLICY,
    )
    return FallbackDecided(
        users,
        columns,
        dict(zip(budget_names, map(float, result.budget_used))),
        {n: float(e) for n, e in zip(names, result.exposure) if e > 0},
        {n: float(d) for n, d in zip(names, result.provider_deficit) if d > 0},
        int(chosen.sum()),
    )


def _checked(problem: FallbackProblem, plan: FallbackPlan, batch_id: str) -> FallbackPlan:
    """``plan`` if its sends keep every cap, budget room and provider room; else sending nothing."""
    per_user = np.bincount(problem.user[plan.chosen], minlength=problem.n_users)
    room = np.maximum(problem.budget_room, 0.0)
    ok = (
        np.all(per_user <= np.floor(problem.user_cap + 1e-9))
        and np.all(plan.budget_used <= room + 1e-9 * np.maximum(1.0, room))
        and np.all(plan.exposure <= np.maximum(problem.provider_room, 0.0) + 1e-9)
    )
    if ok:
        return plan
    log.error("batch %s: the fallback's plan broke a row it must keep; its users are sent nothing", batch_id)
    none = np.zeros(problem.n_pairs, dtype=bool)
    zeros = np.zeros_like(plan.budget_used)
    return FallbackPlan(
        none, plan.score, zeros, np.zeros_like(plan.exposure), np.maximum(problem.provider_deficit, 0.0), 0
    )
