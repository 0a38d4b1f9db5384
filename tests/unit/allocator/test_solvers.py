"""The solver registry: lookup by name, the size rule of ``"auto"``, and registering a solver."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import allocator
from allocator import solvers
from allocator.dual_decomposition import solve_dual
from allocator.errors import ProblemValidationError
from allocator.highs import solve_highs
from allocator.problem import AllocationProblem
from allocator.result import AllocationResult


def _loose(n_pairs: int, seed: int = 0) -> AllocationProblem:
    """``n_pairs`` pairs, two per user (cap 1), a slack budget, one provider without bounds."""
    rng = np.random.default_rng(seed)
    return AllocationProblem(
        user=np.arange(n_pairs) // 2,
        item=np.arange(n_pairs) % 2,
        reward=rng.uniform(0.5, 1.5, n_pairs),
        cost=np.ones((1, n_pairs)),
        budget=np.array([float(n_pairs)]),
        provider=np.zeros(n_pairs, dtype=np.int64),
        provider_min=np.array([-np.inf]),
        provider_max=np.array([np.inf]),
        user_cap=np.array(1.0),
    )


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test are undone after it."""
    monkeypatch.setattr(solvers, "_REGISTRY", dict(solvers._REGISTRY))


def test_lookup_returns_the_built_in_solvers() -> None:
    assert solvers.get_solver("highs") is solve_highs
    assert solvers.get_solver("dual") is solve_dual
    assert solvers.solver_names() == ("dual", "highs")
    assert allocator.get_solver is solvers.get_solver


@pytest.mark.parametrize("name", ["nope", "auto", "", "HiGHS"])
def test_unknown_name_raises_naming_the_known_solvers(name: str) -> None:
    with pytest.raises(ProblemValidationError) as info:
        solvers.get_solver(name)
    assert str(info.value) == f"solver: unknown solver {name!r}; known solvers: 'dual', 'highs', 'auto'"


def test_solve_with_an_unknown_name_raises() -> None:
    with pytest.raises(ProblemValidationError, match="unknown solver 'simplex'; known solvers: 'dual', 'highs'"):
        allocator.solve(_loose(4), "simplex")


def test_auto_solver_is_highs_at_the_threshold_and_dual_above() -> None:
    t = allocator.AUTO_THRESHOLD
    assert t == solvers.AUTO_THRESHOLD == 50_000
    assert allocator.auto_solver(1) == "highs"
    assert allocator.auto_solver(t) == "highs"
    assert allocator.auto_solver(t + 1) == "dual"
    assert allocator.auto_solver(10, threshold=9) == "dual"
    assert allocator.auto_solver(0, threshold=0) == "highs"


def test_fallback_order_is_the_auto_choice_then_the_other() -> None:
    t = allocator.AUTO_THRESHOLD
    assert allocator.fallback_order(t) == ("highs", "dual")
    assert allocator.fallback_order(t + 1) == ("dual", "highs")
    assert allocator.fallback_order(5, threshold=4) == ("dual", "highs")


@pytest.mark.parametrize(("n_pairs", "expected"), [(50_000, "highs-ipm"), (50_001, "dual")])
def test_solve_auto_picks_highs_at_or_below_the_threshold_and_dual_above(n_pairs: int, expected: str) -> None:
    p = _loose(n_pairs)
    assert p.n_pairs == n_pairs
    res = allocator.solve(p)
    assert res.solver == expected
    assert allocator.solve(p, "auto").solver == expected
    # the optimum of this LP is each user's better pair
    best = np.maximum.reduceat(p.reward, np.arange(0, n_pairs, 2)).sum()
    np.testing.assert_allclose(res.objective, best, rtol=1e-3)


def test_solve_by_name_ignores_the_size() -> None:
    p = _loose(20)
    assert allocator.solve(p, "dual").solver == "dual"
    assert allocator.solve(p, "highs").solver == "highs-ipm"
    assert allocator.solve(p, "highs", method="simplex").solver == "highs-simplex"


def test_a_registered_solver_is_usable_by_name(registry: None) -> None:
    calls: list[dict[str, Any]] = []

    def fake(problem: AllocationProblem, **options: Any) -> AllocationResult:
        calls.append(options)
        x = np.zeros(problem.n_pairs)
        return AllocationResult(
            x=x,
            objective=0.0,
            budget_dual=np.zeros(problem.n_budgets),
            provider_dual=np.zeros(problem.n_providers),
            status="optimal",
            max_violation=0.0,
            max_relative_violation=0.0,
            iterations=0,
            seconds=0.0,
            solver="fake",
        )

    assert allocator.register("fake", fake) is fake
    assert "fake" in allocator.solver_names()
    assert solvers.get_solver("fake") is fake
    p = _loose(6)
    start = (np.zeros(1), np.zeros(1))
    res = allocator.solve(p, "fake", dual_start=start, tol=1e-3)
    assert res.solver == "fake"
    assert calls == [{"dual_start": start, "tol": 1e-3}]  # options reach the solver as given
    # the size rule is unchanged by a new solver
    assert allocator.solve(p).solver == "highs-ipm"


def test_register_refuses_reserved_and_taken_names(registry: None) -> None:
    with pytest.raises(ValueError, match="reserved"):
        solvers.register("auto", solve_highs)
    with pytest.raises(ValueError, match="reserved"):
        solvers.register("", solve_highs)
    with pytest.raises(ValueError, match="already registered"):
        solvers.register("highs", solve_dual)
    assert solvers.get_solver("highs") is solve_highs


def test_register_replace_swaps_a_built_in(registry: None) -> None:
    solvers.register("highs", solve_dual, replace=True)
    assert solvers.get_solver("highs") is solve_dual
