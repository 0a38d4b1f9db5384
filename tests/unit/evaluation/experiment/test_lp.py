"""The LP of a batch on a method's scores: HiGHS against an independent dense LP, and the elastic fallback."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.optimize

import allocator
from allocator import AllocatorError
from evaluation.email_batch import BatchConstraints
from evaluation.email_world import EmailWorld
from evaluation.errors import OracleInfeasible
from evaluation.experiment.lp import allocation_problem, solve_lp


def _dense_lp_objective(reward: np.ndarray, cost: np.ndarray, world: EmailWorld, cons: BatchConstraints) -> float:
    """max reward @ x under the batch's rows, built with explicit loops and solved by linprog."""
    batch = world.candidates(0)
    n = batch.n_pairs
    rows, rhs = [], []
    for u in range(world.config.n_users):
        rows.append([1.0 if batch.pair_user[e] == u else 0.0 for e in range(n)])
        rhs.append(float(cons.user_cap[u]))
    rows.append(list(cost))
    rhs.append(float(cons.budget[0]))
    for p in range(world.config.n_providers):
        if cons.provider_min[p] > 0:
            rows.append([-1.0 if batch.pair_provider[e] == p else 0.0 for e in range(n)])
            rhs.append(-float(cons.provider_min[p]))
    res = scipy.optimize.linprog(-reward, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=(0, 1), method="highs-ds")
    assert res.status == 0
    return float(-res.fun)


def test_solve_lp_reaches_the_dense_lp_optimum_and_keeps_every_row(tiny_world: EmailWorld) -> None:
    batch = tiny_world.candidates(0)
    cons = tiny_world.constraints(batch)
    rng = np.random.default_rng(0)
    reward = rng.random(batch.n_pairs) * 2
    cost = rng.random(batch.n_pairs) * 0.04
    solved = solve_lp(batch, cons, reward, cost)
    assert not solved.elastic
    assert abs(reward @ solved.x - _dense_lp_objective(reward, cost, tiny_world, cons)) < 1e-6
    assert cost @ solved.x <= cons.budget[0] + 1e-7
    per_user = np.bincount(batch.pair_user, weights=solved.x)
    assert np.all(per_user <= cons.user_cap + 1e-7)
    exposure = np.bincount(batch.pair_provider, weights=solved.x, minlength=tiny_world.config.n_providers)
    assert np.all(exposure >= cons.provider_min - 1e-7)


def test_an_lp_infeasible_on_the_scores_is_solved_elastic(tiny_world: EmailWorld) -> None:
    batch = tiny_world.candidates(0)
    cons = tiny_world.constraints(batch)
    # costs so high that the provider minimums alone exceed the budget
    cost = np.full(batch.n_pairs, 10.0 * cons.budget[0])
    solved = solve_lp(batch, cons, np.ones(batch.n_pairs), cost)
    assert solved.elastic
    assert np.all((solved.x >= 0) & (solved.x <= 1))
    assert np.all(np.bincount(batch.pair_user, weights=solved.x) <= cons.user_cap + 1e-7)


def test_the_problem_has_only_the_rows_that_can_bind(tiny_world: EmailWorld) -> None:
    batch = tiny_world.candidates(0)
    cons = tiny_world.constraints(batch)
    problem = allocation_problem(batch, cons, np.ones(batch.n_pairs), np.zeros(batch.n_pairs))
    assert problem.cost.shape == (1, batch.n_pairs)
    assert np.all(np.isinf(problem.provider_max))  # the world has no maximums by default
    assert np.all((problem.provider_min == cons.provider_min) | np.isneginf(problem.provider_min))


def test_the_simplex_method_stands_in_when_the_interior_point_fails(
    tiny_world: EmailWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = tiny_world.candidates(0)
    cons = tiny_world.constraints(batch)
    reward, cost = np.linspace(0, 1, batch.n_pairs), np.full(batch.n_pairs, 1e-4)
    expected = solve_lp(batch, cons, reward, cost)
    real = allocator.solve
    methods: list[str] = []

    def ipm_fails(problem: Any, solver: str, **options: Any) -> Any:
        methods.append(options["method"])
        if options["method"] == "ipm":
            raise AllocatorError("HiGHS (ipm) ended with status Solve error")
        return real(problem, solver, **options)

    monkeypatch.setattr(allocator, "solve", ipm_fails)
    got = solve_lp(batch, cons, reward, cost)
    assert methods == ["ipm", "simplex"]
    assert reward @ got.x == pytest.approx(reward @ expected.x, abs=1e-7)

    def both_fail(problem: Any, solver: str, **options: Any) -> Any:
        raise AllocatorError("broken")

    monkeypatch.setattr(allocator, "solve", both_fail)
    with pytest.raises(OracleInfeasible, match="allocation LP not solved .ipm: broken; simplex: broken."):
        solve_lp(batch, cons, reward, cost)
