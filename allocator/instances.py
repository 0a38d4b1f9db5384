"""Random allocation instances with binding budgets and binding provider minimums and maximums.

One generator for the tests, the benchmark and ``banditlp lp generate``. Every instance has a
known feasible point (``x_f = 0.6 * min(1, k_u / deg_u)``), so it is feasible by construction;
the budgets and the provider bounds are set against the unconstrained optimum (each user's
top-``k_u`` items by reward) so that they bind.
"""

from __future__ import annotations

import numpy as np

from allocator.problem import AllocationProblem
from banditlp.arrays import IntArray, weighted_bincount

IntOrRange = int | tuple[int, int]


def _draw(rng: np.random.Generator, spec: IntOrRange, n: int) -> IntArray:
    if isinstance(spec, (int, np.integer)):
        return np.full(n, int(spec), dtype=np.int64)
    lo, hi = spec
    return rng.integers(int(lo), int(hi) + 1, size=n, dtype=np.int64)


def random_instance(
    n_users: int,
    candidates_per_user: IntOrRange = 10,
    n_providers: int = 50,
    n_budgets: int = 2,
    user_cap: IntOrRange = (1, 2),
    tightness: float = 0.7,
    seed: int = 0,
) -> AllocationProblem:
    """A random, feasible allocation LP whose budgets and provider bounds bind.

    Args:
        n_users: number of users.
        candidates_per_user: candidates per user, an int or an inclusive ``(lo, hi)`` range (ragged).
        n_providers: number of providers; provider ``p``'s rewards shrink with ``p`` and its share
            of candidates follows a Zipf-like law, so the first providers hit their maximum and
            the last ones need their minimum.
        n_budgets: number of platform budget rows ``L`` (row 0 correlates with reward, like an
            unsubscription cost; the others are exposure-like).
        user_cap: per-user cap ``k_u``, an int or an inclusive ``(lo, hi)`` range.
        tightness: budgets are ``tightness x`` the unconstrained optimum's consumption (never below
            the feasible point's consumption), so ``< 1`` makes them bind.
        seed: seed of the one ``numpy.random.Generator`` used.

    Returns:
        An :class:`AllocationProblem` with ``n_pairs = sum of candidates``.
    """
    rng = np.random.default_rng(seed)
    deg = _draw(rng, candidates_per_user, n_users)
    caps = _draw(rng, user_cap, n_users).astype(np.float64)
    user = np.repeat(np.arange(n_users, dtype=np.int64), deg)
    e = user.shape[0]
    popularity = 1.0 / np.arange(1, n_providers + 1) ** 0.8
    provider = rng.choice(n_providers, size=e, p=popularity / popularity.sum()).astype(np.int64)
    items_per_provider = 20
    item = provider + n_providers * rng.integers(0, items_per_provider, size=e)
    quality = 1.5 - np.arange(n_providers) / max(n_providers, 1)
    reward = quality[provider] * rng.lognormal(0.0, 0.5, size=e) * np.repeat(rng.uniform(0.5, 1.5, n_users), deg)
    cost = np.empty((n_budgets, e))
    for row in range(n_budgets):
        if row == 0:
            cost[row] = 0.2 * reward + rng.uniform(0.0, 0.3, size=e)
        else:
            cost[row] = rng.uniform(0.5, 1.5, size=e)
    # the unconstrained optimum: each user's top-k_u pairs by reward
    order = np.lexsort((-reward, user))
    start = np.concatenate(([0], np.cumsum(deg)[:-1]))
    rank = np.empty(e, dtype=np.int64)
    rank[order] = np.arange(e) - np.repeat(start, deg)
    x0 = (rank < caps[user]).astype(np.float64)
    xf = 0.6 * np.minimum(1.0, caps[user] / deg[user])
    share = weighted_bincount(provider, xf / 0.6, n_providers)
    used0 = weighted_bincount(provider, x0, n_providers)
    hi = np.maximum(0.65 * share, 0.8 * used0)
    lo = 0.5 * share
    hi[rng.random(n_providers) < 0.2] = np.inf
    lo[rng.random(n_providers) < 0.2] = -np.inf
    budget = np.maximum(tightness * (cost @ x0), 1.05 * (cost @ xf))
    return AllocationProblem(
        user=user,
        item=item,
        reward=reward,
        cost=cost,
        budget=budget,
        provider=provider,
        provider_min=lo,
        provider_max=hi,
        user_cap=caps,
    )
