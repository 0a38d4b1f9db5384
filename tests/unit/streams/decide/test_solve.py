"""The worker's solve chain over the allocator package, HiGHS as the reference."""

from __future__ import annotations

import numpy as np
import pytest

import streams.decide.solve as aw
from streams.decide.batch_lp import BatchLP
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.solve import DualMemory, solve_batch
from streams.records import BatchControlRecord, BudgetSpec, ProviderSpec, ScoresRecord
from tests.factories import control_record as control
from tests.factories import scores_record as scores


def _batch(
    n_users: int, seed: int, providers: tuple[ProviderSpec, ...], limit: float
) -> tuple[BatchControlRecord, dict[str, ScoresRecord]]:
    c = control(expected=n_users, budgets=(BudgetSpec("unsubs", "unsubscription", limit),), providers=providers)
    recs = {
        f"u{u:03d}": scores(
            f"u{u:03d}", n=6, seed=seed * 1000 + u, cap=1 + u % 2, providers=tuple(f"p{(u + j) % 4}" for j in range(6))
        )
        for u in range(n_users)
    }
    return c, recs


def test_solve_batch_returns_a_feasible_optimal_allocation() -> None:

    c, recs = _batch(60, 1, (ProviderSpec("p1", 20.0, float("inf")), ProviderSpec("p2", 0.0, 10.0)), limit=10.0)
    lp = BatchLP.build(c, recs)
    cfg = AllocatorWorkerConfig.for_prefix()
    sol = solve_batch(lp, cfg)
    assert sol.status == "optimal" and sol.solver.startswith("highs")
    assert sol.max_relative_violation <= cfg.max_relative_violation
    used, exposure, per_user = lp.usage(sol.x)
    assert used[0] <= 10.0 * (1 + 1e-6) and exposure[0] >= 20.0 - 1e-6 and exposure[1] <= 10.0 + 1e-6
    assert np.all(per_user <= lp.user_cap + 1e-9)
    assert sol.objective == pytest.approx(float(lp.reward @ sol.x))


def test_a_dual_solution_out_of_tolerance_falls_back_to_highs(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the dual solver first (``solver="dual"``, as above the auto threshold), an x it
    returns that breaks a constraint by more than the tolerance is never published: HiGHS
    re-solves. (The dual solver itself is the allocator's to test; a stand-in returning an
    over-budget x drives the fallback here.)"""
    from allocator.highs import solve_highs

    calls: list[str] = []

    class Bad:
        def __init__(self, n: int) -> None:
            self.x, self.budget_dual, self.provider_dual = np.ones(n), np.zeros(1), np.zeros(2)
            self.status, self.solver, self.iterations = "optimal", "dual", 1

    def fake(name: str):
        calls.append(name)
        return (lambda p: Bad(p.n_pairs)) if name == "dual" else (lambda p: solve_highs(p))

    monkeypatch.setattr(aw, "_solver", fake)
    c, recs = _batch(20, 3, (ProviderSpec("p1", 5.0, float("inf")),), limit=3.0)
    lp = BatchLP.build(c, recs)
    sol = solve_batch(lp, AllocatorWorkerConfig.for_prefix(solver="dual"))
    assert calls == ["dual", "highs"]  # the dual x broke the budget: HiGHS re-solved
    assert sol.solver.startswith("highs") and sol.max_relative_violation <= 1e-6


def test_an_infeasible_batch_is_solved_elastic_and_keeps_user_caps() -> None:

    # p1 appears in at most 3 of each user's 6 candidates and users take <= 2: a minimum of 500 cannot hold.
    c, recs = _batch(30, 2, (ProviderSpec("p1", 500.0, float("inf")),), limit=10.0)
    lp = BatchLP.build(c, recs)
    sol = solve_batch(lp, AllocatorWorkerConfig.for_prefix())
    assert sol.status == "elastic" and sol.solver.endswith("+elastic")
    _, exposure, per_user = lp.usage(sol.x)
    assert np.all(per_user <= lp.user_cap + 1e-9) and np.all((sol.x >= 0) & (sol.x <= 1))
    assert sol.max_violation > 0  # reported, not hidden


def test_a_solver_failure_falls_back_to_the_other_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    from allocator.errors import AllocatorError
    from allocator.highs import solve_highs

    calls: list[str] = []

    def broken(problem):
        raise AllocatorError("HiGHS (ipm) ended with status Unknown")

    def fake(name: str):
        calls.append(name)
        return broken if name == "highs" else (lambda p: solve_highs(p, method="simplex"))

    monkeypatch.setattr(aw, "_solver", fake)
    c, recs = _batch(20, 4, (ProviderSpec("p1", 5.0, float("inf")),), limit=3.0)
    sol = solve_batch(BatchLP.build(c, recs), AllocatorWorkerConfig.for_prefix())
    assert calls == ["highs", "dual"] and sol.status == "optimal" and sol.max_relative_violation <= 1e-6


def test_the_next_batch_starts_from_the_last_batchs_duals_by_name() -> None:
    """The worker's dual memory: batch 2's dual solve starts from batch 1's prices, mapped by
    constraint name (rows are reordered between batches), and still reaches HiGHS's optimum
    (the start only changes where the solver begins)."""
    from allocator.highs import solve_highs

    cfg = AllocatorWorkerConfig.for_prefix(solver="dual")  # dual solver
    memory = DualMemory()
    c1, recs1 = _batch(80, 1, (ProviderSpec("p1", 30.0, float("inf")),), limit=8.0)
    lp1 = BatchLP.build(c1, recs1)
    assert memory.start_for(lp1) is None
    first = solve_batch(lp1, cfg, memory=memory)
    assert first.solver == "dual" and first.budget_dual[0] > 0  # the budget binds: a price to carry over
    assert memory.budget == {"unsubs": pytest.approx(float(first.budget_dual[0]))}

    c2, recs2 = _batch(
        80, 2, (ProviderSpec("p2", 12.0, float("inf")), ProviderSpec("p1", 25.0, float("inf"))), limit=8.0
    )
    lp2 = BatchLP.build(c2, recs2)
    budget_start, provider_start = memory.start_for(lp2)
    assert budget_start.tolist() == [pytest.approx(float(first.budget_dual[0]))]
    by_name = dict(zip(lp1.provider_names, first.provider_dual))
    assert provider_start.tolist() == [pytest.approx(float(by_name.get(n, 0.0))) for n in lp2.provider_names]
    # p1 moved from row 0 to row 1 and keeps its (nonzero) price; p2 had none
    assert lp1.provider_names.index("p1") == 0 and lp2.provider_names.index("p1") == 1
    assert provider_start[1] == pytest.approx(float(first.provider_dual[0])) != 0.0 and provider_start[0] == 0.0

    second = solve_batch(lp2, cfg, memory=memory)
    exact = solve_highs(lp2.to_problem())
    assert second.solver == "dual" and second.max_relative_violation <= cfg.max_relative_violation
    assert second.objective == pytest.approx(exact.objective, rel=1e-3)
    assert memory.provider == {n: pytest.approx(float(d)) for n, d in zip(lp2.provider_names, second.provider_dual)}
