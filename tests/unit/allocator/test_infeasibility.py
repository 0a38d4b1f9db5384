"""Infeasible LPs: typed reports from both solvers, and the elastic fallback."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from allocator import solve
from allocator.dual_decomposition import solve_dual
from allocator.errors import InfeasibleAllocation
from allocator.feasibility import _cheapest_units
from allocator.highs import solve_highs
from allocator.instances import random_instance
from allocator.problem import AllocationProblem


def cheapest_minimum_spend(p: AllocationProblem, row: int) -> float:
    """Least spend of budget ``row`` that meets every provider minimum, by brute force per provider."""
    total = 0.0
    for q in range(p.n_providers):
        need = max(p.provider_min[q], 0.0) if np.isfinite(p.provider_min[q]) else 0.0
        costs = np.sort(p.cost[row, p.provider == q])
        full = int(np.floor(need))
        total += costs[:full].sum() + (need - full) * (costs[full] if full < costs.size else 0.0)
    return total


@pytest.fixture(scope="module")
def starved() -> tuple[AllocationProblem, float]:
    """Budget 0 set to half of what the provider minimums need at the least."""
    p = random_instance(300, (5, 12), 15, 2, (1, 2), 0.7, seed=4)
    need = cheapest_minimum_spend(p, 0)
    budget = p.budget.copy()
    budget[0] = 0.5 * need
    return dataclasses.replace(p, budget=budget), need


def test_precheck_bound_matches_brute_force(starved: tuple[AllocationProblem, float]) -> None:
    p, need = starved
    lo = np.where(np.isfinite(p.provider_min), np.maximum(p.provider_min, 0), 0)
    assert _cheapest_units(p.cost[0], p.provider, lo, p.n_providers).sum() == pytest.approx(need)


@pytest.mark.parametrize("solver", ["highs", "dual"])
def test_infeasible_budget_raises_a_typed_report(starved: tuple[AllocationProblem, float], solver: str) -> None:
    p, need = starved
    with pytest.raises(InfeasibleAllocation, match=r"budget\[0\]") as info:
        solve(p, solver)
    report = info.value.report
    budget_rows = [v for v in report.violations if v.kind == "budget" and v.index == 0]
    assert budget_rows and budget_rows[0].amount == pytest.approx(need - p.budget[0], rel=1e-9)


@pytest.mark.parametrize("solver", ["highs", "dual"])
def test_elastic_returns_the_stated_violations(starved: tuple[AllocationProblem, float], solver: str) -> None:
    p, need = starved
    res = solve(p, solver, elastic=True)
    assert res.status == "elastic"
    listed = {(v.kind, v.index): v for v in res.violations}
    assert ("budget", 0) in listed or any(k[0] == "provider_min" for k in listed)
    # the least total violation is at least what the pre-check proved, and each listed amount is real
    spend = p.cost[0] @ res.x
    short = np.maximum(
        np.where(np.isfinite(p.provider_min), p.provider_min, 0)
        - np.bincount(p.provider, weights=res.x, minlength=p.n_providers),
        0,
    )
    if ("budget", 0) in listed:
        assert listed[("budget", 0)].amount == pytest.approx(spend - p.budget[0], rel=1e-6)
    assert spend - p.budget[0] > 0 or short.sum() > 0
    # user caps and provider maximums stay hard
    assert (np.bincount(p.user, weights=res.x, minlength=p.n_users) <= p.caps + 1e-9).all()
    assert (np.bincount(p.provider, weights=res.x, minlength=p.n_providers) <= p.provider_max + 1e-9).all()


def test_conflict_the_precheck_cannot_see() -> None:
    """Provider minimums that fit one by one but not together under the user caps."""
    p = random_instance(200, 6, 6, 1, 1, 0.9, seed=5)
    size = np.bincount(p.provider, minlength=p.n_providers).astype(float)
    lo = np.minimum(size, 1.5 * p.n_users * size / size.sum())  # sum of minimums = 1.5 x total capacity
    q = dataclasses.replace(p, provider_min=lo, provider_max=np.full(p.n_providers, np.inf), budget=p.budget * 100)
    with pytest.raises(InfeasibleAllocation) as info:
        solve_highs(q)
    assert info.value.report.source == "highs"
    assert any(v.kind == "provider_min" for v in info.value.report.violations)
    with pytest.raises(InfeasibleAllocation) as info:
        solve_dual(q, max_iter=3000)
    assert info.value.report.source == "dual"
