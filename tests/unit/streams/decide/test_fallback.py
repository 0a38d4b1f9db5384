"""The fallback's greedy (``streams.decide.fallback``): against a plain sequential greedy written
here, and its rows (caps, budgets, provider maxima) checked with ``allocator.violations``."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator import AllocationProblem, violations
from streams.decide.fallback import FallbackProblem, plan_fallback


def random_problem(seed: int) -> FallbackProblem:
    """Up to 30 users of 0-6 candidates, caps 0-3 (some fractional), 0-2 budgets (some tight),
    1-4 providers with rooms (some unbounded) and deficits, some pairs without an estimate."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 31))
    counts = rng.integers(0, 7, n)
    starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
    e, n_budgets, n_providers = int(starts[-1]), int(rng.integers(0, 3)), int(rng.integers(1, 5))
    reward = rng.normal(0.5, 1.0, e)
    reward[rng.random(e) < 0.1] = np.nan
    cost = rng.uniform(0.0, 1.0, (n_budgets, e))
    room = rng.uniform(0.0, 0.4 * max(e, 1), n_budgets) if rng.random() < 0.7 else np.full(n_budgets, 1e9)
    provider_room = np.where(rng.random(n_providers) < 0.3, np.inf, rng.integers(0, 8, n_providers).astype(float))
    deficit = np.where(rng.random(n_providers) < 0.5, rng.uniform(0, 5, n_providers), 0.0)
    return FallbackProblem(
        starts=starts,
        provider=rng.integers(0, n_providers, e).astype(np.int64),
        reward=reward,
        cost=cost,
        user_cap=rng.integers(0, 4, n) + np.where(rng.random(n) < 0.3, 0.5, 0.0),
        budget_room=room,
        provider_room=provider_room,
        provider_deficit=deficit,
        budget_dual=rng.uniform(0, 1, n_budgets),
        provider_dual=rng.normal(0, 0.3, n_providers),
    )


def sequential_greedy(p: FallbackProblem) -> list[bool]:
    """The module docstring's greedy, one pair at a time in plain Python."""
    e = p.n_pairs
    user = [u for u in range(p.n_users) for _ in range(int(p.starts[u + 1] - p.starts[u]))]
    n_budgets = p.cost.shape[0]
    score = []
    for j in range(e):
        s = float(p.reward[j]) - sum(float(p.budget_dual[b] * p.cost[b, j]) for b in range(n_budgets))
        s -= float(p.provider_dual[p.provider[j]])
        score.append(s if math.isfinite(s) else -math.inf)
    order = sorted(range(e), key=lambda j: (-score[j], j))
    cap = [math.floor(c + 1e-9) for c in p.user_cap.tolist()]
    left = [max(float(r), 0.0) for r in p.budget_room]
    room = [max(float(r), 0.0) for r in p.provider_room]
    chosen = [False] * e

    def take(j: int, rooms: list[float]) -> bool:
        fits = cap[user[j]] > 0 and rooms[p.provider[j]] >= 1 and all(p.cost[b, j] <= left[b] for b in range(n_budgets))
        if fits:
            chosen[j] = True
            cap[user[j]] -= 1
            rooms[p.provider[j]] -= 1
            for b in range(n_budgets):
                left[b] -= float(p.cost[b, j])
        return fits

    deficit = [max(float(d), 0.0) for d in p.provider_deficit]
    min_room = [min(room[q], math.ceil(deficit[q] - 1e-9)) if deficit[q] > 0 else 0.0 for q in range(len(room))]
    for j in order:  # 1. the providers below their minimum
        if score[j] > -math.inf and deficit[p.provider[j]] > 0 and not chosen[j] and take(j, min_room):
            room[p.provider[j]] -= 1
    for j in order:  # 2. every positive reduced reward
        if score[j] > 0 and not chosen[j]:
            take(j, room)
    return chosen


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_the_vectorised_rounds_are_the_sequential_greedy(seed: int) -> None:
    p = random_problem(seed)
    plan = plan_fallback(p)
    assert plan.chosen.tolist() == sequential_greedy(p)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_caps_budgets_and_provider_maxima_hold_on_the_estimates(seed: int) -> None:
    """Checked by ``allocator.violations`` on the LP of the fallback's own rows (its estimates,
    the budget left, each provider's room as its maximum), and by hand."""
    p = random_problem(seed)
    plan = plan_fallback(p)
    x = plan.chosen.astype(np.float64)
    if p.n_pairs:
        known = np.isfinite(p.reward)
        assert not (plan.chosen & ~known).any()  # a pair without an estimate is never sent
        lp = AllocationProblem(
            user=p.user,
            item=np.arange(p.n_pairs),
            reward=np.nan_to_num(p.reward),
            cost=p.cost,
            budget=np.maximum(p.budget_room, 0.0),
            provider=p.provider,
            provider_min=np.zeros(len(p.provider_room)),
            provider_max=np.maximum(p.provider_room, 0.0),
            user_cap=np.floor(p.user_cap + 1e-9),
        )
        v = violations(lp, x)
        assert v.max_violation <= 1e-9, v.listing()
    # by hand: every user's sends are whole items, at most its cap
    for u in range(p.n_users):
        sent = int(plan.chosen[p.starts[u] : p.starts[u + 1]].sum())
        assert sent <= math.floor(p.user_cap[u] + 1e-9)
    np.testing.assert_allclose(plan.budget_used, p.cost @ x if p.cost.shape[0] else np.zeros(0))
    assert np.all(plan.provider_deficit == np.maximum(np.maximum(p.provider_deficit, 0) - plan.exposure, 0))


