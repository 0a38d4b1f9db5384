"""Primal repair: turn a nearly feasible ``x`` (the dual solver's) into a feasible one.

Four vectorised passes, each keeping what the earlier ones fixed:

1. user caps: scale each over-cap user's pairs down by ``k_u / sum_u x``;
2. provider maximums: scale each over-maximum provider's pairs down by ``hi_p / sum_p x``;
3. provider minimums: top each short provider up with its best pairs (by ``score``, the reduced
   reward ``r - C^T lambda`` when the solver passes it) that have room (``x_e < 1`` and user slack),
   one pair per user per round, a few rounds; the top-up never passes ``lo_p <= hi_p``;
4. budgets: for each over-budget row, lower pairs in increasing order of ``r_e / c_{l,e}``,
   never taking a provider below its minimum, until the row holds. Lowering only helps every
   other row (costs >= 0) and every cap.

After the passes ``x`` is feasible whenever such reductions can reach feasibility (a provider
minimum that no pair with room can raise is left short and shows in the violations).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from allocator.problem import AllocationProblem


def _group_cumsum_before(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Exclusive cumulative sum of ``values`` within runs of equal ``group`` (``group`` sorted)."""
    cs = np.cumsum(values)
    excl = cs - values
    first = np.ones(group.shape[0], dtype=bool)
    first[1:] = group[1:] != group[:-1]
    base = np.maximum.accumulate(np.where(first, np.arange(group.shape[0]), 0))
    return excl - excl[base]


def repair(problem: AllocationProblem, x: np.ndarray, *, score: Optional[np.ndarray] = None,
           hard_only: bool = False, rounds: int = 4) -> np.ndarray:
    """A feasible allocation close to ``x``.

    Args:
        problem: the LP.
        x: (n_pairs,) allocation to repair (any float dtype).
        score: (n_pairs,) preference for the provider top-up (higher first); default ``reward``.
        hard_only: only passes 1-2 (user caps, provider maximums): used by elastic solves, whose
            budgets and provider minimums may give way.
        rounds: rounds of the provider top-up (each gives at most one pair per user).

    Returns:
        (n_pairs,) float64 repaired allocation in ``[0, 1]``.
    """
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    user, prov, caps = problem.user, problem.provider, problem.caps
    n_u, n_p = problem.n_users, problem.n_providers
    lo, hi = problem.provider_min, problem.provider_max
    # 1. user caps
    su = np.bincount(user, weights=x, minlength=n_u)
    x *= np.where(su > caps, caps / np.where(su > 0, su, 1.0), 1.0)[user]
    # 2. provider maximums
    sp = np.bincount(prov, weights=x, minlength=n_p)
    x *= np.where(sp > hi, hi / np.where(sp > 0, sp, 1.0), 1.0)[prov]
    if hard_only:
        return x
    # 3. provider minimums
    score = problem.reward if score is None else np.asarray(score, dtype=np.float64)
    for _ in range(rounds):
        sp = np.bincount(prov, weights=x, minlength=n_p)
        deficit = np.where(np.isfinite(lo), lo - sp, 0.0)
        su = np.bincount(user, weights=x, minlength=n_u)
        room = np.minimum(1.0 - x, caps[user] - su[user])
        cand = np.flatnonzero((deficit[prov] > 0) & (room > 0))
        if cand.size == 0:
            break
        cand = cand[np.argsort(-score[cand], kind="stable")]
        _, first = np.unique(user[cand], return_index=True)   # best pair of each user only
        cand = cand[np.sort(first)]
        cand = cand[np.argsort(prov[cand], kind="stable")]     # grouped by provider, best first
        before = _group_cumsum_before(room[cand], prov[cand])
        x[cand] += np.clip(deficit[prov[cand]] - before, 0.0, room[cand])
    # 4. budgets, keeping provider minimums
    floor = np.where(np.isfinite(lo), np.maximum(lo, 0.0), 0.0)
    for _ in range(2):
        for l in range(problem.n_budgets):
            c = problem.cost[l]
            excess = float(c @ x - problem.budget[l])
            if excess <= 0:
                continue
            cand = np.flatnonzero((c > 0) & (x > 0))
            cand = cand[np.argsort(problem.reward[cand] / c[cand], kind="stable")]
            slack = np.maximum(np.bincount(prov, weights=x, minlength=n_p) - floor, 0.0)
            byprov = np.argsort(prov[cand], kind="stable")
            removable = np.empty(cand.size)
            before = _group_cumsum_before(x[cand[byprov]], prov[cand[byprov]])
            removable[byprov] = np.clip(slack[prov[cand[byprov]]] - before, 0.0, x[cand[byprov]])
            worth = removable * c[cand]
            done = np.cumsum(worth) - worth
            x[cand] -= np.clip((excess - done) / c[cand], 0.0, removable)
    return np.clip(x, 0.0, 1.0)
