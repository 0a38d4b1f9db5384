"""HiGHS solves against scipy's linprog, a closed form, and our own optimality-condition check."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from allocator.highs import solve_highs
from allocator.problem import AllocationProblem
from allocator.violations import row_activity


def linprog_optimum(p: AllocationProblem) -> float:
    """The LP optimum from scipy.optimize.linprog(method="highs"), built independently (sparse)."""
    e = p.n_pairs
    cols = np.arange(e)
    users = sp.csr_matrix((np.ones(e), (p.user, cols)), shape=(p.n_users, e))
    provs = sp.csr_matrix((np.ones(e), (p.provider, cols)), shape=(p.n_providers, e))
    fin_hi, fin_lo = np.isfinite(p.provider_max), np.isfinite(p.provider_min)
    a_ub = sp.vstack([users, sp.csr_matrix(p.cost), provs[fin_hi], -provs[fin_lo]]).tocsr()
    b_ub = np.concatenate([p.caps, p.budget, p.provider_max[fin_hi], -p.provider_min[fin_lo]])
    res = linprog(-p.reward, A_ub=a_ub, b_ub=b_ub, bounds=(0, 1), method="highs")
    assert res.status == 0, res.message
    return -res.fun


def test_objective_matches_linprog(instance: AllocationProblem) -> None:
    res = solve_highs(instance)
    assert res.status == "optimal"
    assert res.max_relative_violation <= 1e-9
    np.testing.assert_allclose(res.objective, linprog_optimum(instance), rtol=1e-9)


@pytest.mark.parametrize("method", ["simplex", "choose"])
def test_methods_agree(instance: AllocationProblem, method: str) -> None:
    a, b = solve_highs(instance, method="ipm"), solve_highs(instance, method=method)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-9)


def test_closed_form_single_user() -> None:
    # one user with cap 2 and four items, one loose budget: the two best rewards
    p = AllocationProblem(
        user=np.zeros(4, dtype=np.int64),
        item=np.arange(4),
        reward=np.array([3.0, 1.0, 4.0, 2.0]),
        cost=np.ones((1, 4)),
        budget=np.array([10.0]),
        provider=np.zeros(4, dtype=np.int64),
        provider_min=np.array([-np.inf]),
        provider_max=np.array([np.inf]),
        user_cap=np.array([2.0]),
    )
    res = solve_highs(p)
    np.testing.assert_allclose(res.x, [1, 0, 1, 0], atol=1e-9)
    assert res.objective == pytest.approx(7.0)
    assert res.budget_dual[0] == pytest.approx(0.0, abs=1e-12)


def test_closed_form_budget_binds() -> None:
    # two users, cap 1, budget 1.5 on a unit cost: user 1 in full, then half of user 0 -> price = r of the marginal
    p = AllocationProblem(
        user=np.array([0, 1]),
        item=np.array([0, 1]),
        reward=np.array([2.0, 3.0]),
        cost=np.ones((1, 2)),
        budget=np.array([1.5]),
        provider=np.array([0, 0]),
        provider_min=np.array([-np.inf]),
        provider_max=np.array([np.inf]),
        user_cap=np.array(1.0),
    )
    res = solve_highs(p)
    np.testing.assert_allclose(res.x, [0.5, 1.0], atol=1e-9)
    assert res.budget_dual[0] == pytest.approx(2.0)  # one more unit of budget buys 1 unit of reward 2


def test_duals_satisfy_optimality_conditions(instance: AllocationProblem) -> None:
    """Complementary slackness, dual feasibility and a zero duality gap, computed here from x and duals."""
    p = instance
    res = solve_highs(p, crossover=True)
    x, lam, nu = res.x, res.budget_dual, res.provider_dual
    per_user, per_budget, per_prov = row_activity(p, x)
    tol = 1e-6
    assert (lam >= 0).all()
    np.testing.assert_allclose(lam * (p.budget - per_budget), 0.0, atol=tol)
    # nu > 0 only where the maximum binds, nu < 0 only where the minimum binds
    assert np.all(np.abs(np.where(nu > tol, per_prov - p.provider_max, 0.0)) <= tol)
    assert np.all(np.abs(np.where(nu < -tol, per_prov - p.provider_min, 0.0)) <= tol)
    # reduced costs d_e = r_e - lam.c_e - nu_p; the least valid user dual is max(0, max over x_e < 1 of d_e)
    d = p.reward - lam @ p.cost - nu[p.provider]
    not_full = np.where(x < 1 - tol, d, -np.inf)
    mu = np.maximum(0.0, np.full(p.n_users, -np.inf))
    np.maximum.at(mu, p.user, not_full)
    # dual feasibility: any pair in use has d_e >= mu_u; any pair below 1 has d_e <= mu_u
    assert np.all(d[x > tol] >= mu[p.user[x > tol]] - tol)
    # user complementary slackness: mu_u > 0 only when the user's cap binds
    assert np.all(np.where(mu > tol, np.abs(per_user - p.caps), 0.0) <= tol)
    # strong duality: primal objective == lam.B + psi(nu) + mu.k + sum (d - mu)^+
    pos, neg = nu > 0, nu < 0
    psi = (p.provider_max[pos] * nu[pos]).sum() + (p.provider_min[neg] * nu[neg]).sum()
    dual_obj = lam @ p.budget + psi + mu @ p.caps + np.maximum(d - mu[p.user], 0.0).sum()
    np.testing.assert_allclose(dual_obj, res.objective, rtol=1e-7)


def test_elastic_on_a_feasible_instance_changes_nothing(instance: AllocationProblem) -> None:
    a, b = solve_highs(instance), solve_highs(instance, elastic=True)
    assert b.status == "optimal" and not b.violations
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-9)
