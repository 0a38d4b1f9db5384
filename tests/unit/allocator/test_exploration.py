"""The exploration floor keeps every row its plan keeps, and gives every pair a send probability."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import allocator
from allocator import AllocationProblem, ProblemValidationError, violations
from allocator.exploration import spread_plan, with_floor
from allocator.instances import random_instance


def _solved(p: AllocationProblem) -> np.ndarray:
    return allocator.solve(p, solver="highs").x


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    n_users=st.integers(5, 60),
    cap=st.sampled_from([1, (1, 3)]),
    share=st.sampled_from([0.01, 0.1, 0.5, 0.9]),
    tightness=st.sampled_from([0.3, 0.7, 1.0]),
)
def test_floor_keeps_every_row_of_an_optimal_plan(seed: int, n_users: int, cap, share: float, tightness: float) -> None:
    p = random_instance(n_users, (2, 6), 6, 2, cap, tightness, seed=seed)
    x = _solved(p)
    out = with_floor(p, x, share)
    v, v0 = violations(p, out.x), violations(p, x)
    assert ((out.x >= -1e-12) & (out.x <= 1 + 1e-12)).all()
    # the rows are linear, so the mix violates a row by at most what x does
    assert v.max_violation <= v0.max_violation + 1e-9
    assert 0.0 <= out.weight <= share and 0.0 < out.alpha <= 1.0
    # the floor: every pair at least w alpha u_e, exactly the closed form
    expected = (1 - out.weight) * x + out.weight * out.alpha * spread_plan(p)
    np.testing.assert_allclose(out.x, expected, atol=1e-15)
    assert (out.x >= out.weight * out.alpha * spread_plan(p) - 1e-15).all()
    # the objective loses at most the share w of the plan's reward
    assert p.reward @ out.x >= (1 - out.weight) * (p.reward @ x) - 1e-9


def test_floor_without_binding_rows_is_the_stated_mixture() -> None:
    # two users, caps 1 and 2, three candidates each, no budget, no providers' bounds
    p = AllocationProblem(
        user=np.array([0, 0, 0, 1, 1, 1]),
        item=np.arange(6),
        reward=np.array([3.0, 2, 1, 3, 2, 1]),
        cost=np.zeros((1, 6)),
        budget=np.array([10.0]),
        provider=np.zeros(6, dtype=np.int64),
        provider_min=np.array([-np.inf]),
        provider_max=np.array([np.inf]),
        user_cap=np.array([1.0, 2.0]),
    )
    x = np.array([1.0, 0, 0, 1, 1, 0])
    out = with_floor(p, x, 0.3)
    assert out.alpha == 1.0 and out.weight == pytest.approx(0.3)
    np.testing.assert_allclose(out.x, 0.7 * x + 0.3 * np.array([1 / 3] * 3 + [2 / 3] * 3))
    np.testing.assert_allclose(np.bincount(p.user, weights=out.x), [1.0, 2.0])


def test_spread_is_scaled_to_the_budget_and_restores_a_minimum() -> None:
    # one user, cap 2, four candidates; budget 1 on costs 1 each; provider 1 (pair 3) needs 0.5
    p = AllocationProblem(
        user=np.zeros(4, dtype=np.int64),
        item=np.arange(4),
        reward=np.array([4.0, 3, 2, 1]),
        cost=np.ones((1, 4)),
        budget=np.array([1.0]),
        provider=np.array([0, 0, 0, 1]),
        provider_min=np.array([-np.inf, 0.5]),
        provider_max=np.array([np.inf, np.inf]),
        user_cap=np.array([2.0]),
    )
    x = np.array([0.5, 0.0, 0.0, 0.5])  # meets the budget and provider 1's minimum exactly
    out = with_floor(p, x, 0.4)
    assert out.alpha == pytest.approx(0.5)  # u = 0.5 each costs 2; the budget allows 1
    # spread gives provider 1 only 0.25: beta = (0.5 - 0.25) / (0.5 - 0.25) = 1, so no floor is possible
    assert out.weight == 0.0
    np.testing.assert_allclose(out.x, x)
    p2 = AllocationProblem(
        **{**{k: getattr(p, k) for k in allocator.problem.PROBLEM_KEYS}, "provider_min": np.array([-np.inf, 0.3])}
    )
    x2 = np.array([0.5, 0.0, 0.0, 0.5])
    out2 = with_floor(p2, x2, 0.4)
    # beta = (0.3 - 0.25) / (0.5 - 0.25) = 0.2, w = 0.4 * 0.8
    assert out2.weight == pytest.approx(0.32)
    assert violations(p2, out2.x).max_violation <= 1e-12
    assert (out2.x > 0).all()


@pytest.mark.parametrize("share", [-0.1, 1.0, float("nan")])
def test_bad_share_is_a_typed_error(share: float) -> None:
    p = random_instance(5, 3, 2, 1, 1, 0.7, seed=0)
    with pytest.raises(ProblemValidationError):
        with_floor(p, np.zeros(p.n_pairs), share)


def test_where_the_spread_meets_the_rows_every_pair_gets_a_send_probability() -> None:
    # budgets at the unconstrained optimum: the spread plan meets the provider bounds after its scaling
    p = random_instance(400, (5, 15), 20, 2, (1, 2), 1.0, seed=3)
    out = with_floor(p, _solved(p), 0.1)
    assert out.weight > 0.0
    assert out.x.min() >= out.weight * out.alpha * spread_plan(p).min() > 0.0
