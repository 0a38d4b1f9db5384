"""The dual-decomposition solver against HiGHS, the capped-simplex projection against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.dual_decomposition import solve_dual
from allocator.highs import solve_highs
from allocator.instances import random_instance
from allocator.problem import AllocationProblem
from allocator.projection import project_capped_simplex
from allocator.repair import repair
from allocator.violations import violations


def test_matches_highs(instance: AllocationProblem) -> None:
    exact = solve_highs(instance)
    res = solve_dual(instance, tol=1e-4)
    assert res.status == "optimal"
    assert abs(res.objective - exact.objective) / abs(exact.objective) <= 1e-3
    assert res.max_violation_before_repair <= 1e-3
    assert res.max_relative_violation <= 1e-12
    assert res.objective <= exact.objective * (1 + 1e-12)  # a feasible x cannot beat the optimum
    # x_unrepaired is the primal the duals give; its violation is the one reported
    before = violations(instance, res.x_unrepaired).max_relative_violation
    assert before == pytest.approx(res.max_violation_before_repair)


def test_float32_is_as_good_within_tolerance() -> None:
    p = random_instance(300, 10, 20, 2, (1, 2), 0.7, seed=7)
    exact = solve_highs(p)
    res = solve_dual(p, tol=1e-4, dtype=torch.float32)
    assert abs(res.objective - exact.objective) / exact.objective <= 1e-3
    assert res.max_violation_before_repair <= 1e-3
    assert res.max_relative_violation <= 1e-12


def test_duals_point_the_same_way_as_highs() -> None:
    p = random_instance(300, 10, 20, 2, (1, 2), 0.7, seed=8)
    exact, res = solve_highs(p, crossover=True), solve_dual(p, tol=1e-5, gamma=1e-4)
    # which provider rows bind (sign of the dual) agrees wherever HiGHS' dual is clearly nonzero
    clear = np.abs(exact.provider_dual) > 1e-2
    assert np.array_equal(np.sign(exact.provider_dual[clear]), np.sign(res.provider_dual[clear]))
    np.testing.assert_allclose(res.budget_dual, exact.budget_dual, rtol=0.05, atol=1e-2)


def test_repair_makes_a_perturbed_optimum_feasible(instance: AllocationProblem) -> None:
    rng = np.random.default_rng(0)
    x = np.clip(solve_highs(instance).x * 1.02 + rng.uniform(0, 0.02, instance.n_pairs), 0, 1)
    assert violations(instance, x).max_relative_violation > 1e-3
    fixed = repair(instance, x)
    assert violations(instance, fixed).max_relative_violation <= 1e-12
    assert ((fixed >= 0) & (fixed <= 1)).all()


def brute_projection(v: np.ndarray, k: float) -> np.ndarray:
    """Projection onto {0 <= x <= 1, sum x <= k} by bisection on the threshold (independent code)."""
    x = np.clip(v, 0, 1)
    if x.sum() <= k:
        return x
    lo, hi = 0.0, float(v.max())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.clip(v - mid, 0, 1).sum() > k else (lo, mid)
    return np.clip(v - hi, 0, 1)


rows_strategy = st.lists(
    st.tuples(
        st.lists(st.floats(-50, 50, allow_nan=False).map(lambda f: round(f, 2)), min_size=1, max_size=8),
        st.integers(0, 4),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(rows=rows_strategy, warm=st.floats(0, 60))
def test_projection_is_feasible_and_matches_brute_force(rows: list, warm: float) -> None:
    d = max(len(v) for v, _ in rows)
    v = np.full((len(rows), d), -100.0)  # padding far below 0 never enters the solution
    for i, (vals, _) in enumerate(rows):
        v[i, : len(vals)] = vals
    k = np.array([float(c) for _, c in rows])
    tau0 = torch.full((len(rows),), warm, dtype=torch.float64)
    x, tau = project_capped_simplex(torch.tensor(v), torch.tensor(k), tau0)
    x = x.numpy()
    assert (x >= 0).all() and (x <= 1).all()
    assert (x.sum(axis=1) <= k + 1e-9).all()
    ref = np.stack([brute_projection(v[i], k[i]) for i in range(len(rows))])
    np.testing.assert_allclose(x, ref, atol=1e-8)
