"""Warm starts of the dual solver (``solve_dual(..., dual_start=...)``), each checked against HiGHS.

The truth is HiGHS' exact objective; the tolerances are those of the cold dual-vs-HiGHS tests in
``test_dual_decomposition.py``. The iteration counts compare a warm solve with the cold solve of
the same instance (``result.iterations``, never wall time).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from allocator import solve
from allocator.dual_decomposition import solve_dual
from allocator.errors import ProblemValidationError
from allocator.highs import default_elastic_penalty, solve_highs
from allocator.instances import random_instance
from allocator.problem import AllocationProblem
from allocator.result import AllocationResult


def assert_matches_highs(res: AllocationResult, exact: AllocationResult) -> None:
    """The checks of ``test_dual_decomposition.test_matches_highs``."""
    assert res.status == "optimal"
    assert abs(res.objective - exact.objective) / abs(exact.objective) <= 1e-3
    assert res.max_violation_before_repair <= 1e-3
    assert res.max_relative_violation <= 1e-12
    assert res.objective <= exact.objective * (1 + 1e-12)  # a feasible x cannot beat the optimum


@pytest.fixture(scope="module")
def solved(instance: AllocationProblem) -> tuple[AllocationResult, AllocationResult]:
    """``(HiGHS' exact result, the cold dual solve at tol=1e-4)`` of ``instance``; HiGHS runs its
    crossover at this size, so its duals are exact vertex duals."""
    return solve_highs(instance), solve_dual(instance, tol=1e-4)


def test_start_from_highs_duals_matches_highs_in_fewer_iterations(
    instance: AllocationProblem, solved: tuple[AllocationResult, AllocationResult]
) -> None:
    exact, cold = solved
    warm = solve_dual(instance, tol=1e-4, dual_start=(exact.budget_dual, exact.provider_dual))
    assert_matches_highs(warm, exact)
    assert warm.iterations < cold.iterations


def test_start_from_own_result_stops_at_once(
    instance: AllocationProblem, solved: tuple[AllocationResult, AllocationResult]
) -> None:
    """A result's duals go in as they are (same units and signs): the solve stops right away."""
    cold = solved[1]
    again = solve_dual(instance, tol=1e-4, dual_start=(cold.budget_dual, cold.provider_dual))
    assert again.status == "optimal"
    assert again.iterations <= 2 + 3  # the start check's two passes, then a stop within a few steps
    assert again.objective == pytest.approx(cold.objective, rel=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_start_from_another_batch_matches_highs_in_fewer_iterations(seed: int) -> None:
    """The previous batch: same generator and sizes (so budgets and provider bounds of the same
    scale, set the same way), other users and rewards. At 2,000 users the duals of two such batches
    are close; at 400 users (the ``instance`` fixture) they are not, and a start from them saves
    nothing there."""
    shape = dict(n_users=2000, candidates_per_user=(5, 15), n_providers=20, n_budgets=2, user_cap=(1, 2), tightness=0.7)
    p = random_instance(**shape, seed=seed)
    previous = solve_dual(random_instance(**shape, seed=seed + 10), tol=1e-4)
    exact = solve_highs(p)
    cold = solve_dual(p, tol=1e-4)
    warm = solve_dual(p, tol=1e-4, dual_start=(previous.budget_dual, previous.provider_dual))
    assert_matches_highs(warm, exact)
    assert warm.iterations < cold.iterations


GARBAGE = {
    "huge": lambda lam, nu, s: (100 * lam + 1e6 * s, 100 * nu + 1e6 * s),
    "wrong_sign": lambda lam, nu, s: (-lam - s, -10 * nu),
    "providers_flipped": lambda lam, nu, s: (lam, -nu + s * np.sign(-nu)),
    "huge_negative_providers": lambda lam, nu, s: (0 * lam, np.full_like(nu, -1e3 * s)),
    "budget_only_off": lambda lam, nu, s: (5 * lam, nu),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_start_still_matches_highs(
    instance: AllocationProblem, solved: tuple[AllocationResult, AllocationResult], kind: str
) -> None:
    exact = solved[0]
    scale = float(np.abs(instance.reward).max())
    start = GARBAGE[kind](exact.budget_dual, exact.provider_dual, scale)
    res = solve_dual(instance, tol=1e-4, dual_start=start)
    assert_matches_highs(res, exact)
    assert np.isfinite(res.budget_dual).all() and (res.budget_dual >= 0).all()


def test_start_worse_than_zero_costs_only_the_check(
    instance: AllocationProblem, solved: tuple[AllocationResult, AllocationResult]
) -> None:
    """Duals far too large have a dual value above the cold start's: the start is dropped and the
    solve is the cold one, plus the check's two primal passes."""
    cold = solved[1]
    scale = float(np.abs(instance.reward).max())
    res = solve_dual(
        instance,
        tol=1e-4,
        dual_start=(np.full(instance.n_budgets, 1e6 * scale), np.full(instance.n_providers, 1e6 * scale)),
    )
    assert res.status == "optimal"
    # the same iterations up to the projection's warm thresholds (rounding), the same objective
    assert cold.iterations + 2 - 3 <= res.iterations <= cold.iterations + 2 + 3
    assert res.objective == pytest.approx(cold.objective, rel=1e-4)


@pytest.fixture(scope="module")
def small() -> AllocationProblem:
    return random_instance(100, (3, 6), 5, 2, (1, 2), 0.7, seed=3)


def _bad_starts(p: AllocationProblem) -> dict[str, object]:
    lam, nu = np.zeros(p.n_budgets), np.zeros(p.n_providers)
    with_nan, with_inf = nu.copy(), lam.copy()
    with_nan[1], with_inf[0] = np.nan, np.inf
    return {
        "budget_too_long": (np.zeros(p.n_budgets + 1), nu),
        "providers_too_short": (lam, np.zeros(p.n_providers - 1)),
        "swapped": (nu, lam),
        "two_dimensional": (lam[None, :], nu),
        "scalar_budget": (0.0, nu),
        "nan": (lam, with_nan),
        "inf": (with_inf, nu),
        "not_a_pair": np.zeros(p.n_budgets + p.n_providers),
        "triple": (lam, nu, nu),
        "strings": (["a"] * p.n_budgets, nu),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "budget_too_long",
        "providers_too_short",
        "swapped",
        "two_dimensional",
        "scalar_budget",
        "nan",
        "inf",
        "not_a_pair",
        "triple",
        "strings",
    ],
)
def test_malformed_start_raises(small: AllocationProblem, kind: str) -> None:
    start = _bad_starts(small)[kind]
    with pytest.raises(ProblemValidationError, match="dual_start"):
        solve_dual(small, dual_start=start)  # type: ignore[arg-type]
    with pytest.raises(ProblemValidationError, match="dual_start"):
        solve(small, "dual", dual_start=start)


def test_nan_message_names_the_array_and_index(small: AllocationProblem) -> None:
    nu = np.zeros(small.n_providers)
    nu[3] = np.nan
    with pytest.raises(ProblemValidationError, match=r"provider_dual.*index 3"):
        solve_dual(small, dual_start=(np.zeros(small.n_budgets), nu))


def test_highs_takes_no_dual_start(small: AllocationProblem) -> None:
    start = (np.zeros(small.n_budgets), np.zeros(small.n_providers))
    with pytest.raises(ProblemValidationError, match="HiGHS takes no dual start"):
        solve(small, "highs", dual_start=start)
    # "auto" picks HiGHS at this size and drops the start; the answer is HiGHS' own
    assert small.n_pairs < 200_000
    res = solve(small, "auto", dual_start=start)
    assert res.solver.startswith("highs")
    assert res.objective == pytest.approx(solve_highs(small).objective, rel=1e-12)
    assert solve(small, "highs", dual_start=None).solver.startswith("highs")


def test_solve_passes_the_start_to_the_dual_solver(
    instance: AllocationProblem, solved: tuple[AllocationResult, AllocationResult]
) -> None:
    exact, cold = solved  # solve(..., "dual") and solve_dual share the defaults, tol=1e-4 included
    warm = solve(instance, "dual", dual_start=(exact.budget_dual, exact.provider_dual))
    assert_matches_highs(warm, exact)
    assert warm.iterations < cold.iterations


def test_elastic_accepts_a_start_on_a_feasible_lp(
    instance: AllocationProblem, solved: tuple[AllocationResult, AllocationResult]
) -> None:
    """Elastic mode on a feasible LP ends optimal at HiGHS' objective, from a good start and from
    one far outside the elastic box (clipped into it)."""
    exact = solved[0]
    for start in [
        (exact.budget_dual, exact.provider_dual),
        (np.full(instance.n_budgets, 1e12), np.full(instance.n_providers, -1e12)),
    ]:
        res = solve_dual(instance, tol=1e-4, elastic=True, dual_start=start)
        assert_matches_highs(res, exact)


def test_elastic_start_on_an_infeasible_lp_gives_highs_violations() -> None:
    """Budget 0 starved (as in test_infeasibility): the elastic solve from HiGHS' elastic duals,
    and from budget duals far above the elastic box (clipped to it), lets the same rows give way by
    the same amounts as HiGHS' elastic solve."""
    p = random_instance(300, (5, 12), 15, 2, (1, 2), 0.7, seed=4)
    budget = p.budget.copy()
    budget[0] *= 0.05
    q = dataclasses.replace(p, budget=budget)
    exact = solve_highs(q, elastic=True)
    assert exact.status == "elastic"
    lam_cap = default_elastic_penalty(q) / np.abs(q.cost).max(axis=1)
    # the second start: the budget duals at the box (HiGHS' are there) raised far above it
    above = np.where(exact.budget_dual >= lam_cap * (1 - 1e-9), 1e12, exact.budget_dual)
    assert (above == 1e12).any()
    for start in [(exact.budget_dual, exact.provider_dual), (above, exact.provider_dual)]:
        res = solve_dual(q, tol=1e-4, elastic=True, dual_start=start)
        assert res.status == "elastic"
        assert res.iterations < 200  # a cold elastic solve of this LP takes over 1,000
        want = {(v.kind, v.index): v.amount for v in exact.violations}
        got = {(v.kind, v.index): v.amount for v in res.violations}
        assert got.keys() == want.keys()
        for key, amount in want.items():
            assert got[key] == pytest.approx(amount, rel=1e-2)
        assert res.objective == pytest.approx(exact.objective, rel=1e-3)
        assert (res.budget_dual <= lam_cap * (1 + 1e-12)).all()  # inside the elastic box
