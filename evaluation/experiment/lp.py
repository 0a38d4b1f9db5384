"""The allocation LP of a batch on a method's scores, solved as the allocator worker solves it.

The rows are the world's (:class:`evaluation.email_world.BatchConstraints`: user caps, the
unsubscription budget, provider minimums and maximums); the coefficients are the method's
estimates. HiGHS solves it exactly (``allocator.solve(..., "highs")``; interior point with
crossover, so ``x`` is an optimal vertex; the simplex method when the interior point fails).
A batch whose LP is infeasible on the estimates (a budget the estimated costs cannot meet
together with the provider minimums) is solved elastic, as the worker's fallback does
(``elastic=True``: budgets and minimums give way at a penalty), and the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

import allocator
from allocator import AllocationProblem, AllocatorError, InfeasibleAllocation, Status
from banditlp.arrays import FloatArray
from evaluation.email_world import BatchConstraints, CandidateBatch
from evaluation.errors import EvaluationInputError, OracleInfeasible

# HiGHS' interior point with crossover first (an optimal vertex); its dual simplex when the
# interior point ends in a solver error, which it does on a few degenerate small LPs.
_METHODS = ("ipm", "simplex")
_OPTIONS: dict[str, dict[str, bool]] = {"ipm": {"crossover": True}, "simplex": {}}


@dataclass(frozen=True, eq=False)
class SolvedLP:
    """A plan from the LP.

    Attributes:
        x: ``(E,)`` float64 allocation in [0, 1].
        elastic: True when the LP was infeasible on the coefficients and solved elastic.
    """

    x: FloatArray
    elastic: bool


def allocation_problem(
    batch: CandidateBatch, constraints: BatchConstraints, reward: ArrayLike, cost: ArrayLike
) -> AllocationProblem:
    """The batch's LP with the given coefficients.

    Args:
        batch: The batch (users, providers of its pairs).
        constraints: Its right-hand sides.
        reward: ``(E,)`` objective coefficients.
        cost: ``(E,)`` coefficients of the unsubscription budget row.

    Returns:
        The problem (only finite budgets, positive minimums and finite maximums are rows).

    Raises:
        EvaluationInputError: if the coefficients are malformed (shape, NaN, inf).
    """
    r = np.asarray(reward, dtype=float)
    c = np.asarray(cost, dtype=float)
    if r.shape != (batch.n_pairs,) or c.shape != (batch.n_pairs,):
        raise EvaluationInputError(f"reward and cost must be ({batch.n_pairs},), got {r.shape} and {c.shape}")
    has_budget = np.isfinite(constraints.budget)
    try:
        return AllocationProblem(
            user=batch.pair_user,
            item=batch.pair_item,
            reward=r,
            cost=np.broadcast_to(c, (int(has_budget.sum()), c.size)),
            budget=constraints.budget[has_budget],
            provider=batch.pair_provider,
            provider_min=np.where(constraints.provider_min > 0, constraints.provider_min, -np.inf),
            provider_max=np.where(np.isfinite(constraints.provider_max), constraints.provider_max, np.inf),
            user_cap=constraints.user_cap.astype(float),
        )
    except allocator.ProblemValidationError as exc:
        raise EvaluationInputError(f"invalid allocation LP: {exc}") from exc


def solve_lp(batch: CandidateBatch, constraints: BatchConstraints, reward: ArrayLike, cost: ArrayLike) -> SolvedLP:
    """Solve the batch's LP on the coefficients; elastic when it is infeasible on them.

    Args:
        batch: The batch.
        constraints: Its right-hand sides.
        reward: ``(E,)`` objective coefficients.
        cost: ``(E,)`` unsubscription-budget coefficients.

    Returns:
        The plan.

    Raises:
        OracleInfeasible: if both HiGHS methods fail on the (elastic) LP; an elastic LP is always
            feasible, so this is a solver failure.
    """
    problem = allocation_problem(batch, constraints, reward, cost)
    failures: list[str] = []
    for method in _METHODS:
        try:
            try:
                result = allocator.solve(problem, "highs", method=method, **_OPTIONS[method])
                elastic = False
            except InfeasibleAllocation:
                result = allocator.solve(problem, "highs", method=method, elastic=True, **_OPTIONS[method])
                elastic = True
        except AllocatorError as exc:
            failures.append(f"{method}: {exc}")
            continue
        if result.status in (Status.OPTIMAL, Status.OPTIMAL_PRIMAL, Status.ELASTIC):
            return SolvedLP(x=np.clip(result.x, 0.0, 1.0), elastic=elastic or result.status == Status.ELASTIC)
        failures.append(f"{method}: status {result.status}")
    raise OracleInfeasible(f"allocation LP not solved ({'; '.join(failures)})")
