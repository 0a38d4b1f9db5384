"""Primal repair (allocator.repair): provider minimums reached by swaps inside users at their cap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator import AllocationProblem, solve
from allocator.instances import random_instance
from allocator.repair import repair
from allocator.violations import violations

NO_MIN, NO_MAX = -np.inf, np.inf


def _email_lps(n_users: int) -> tuple[AllocationProblem, AllocationProblem]:
    """Batches 1 and 2 of the email world: 20 candidates a user, one budget row, 8 providers with a
    minimum exposure, cap 1 a user (every user at its cap in the optimum)."""
    from evaluation.email_world import EmailWorld, EmailWorldConfig

    w = EmailWorld(EmailWorldConfig(n_users=n_users, candidates_per_user=20, n_items=40, seed=0))

    def lp(i: int) -> AllocationProblem:
        b = w.candidates(i)
        c = w.constraints(b)
        r, cost = w.expected_reward_and_cost(b)
        return AllocationProblem(
            user=b.pair_user,
            item=b.pair_item,
            reward=r,
            cost=cost.T,
            budget=c.budget,
            provider=b.pair_provider,
            provider_min=c.provider_min,
            provider_max=c.provider_max,
            user_cap=c.user_cap,
        )

    return lp(1), lp(2)


@pytest.mark.parametrize("n_users", [2000, pytest.param(10000, marks=pytest.mark.slow)])
def test_dual_solution_on_the_email_lp_is_feasible_and_near_highs(n_users: int) -> None:
    p1, p2 = _email_lps(n_users)
    cold = solve(p1, solver="dual")
    warm = solve(p2, solver="dual", dual_start=(cold.budget_dual, cold.provider_dual))
    # the case this is about: every user at its cap and a provider minimum short before repair
    x_u = cold.x_unrepaired
    assert (np.bincount(p1.user, weights=x_u, minlength=p1.n_users) >= p1.caps - 1e-6).mean() > 0.99
    assert violations(p1, x_u).provider_min_rel.max() > 1e-6
    for p, res in ((p1, cold), (p2, warm)):
        assert res.max_violation_before_repair > 1e-9
        v = violations(p, res.x)
        assert v.max_relative_violation <= 1e-9, v.listing()
        exact = solve(p, solver="highs")
        assert abs(res.objective - exact.objective) / abs(exact.objective) <= 1e-3  # as test_matches_highs
        assert res.objective <= exact.objective * (1 + 1e-12)


def _problem(user, provider, lo, hi, cap=1.0, reward=None, cost=None, budget=None) -> AllocationProblem:
    user, provider = np.asarray(user), np.asarray(provider)
    e = user.size
    return AllocationProblem(
        user=user,
        item=np.arange(e),
        reward=np.ones(e) if reward is None else np.asarray(reward, float),
        cost=np.zeros((1, e)) if cost is None else np.atleast_2d(cost),
        budget=np.ones(1) if budget is None else np.atleast_1d(budget),
        provider=provider,
        provider_min=np.asarray(lo, float),
        provider_max=np.asarray(hi, float),
        user_cap=np.asarray(cap, float),
    )


def test_swap_moves_exactly_the_deficit_best_pairs_first() -> None:
    # 4 users at cap 1, each with a pair of provider 0 (min 2.5, empty) and one of provider 1 (no min, full)
    user = [0, 0, 1, 1, 2, 2, 3, 3]
    prov = [0, 1, 0, 1, 0, 1, 0, 1]
    p = _problem(user, prov, lo=[2.5, NO_MIN], hi=[NO_MAX, NO_MAX])
    x = np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=float)
    score = np.array([4, 0, 1, 0, 3, 0, 2, 0], dtype=float)  # provider 0 preferred at users 0, 2, 3, 1
    assert violations(p, x).provider_min[0] == pytest.approx(2.5)
    fixed = repair(p, x, score=score)
    assert violations(p, fixed).max_relative_violation <= 1e-12
    up, down = np.maximum(fixed - x, 0).sum(), np.maximum(x - fixed, 0).sum()
    assert up == pytest.approx(2.5) and down == pytest.approx(2.5)  # moved = deficit, no more
    np.testing.assert_allclose(fixed, [1, 0, 0, 1, 1, 0, 0.5, 0.5], atol=1e-12)


def test_swap_never_takes_a_donor_below_its_minimum_and_prefers_the_worst_donor() -> None:
    # 3 users at cap 1 with pairs of providers 0 (min 2), 1 (min 1, holds 1.5) and 2 (no min, holds 1.5).
    user = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    prov = [0, 1, 2, 0, 1, 2, 0, 1, 2]
    p = _problem(user, prov, lo=[2.0, 1.0, NO_MIN], hi=[NO_MAX, NO_MAX, NO_MAX])
    x = np.array([0, 0.5, 0.5, 0, 0.5, 0.5, 0, 0.5, 0.5])
    score = np.array([5, 1, 2, 5, 2, 1, 5, 1, 2], dtype=float)
    fixed = repair(p, x, score=score)
    sp = np.bincount(p.provider, weights=fixed)
    assert violations(p, fixed).max_relative_violation <= 1e-12
    assert sp[0] == pytest.approx(2.0)  # deficit 2 met exactly
    assert sp[1] >= 1.0 - 1e-12  # donor 1 gave at most its surplus 0.5
    assert np.abs(fixed - x).sum() == pytest.approx(4.0)  # 2 up, 2 down
    np.testing.assert_allclose(np.bincount(p.user, weights=fixed), 1.0)
    # each user's worst-score donor pair went first (users 0 and 1); provider 1's surplus went in full
    assert fixed[1] == pytest.approx(0.0) and fixed[5] == pytest.approx(0.0)
    assert sp[1] == pytest.approx(1.0) and sp[2] == pytest.approx(0.0)


def test_unreachable_minimum_is_left_short_and_nothing_else_breaks() -> None:
    # provider 0 (min 3) is short; its only pairs belong to users whose other pairs are of provider 1,
    # which sits exactly at its minimum (no donor), or it is already at 1 (no room at all).
    user = [0, 0, 1, 1, 2, 2]
    prov = [0, 1, 0, 1, 0, 2]
    p = _problem(user, prov, lo=[3.0, 2.0, NO_MIN], hi=[NO_MAX, 2.0, 1.0])
    x = np.array([0, 1, 0, 1, 1, 0], dtype=float)
    fixed = repair(p, x, score=np.arange(6.0))
    np.testing.assert_array_equal(fixed, x)  # nothing to gain: nothing moves
    v = violations(p, fixed)
    assert v.provider_min[0] == pytest.approx(2.0)
    assert v.provider_min[1:].max() == 0 and v.provider_max.max() == 0
    assert v.user_cap.max() == 0 and v.bounds.max() == 0 and v.budget.max() == 0


def test_swaps_that_would_break_a_budget_pass_4_cannot_fix_are_not_kept() -> None:
    # user 0 at cap on a cheap pair of provider 1; provider 0 (min 3, holds 2 from users 1-2, so short by
    # 1 = 1/3 relative) only has an expensive pair there; after the swap provider 0 sits at its minimum
    # and provider 1 has nothing left, so pass 4 could not win the budget back (99/100 relative over).
    user = [0, 0, 1, 2]
    prov = [0, 1, 0, 0]
    p = _problem(user, prov, lo=[3.0, NO_MIN], hi=[NO_MAX, NO_MAX], cost=[[100.0, 0.0, 0.0, 0.0]], budget=[1.0])
    x = np.array([0.0, 1.0, 1.0, 1.0])
    fixed = repair(p, x)
    np.testing.assert_array_equal(fixed, x)
    v = violations(p, fixed)
    # either the swap (budget 9x over) or no swap (minimum short by 1): the smaller relative violation
    assert v.budget.max() == 0 and v.provider_min[0] == pytest.approx(1.0)
    assert v.user_cap.max() == 0 and v.bounds.max() == 0


def _greedy(p: AllocationProblem, rng: np.random.Generator) -> np.ndarray:
    """Each user's best pairs (noisy reward) up to its cap: users at cap, low-reward providers short,
    so the minimums need swaps."""
    key = p.reward * rng.lognormal(0, 0.3, p.n_pairs)
    order = np.lexsort((-key, p.user))
    first = np.searchsorted(p.user[order], p.user[order], side="left")
    rank = np.empty(p.n_pairs)
    rank[order] = np.arange(p.n_pairs) - first
    return np.clip(p.caps[p.user] - rank, 0.0, 1.0)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    n_users=st.integers(5, 60),
    cap=st.sampled_from([1, (1, 3)]),
    use_score=st.booleans(),
    mode=st.sampled_from(["greedy", 0.05, 0.5, 1.0]),
)
def test_repair_keeps_hard_rows_and_never_worsens_minimums(seed: int, n_users: int, cap, use_score: bool, mode) -> None:
    p = random_instance(n_users, (2, 6), 6, 2, cap, 0.7, seed=seed)
    rng = np.random.default_rng(seed)
    x = _greedy(p, rng) if mode == "greedy" else rng.uniform(0, mode, p.n_pairs) * (rng.random(p.n_pairs) < 0.7)
    score = rng.normal(size=p.n_pairs) if use_score else None
    hard = repair(p, x, hard_only=True)  # passes 1-2: caps and maximums only
    fixed = repair(p, x, score=score)
    v, vh = violations(p, fixed), violations(p, hard)
    assert ((fixed >= 0) & (fixed <= 1)).all()
    assert v.user_cap_rel.max() <= 1e-12 and v.provider_max_rel.max() <= 1e-12
    assert v.provider_min.sum() <= vh.provider_min.sum() + 1e-9
    met = vh.provider_min == 0  # a provider at its minimum never drops below it
    assert (v.provider_min[met] <= 1e-9).all()
    # and feeding the repaired x back leaves it feasible where it was
    again = violations(p, repair(p, fixed, score=score))
    assert again.user_cap_rel.max() <= 1e-12 and again.provider_max_rel.max() <= 1e-12