def test_a_user_gets_exactly_its_cap_of_its_best_items_when_no_other_row_binds() -> None:
    rng = np.random.default_rng(3)
    n, per = 40, 5
    starts = np.arange(0, n * per + 1, per)
    reward = rng.uniform(0.1, 1.0, n * per)  # all worth sending
    cap = rng.integers(0, per + 2, n).astype(float)
    p = FallbackProblem(
        starts=starts,
        provider=rng.integers(0, 3, n * per),
        reward=reward,
        cost=np.zeros((1, n * per)),
        user_cap=cap,
        budget_room=np.array([1.0]),
        provider_room=np.full(3, np.inf),
        provider_deficit=np.zeros(3),
        budget_dual=np.array([2.0]),
        provider_dual=np.zeros(3),
    )
    chosen = plan_fallback(p).chosen
    for u in range(n):
        mine = reward[starts[u] : starts[u + 1]]
        k = int(min(cap[u], per))
        best = set(np.argsort(-mine)[:k].tolist())
        assert set(np.flatnonzero(chosen[starts[u] : starts[u + 1]]).tolist()) == best


def test_a_provider_below_its_minimum_is_served_first_even_at_a_loss() -> None:
    # two users, two items each: p0's item is worth less than p1's, but p0 needs one send
    p = FallbackProblem(
        starts=np.array([0, 2, 4]),
        provider=np.array([0, 1, 0, 1]),
        reward=np.array([-0.5, 1.0, -0.2, 1.0]),
        cost=np.zeros((0, 4)),
        user_cap=np.array([1.0, 1.0]),
        budget_room=np.zeros(0),
        provider_room=np.array([np.inf, np.inf]),
        provider_deficit=np.array([1.0, 0.0]),
        budget_dual=np.zeros(0),
        provider_dual=np.zeros(2),
    )
    plan = plan_fallback(p)
    assert plan.chosen.tolist() == [False, True, True, False]  # user 1 serves p0 (its less bad item)
    assert plan.provider_deficit.tolist() == [0.0, 0.0] and plan.exposure.tolist() == [1.0, 1.0]


def test_the_duals_price_the_costs_and_a_binding_maximum() -> None:
    base = dict(
        starts=np.array([0, 2]),
        provider=np.array([0, 1]),
        reward=np.array([1.0, 0.6]),
        cost=np.array([[0.5, 0.0]]),
        user_cap=np.array([1.0]),
        budget_room=np.array([10.0]),
        provider_room=np.array([np.inf, np.inf]),
        provider_deficit=np.zeros(2),
    )
    cheap = FallbackProblem(**base, budget_dual=np.array([0.0]), provider_dual=np.zeros(2))
    assert plan_fallback(cheap).chosen.tolist() == [True, False]  # the better reward
    priced = FallbackProblem(**base, budget_dual=np.array([1.0]), provider_dual=np.zeros(2))
    assert plan_fallback(priced).chosen.tolist() == [False, True]  # 1 - 0.5 < 0.6
    crowded = FallbackProblem(**base, budget_dual=np.array([0.0]), provider_dual=np.array([0.5, 0.0]))
    assert plan_fallback(crowded).chosen.tolist() == [False, True]  # p0's maximum binds: 1 - 0.5 < 0.6
    nothing = FallbackProblem(
        **{**base, "reward": np.array([np.nan, np.nan])}, budget_dual=np.zeros(1), provider_dual=np.zeros(2)
    )
    assert not plan_fallback(nothing).chosen.any()  # no estimates: nothing is sent
