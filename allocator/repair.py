"""Primal repair: turn a nearly feasible ``x`` (the dual solver's) into a feasible one.

Five vectorised passes, each keeping what the earlier ones fixed:

1. user caps: scale each over-cap user's pairs down by ``k_u / sum_u x``;
2. provider maximums: scale each over-maximum provider's pairs down by ``hi_p / sum_p x``;
3. provider minimums, top-up: top each short provider up with its best pairs (by ``score``, the
   reduced reward ``r - C^T lambda`` when the solver passes it) that have room (``x_e < 1`` and
   user slack), one pair per user per round, a few rounds; the top-up never passes ``lo_p <= hi_p``;
3b. provider minimums, swaps: a user at its cap has no slack, so a provider still short gains
   exposure by a swap inside a user: raise the user's best pair (by ``score``) of a short provider
   and lower, by the same total, the user's pairs of donor providers (above their minimum, or
   with none), worst ``score`` first. Each donor provider gives at most its surplus over its
   minimum (best ``score`` gain first) and each short provider gains at most its deficit (users
   with the best gain first); one raised pair per user per round, a few rounds. A swap leaves
   every user sum unchanged, only raises short providers (never past ``lo_p <= hi_p``), never
   takes a donor below its minimum and keeps ``x`` in ``[0, 1]``;
4. budgets: for each over-budget row, lower pairs in increasing order of ``r_e / c_{l,e}``,
   never taking a provider below its minimum, until the row holds. Lowering only helps every
   other row (costs >= 0) and every cap. A swap may raise a row's cost: ordering swaps by the
   reduced reward, which charges each pair its budget price, keeps that small, and this pass takes
   it back from providers above their minimum. Should it fail to (every provider at its minimum),
   pass 4 is also run on ``x`` as it stood before the swaps, and of the two results the one with
   the smaller worst relative violation of the budgets and minimums is kept.

After the passes ``x`` is feasible whenever such moves can reach feasibility (a provider minimum
that neither a pair with room nor a swap against a provider above its minimum can raise is left
short and shows in the violations; every other constraint still holds).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from allocator.problem import AllocationProblem
from allocator.violations import violations
from banditlp.arrays import FloatArray, IntArray, weighted_bincount


def _group_cumsum_before(values: FloatArray, group: IntArray) -> FloatArray:
    """Exclusive cumulative sum of ``values`` within runs of equal ``group`` (``group`` sorted)."""
    cs = np.cumsum(values)
    excl = cs - values
    first = np.ones(group.shape[0], dtype=bool)
    first[1:] = group[1:] != group[:-1]
    base: IntArray = np.maximum.accumulate(np.where(first, np.arange(group.shape[0]), 0))
    return excl - excl[base]


def _best_per_user(idx: IntArray, key: FloatArray, user: IntArray) -> IntArray:
    """For the pairs ``idx``, the one of each user with the largest ``key`` (ties: lowest index);
    returned in increasing user order."""
    order = idx[np.lexsort((-key[idx], user[idx]))]
    first = np.ones(order.size, dtype=bool)
    first[1:] = user[order[1:]] != user[order[:-1]]
    return order[first]


def _swap_round(
    x: FloatArray, user: IntArray, prov: IntArray, score: FloatArray, deficit: FloatArray, surplus: FloatArray
) -> bool:
    """One round of pass 3b, in place: per user at most one pair of a short provider goes up (its
    best by ``score``) and the user's donor pairs go down by the same total, worst ``score`` first.
    Returns whether anything moved."""
    recv = np.flatnonzero((deficit[prov] > 0) & (x < 1.0))
    don = np.flatnonzero((surplus[prov] > 0) & (deficit[prov] <= 0) & (x > 0.0))
    if recv.size == 0 or don.size == 0:
        return False
    recv = _best_per_user(recv, score, user)  # one per user, sorted by user
    n_u = int(user.max()) + 1
    slot = np.full(n_u, -1, dtype=np.int64)
    slot[user[recv]] = np.arange(recv.size)
    don = don[slot[user[don]] >= 0]  # donors of users that have a recipient
    if don.size == 0:
        return False
    don = don[np.lexsort((score[don], user[don]))]  # by user, worst score first
    k = slot[user[don]]  # the recipient each donor pays
    room = 1.0 - x[recv]
    # (a) a user gives at most its recipient's room
    take = np.clip(room[k] - _group_cumsum_before(x[don], user[don]), 0.0, x[don])
    # (b) each donor provider gives at most its surplus over its minimum, best gain first
    gain = score[recv][k] - score[don]
    o = np.lexsort((-gain, prov[don]))
    take[o] = np.clip(surplus[prov[don[o]]] - _group_cumsum_before(take[o], prov[don[o]]), 0.0, take[o])
    # (c) each short provider gains at most its deficit, users with the best mean gain first
    total = weighted_bincount(k, take, recv.size)
    worth = weighted_bincount(k, take * gain, recv.size) / np.where(total > 0, total, 1.0)
    o = np.lexsort((-worth, prov[recv]))
    amount = np.empty(recv.size)
    amount[o] = np.clip(deficit[prov[recv[o]]] - _group_cumsum_before(total[o], prov[recv[o]]), 0.0, total[o])
    # (d) shrink each user's donations to its amount, worst score first again (only lowers takes)
    take = np.clip(amount[k] - _group_cumsum_before(take, user[don]), 0.0, take)
    if not (amount > 0).any():
        return False
    x[recv] += weighted_bincount(k, take, recv.size)
    x[don] -= take
    return True


def repair(
    problem: AllocationProblem,
    x: ArrayLike,
    *,
    score: ArrayLike | None = None,
    hard_only: bool = False,
    rounds: int = 4,
) -> FloatArray:
    """A feasible allocation close to ``x``.

    Args:
        problem: the LP.
        x: (n_pairs,) allocation to repair (any float dtype).
        score: (n_pairs,) preference for the provider top-up and swaps (higher first: a short
            provider gains on its best pairs, donors give up their worst); default ``reward``.
        hard_only: only passes 1-2 (user caps, provider maximums): used by elastic solves, whose
            budgets and provider minimums may give way.
        rounds: rounds of the provider top-up and, after it, of the swaps (each round moves at
            most one pair, or one swap, per user).

    Returns:
        (n_pairs,) float64 repaired allocation in ``[0, 1]``.
    """
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    user, prov, caps = problem.user, problem.provider, problem.caps
    n_u, n_p = problem.n_users, problem.n_providers
    lo, hi = problem.provider_min, problem.provider_max
    # 1. user caps
    su = weighted_bincount(user, x, n_u)
    x *= np.where(su > caps, caps / np.where(su > 0, su, 1.0), 1.0)[user]
    # 2. provider maximums
    sp = weighted_bincount(prov, x, n_p)
    x *= np.where(sp > hi, hi / np.where(sp > 0, sp, 1.0), 1.0)[prov]
    if hard_only:
        return x
    # 3. provider minimums
    score = problem.reward if score is None else np.asarray(score, dtype=np.float64)
    for _ in range(rounds):
        sp = weighted_bincount(prov, x, n_p)
        deficit = np.where(np.isfinite(lo), lo - sp, 0.0)
        su = weighted_bincount(user, x, n_u)
        room = np.minimum(1.0 - x, caps[user] - su[user])
        cand = np.flatnonzero((deficit[prov] > 0) & (room > 0))
        if cand.size == 0:
            break
        cand = cand[np.argsort(-score[cand], kind="stable")]
        _, first = np.unique(user[cand], return_index=True)  # best pair of each user only
        cand = cand[np.sort(first)]
        cand = cand[np.argsort(prov[cand], kind="stable")]  # grouped by provider, best first
        before = _group_cumsum_before(room[cand], prov[cand])
        x[cand] += np.clip(deficit[prov[cand]] - before, 0.0, room[cand])
    # 3b. provider minimums by swaps inside users (users at cap have no room for the top-up)
    floor = np.where(np.isfinite(lo), np.maximum(lo, 0.0), 0.0)
    x_pre, swapped = x.copy(), False
    for _ in range(rounds):
        sp = weighted_bincount(prov, x, n_p)
        deficit = np.where(np.isfinite(lo), lo - sp, 0.0)
        if not (deficit > 0).any():
            break
        surplus = np.maximum(sp - floor, 0.0)
        if not _swap_round(x, user, prov, score, deficit, surplus):
            break
        swapped = True
    # 4. budgets, keeping provider minimums
    x = np.clip(_budgets(problem, x, floor), 0.0, 1.0)
    if swapped and (problem.cost @ x > problem.budget).any():  # the swaps cost more than pass 4 could free
        alt = np.clip(_budgets(problem, x_pre, floor), 0.0, 1.0)
        if _soft_violation(problem, alt) < _soft_violation(problem, x):
            x = alt
    return x


def _budgets(problem: AllocationProblem, x: FloatArray, floor: FloatArray) -> FloatArray:
    """Pass 4, in place on ``x`` (returned): lower pairs of each over-budget row in increasing order
    of ``r_e / c_{l,e}``, never taking a provider below ``floor``."""
    prov, n_p = problem.provider, problem.n_providers
    for _ in range(2):
        for row in range(problem.n_budgets):
            c = problem.cost[row]
            excess = float(c @ x - problem.budget[row])
            if excess <= 0:
                continue
            cand = np.flatnonzero((c > 0) & (x > 0))
            cand = cand[np.argsort(problem.reward[cand] / c[cand], kind="stable")]
            slack = np.maximum(weighted_bincount(prov, x, n_p) - floor, 0.0)
            byprov = np.argsort(prov[cand], kind="stable")
            removable = np.empty(cand.size)
            before = _group_cumsum_before(x[cand[byprov]], prov[cand[byprov]])
            removable[byprov] = np.clip(slack[prov[cand[byprov]]] - before, 0.0, x[cand[byprov]])
            worth = removable * c[cand]
            done = np.cumsum(worth) - worth
            x[cand] -= np.clip((excess - done) / c[cand], 0.0, removable)
    return x


def _soft_violation(problem: AllocationProblem, x: FloatArray) -> float:
    """Worst relative violation of the rows passes 3-4 trade against each other (budgets, minimums),
    measured as :func:`allocator.violations.violations` does."""
    v = violations(problem, x)
    return float(max(v.budget_rel.max(initial=0.0), v.provider_min_rel.max(initial=0.0)))
