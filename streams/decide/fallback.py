"""The fallback decision: users a batch's LP did not decide, chosen greedily on estimates (pure).

A batch's window can close with users whose scores never arrived (a scorer killed, restarted or
late past the window). They are decided here rather than left out. For each such user's
candidates the caller gives an estimated reward and cost per budget (``streams.decide.estimates``:
each item's mean calibrated estimate over the batch's scored users), the prices of the batch's
rows (its LP's duals, or the last batch's when the LP has none), and what the LP's plan left of
the constraints. Each pair is priced by its reduced reward

    s_e = r_e - sum_l lambda_l c_{l,e} - mu_{p(e)}

(``mu`` in the allocator's sign: > 0 where a provider's maximum binds, < 0 where its minimum
binds: a premium), and sends are taken greedily, best ``s_e`` first:

1. for every provider still below its minimum, its pairs (any ``s_e``) until the deficit is met;
2. then every pair with ``s_e > 0``;

each under the user's cap (exactly: at most ``floor(k_u)`` items), the budget left by the LP and
the room left under each provider maximum. The plan is deterministic: a chosen item is sent with
probability 1 and every other candidate with probability 0, and those are the propensities logged.
In a replay that means the fallback's sends carry no exploration, and a target policy that would
send one of its unsent candidates has no support there (``streams.replay`` counts such pairs as
unsupported); the fallback's decisions are marked by ``policy``.

Valid by construction, on the fallback's own estimates: caps exactly, budget use at most the
budget left, sends at most the room under each maximum; minimums are met where the unscored
users' candidates and the budget allow (``provider_deficit`` of the plan says what is left).

The greedy is the sequential one (take the pairs in decreasing ``s_e``, ties by pair index,
each one that fits what is left), computed in rounds vectorised over pairs: a pair is open when it
fits alone (cap, room, budgets); each round ranks the open pairs within each user (one lexsort),
keeps every user's best ones up to its remaining cap, orders them by ``s_e`` and takes the longest
prefix that fits every provider's room and every budget together. The first pair that does not
fit ends the round; it never fits again (what is left only shrinks), as in the sequential greedy,
which skips it. A round takes at least one pair (the best open one fits alone), so there are as
many rounds as pairs the sequential greedy skips for room or budget, plus one; ``max_rounds``
bounds them (the plan is valid either way, only less full when it stops early).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditlp.arrays import BoolArray, FloatArray, IntArray

MAX_ROUNDS = 256


@dataclass(frozen=True, eq=False)
class FallbackProblem:
    """The fallback's users, their candidates' estimates and what is left of the batch's rows.

    ``n`` users, ``E`` pairs (user-major), ``L`` budgets, ``P`` providers.

    Attributes:
        starts: ``(n + 1,)`` int64; user ``u``'s pairs are ``starts[u]:starts[u + 1]``.
        provider: ``(E,)`` int64 provider index of each pair, in ``[0, P)``.
        reward: ``(E,)`` float64 estimated reward; NaN: no estimate (the pair is never sent).
        cost: ``(L, E)`` float64 estimated cost in each budget (any value where ``reward`` is NaN).
        user_cap: ``(n,)`` float64 most items per user (``floor`` of it are sent at most).
        budget_room: ``(L,)`` float64 budget left after the LP's plan (negative counts as 0).
        provider_room: ``(P,)`` float64 sends left under each maximum (``inf``: none).
        provider_deficit: ``(P,)`` float64 sends still needed for each minimum (0: met).
        budget_dual: ``(L,)`` float64 price of each budget.
        provider_dual: ``(P,)`` float64 price of each provider row (> 0: maximum binds).
    """

    starts: IntArray
    provider: IntArray
    reward: FloatArray
    cost: FloatArray
    user_cap: FloatArray
    budget_room: FloatArray
    provider_room: FloatArray
    provider_deficit: FloatArray
    budget_dual: FloatArray
    provider_dual: FloatArray

    @property
    def n_users(self) -> int:
        return int(self.starts.shape[0]) - 1

    @property
    def n_pairs(self) -> int:
        return int(self.reward.shape[0])

    @property
    def user(self) -> IntArray:
        """``(E,)`` int64 user index of each pair."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.starts))

    def score(self) -> FloatArray:
        """``(E,)`` reduced reward ``r_e - lambda . c_e - mu_p(e)``; ``-inf`` where no estimate."""
        s = (
            self.reward - self.budget_dual @ self.cost - self.provider_dual[self.provider]
            if self.n_pairs
            else self.reward
        )
        return np.where(np.isfinite(s), s, -np.inf)


@dataclass(frozen=True, eq=False)
class FallbackPlan:
    """The fallback's sends.

    Attributes:
        chosen: ``(E,)`` bool: the items sent (propensity 1; the others 0).
        score: ``(E,)`` float64 each pair's reduced reward (``-inf``: no estimate).
        budget_used: ``(L,)`` estimated cost of the sends in each budget.
        exposure: ``(P,)`` sends per provider.
        provider_deficit: ``(P,)`` what is still missing of each minimum after the sends.
        rounds: greedy rounds run.
    """

    chosen: BoolArray
    score: FloatArray
    budget_used: FloatArray
    exposure: FloatArray
    provider_deficit: FloatArray
    rounds: int


def plan_fallback(problem: FallbackProblem, max_rounds: int = MAX_ROUNDS) -> FallbackPlan:
    """The greedy plan of the module docstring: minimums first, then every positive reduced reward."""
    p = problem
    score = p.score()
    user = p.user
    known = np.isfinite(score) & np.isfinite(p.cost).all(axis=0) if p.cost.shape[0] else np.isfinite(score)
    state = _State(
        cap_left=np.floor(p.user_cap + 1e-9).astype(np.int64),
        budget_left=np.maximum(p.budget_room.astype(np.float64), 0.0),
        room_left=np.maximum(p.provider_room.astype(np.float64), 0.0),
        chosen=np.zeros(p.n_pairs, dtype=bool),
    )
    deficit = np.maximum(p.provider_deficit, 0.0)
    # 1. minimums: each short provider may take up to its deficit (rounded up) of its own pairs
    min_room = np.where(deficit > 0, np.minimum(state.room_left, np.ceil(deficit - 1e-9)), 0.0)
    rounds = _greedy(p, score, user, known & (deficit[p.provider] > 0), state, min_room, max_rounds)
    state.room_left = state.room_left - np.bincount(p.provider[state.chosen], minlength=len(deficit))
    # 2. every pair worth sending at the batch's prices
    rounds += _greedy(p, score, user, known & (score > 0), state, state.room_left.copy(), max_rounds)
    chosen = state.chosen
    exposure = np.bincount(p.provider[chosen], minlength=len(deficit)).astype(np.float64)
    used = p.cost[:, chosen].sum(axis=1) if p.cost.shape[0] else np.zeros(0)
    return FallbackPlan(chosen, score, used, exposure, np.maximum(deficit - exposure, 0.0), rounds)


@dataclass
class _State:
    """What is left while the greedy runs: ``(n,)`` caps, ``(L,)`` budgets, ``(P,)`` rooms, ``(E,)`` sends."""

    cap_left: IntArray
    budget_left: FloatArray
    room_left: FloatArray
    chosen: BoolArray


def _ranks(groups: IntArray) -> IntArray:
    """``(m,)`` the position of each entry within its run of equal ``groups`` values (sorted input)."""
    m = groups.shape[0]
    if not m:
        return np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.arange(m, dtype=np.int64) - np.repeat(first, np.diff(np.r_[first, m]))


def _greedy(
    p: FallbackProblem,
    score: FloatArray,
    user: IntArray,
    eligible: BoolArray,
    state: _State,
    room: FloatArray,
    max_rounds: int,
) -> int:
    """Take eligible pairs best ``score`` first under ``state``'s caps and budgets and ``room``
    (``(P,)`` sends allowed per provider, decreased as pairs are taken); returns the rounds run."""
    idx = np.flatnonzero(eligible)
    # both orders are fixed (ties: the lower pair index); each round only masks them
    by_user = idx[np.lexsort((idx, -score[idx], user[idx]))]
    best_first = idx[np.lexsort((idx, -score[idx]))]
    group = user[by_user]
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else np.zeros(0, np.int64)
    group_start = np.repeat(first, np.diff(np.r_[first, group.size]))  # (m,) where each user's run starts
    take = np.zeros(p.n_pairs, dtype=bool)
    for rounds in range(max_rounds):
        fits = (p.cost[:, by_user] <= state.budget_left[:, None]).all(axis=0) if p.cost.shape[0] else True
        open_ = ~state.chosen[by_user] & (state.cap_left[group] > 0) & (room[p.provider[by_user]] >= 1.0) & fits
        if not open_.any():
            return rounds
        # each user's best open pairs, up to its remaining cap
        seen = np.cumsum(open_)
        rank = seen - 1 - (seen[group_start] - open_[group_start])  # open pairs before it, same user
        take[:] = False
        take[by_user[open_ & (rank < state.cap_left[group])]] = True
        ranked = best_first[take[best_first]]  # best first over the batch
        # the longest prefix within every provider's room and every budget: the first pair that
        # does not fit ends the round (it never fits again: what is left only shrinks)
        within = np.argsort(p.provider[ranked], kind="stable")
        prank = np.empty(ranked.shape[0], dtype=np.int64)
        prank[within] = _ranks(p.provider[ranked][within])
        ok = prank + 1 <= room[p.provider[ranked]]
        if p.cost.shape[0]:
            ok &= (np.cumsum(p.cost[:, ranked], axis=1) <= state.budget_left[:, None]).all(axis=0)
        ranked = ranked[: int(np.argmin(ok)) if not ok.all() else ranked.shape[0]]
        state.chosen[ranked] = True
        state.cap_left -= np.bincount(user[ranked], minlength=state.cap_left.shape[0])
        room -= np.bincount(p.provider[ranked], minlength=room.shape[0])
        if p.cost.shape[0]:
            state.budget_left = state.budget_left - p.cost[:, ranked].sum(axis=1)
    return max_rounds
