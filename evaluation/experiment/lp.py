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

import dataclasses
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

import allocator
from allocator import AllocationProblem, AllocatorError, InfeasibleAllocation, Status
from banditlp.arrays import FloatArray
from evaluation.email_batch import BatchConstraints, CandidateBatch
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


def solve_lp(
    batch: CandidateBatch,
    constraints: BatchConstraints,
    reward: ArrayLike,
    cost: ArrayLike,
    extra_rows: tuple[ArrayLike, ArrayLike] | None = None,
) -> SolvedLP:
    """Solve the batch's LP on the coefficients; elastic when it is infeasible on them.

    Args:
        batch: The batch.
        constraints: Its right-hand sides.
        reward: ``(E,)`` objective coefficients.
        cost: ``(E,)`` unsubscription-budget coefficients.
        extra_rows: ``(rows (G, E), limits (G,))`` budget rows after the batch's (e.g. per-arm
            rows, :func:`allocator.arm_rows.arm_budget_rows`); elastic like the batch's.

    Returns:
        The plan.

    Raises:
        OracleInfeasible: if both HiGHS methods fail on the (elastic) LP; an elastic LP is always
            feasible, so this is a solver failure.
    """
    problem = allocation_problem(batch, constraints, reward, cost)
    if extra_rows is not None:
        rows, limits = np.asarray(extra_rows[0], dtype=float), np.asarray(extra_rows[1], dtype=float)
        try:
            problem = dataclasses.replace(
                problem, cost=np.vstack([problem.cost, rows]), budget=np.concatenate([problem.budget, limits])
            )
        except allocator.ProblemValidationError as exc:
            raise EvaluationInputError(f"invalid extra budget rows: {exc}") from exc
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


@dataclass(frozen=True, eq=False)
class ScaledLP:
    """A plan chosen on one cost whose budget holds on another.

    Attributes:
        solved: The plan.
        budget_scale: ``B' / B``: the budget the LP was solved with, over the batch's.
        usage: ``check_cost @ x / B`` of the plan (its quantile over draws).
    """

    solved: SolvedLP
    budget_scale: float
    usage: float


def solve_lp_checked(
    batch: CandidateBatch,
    constraints: BatchConstraints,
    reward: ArrayLike,
    select_cost: ArrayLike,
    check_cost: ArrayLike,
    *,
    quantile: float = 0.5,
    iterations: int = 6,
    tolerance: float = 2e-3,
) -> ScaledLP:
    """The LP on ``(reward, select_cost)`` with its budget rescaled until the plan meets the
    batch's budget on ``check_cost``.

    The plan is chosen on the selection costs (Thompson samples: exploration), while what it
    spends is judged on the check costs (the posterior means, which the selection did not pick
    for being low). Fixed point ``B_{k+1} = min(B_k, s_k) * B / (check_cost @ x_k)`` from
    ``B_0 = B``, with ``s_k = select_cost @ x_k`` (below ``B_k`` when the budget row does not
    bind); it stops when the check usage is within ``tolerance`` of 1, or under 1 with a budget
    row that does not bind (a larger budget would change nothing). The result is the last iterate whose check
    usage is at most ``1 + tolerance``, or the least-using one when none is.

    Args:
        batch: The batch.
        constraints: Its right-hand sides (budget ``B``, row 0).
        reward: ``(E,)`` objective coefficients.
        select_cost: ``(E,)`` budget-row coefficients of the LP.
        check_cost: ``(E,)`` the costs the budget must hold on, or ``(M, E)`` M draws of them
            (e.g. joint posterior draws): the plan's cost is then the ``quantile`` of its M costs.
        quantile: Which quantile of the M plan costs must meet the budget (ignored for M = 1).
        iterations: Most LP solves (>= 1).
        tolerance: Relative slack of the check.

    Returns:
        The plan, its budget scale and its check usage.
    """
    check = np.atleast_2d(np.asarray(check_cost, dtype=float))
    budget = float(constraints.budget[0])
    scale = 1.0
    found: ScaledLP | None = None
    least: ScaledLP | None = None
    for _ in range(max(1, iterations)):
        scaled = dataclasses.replace(constraints, budget=constraints.budget * scale)
        solved = solve_lp(batch, scaled, reward, select_cost)
        spent = check @ solved.x
        usage = float(np.quantile(spent, quantile) if spent.size > 1 else spent[0]) / budget
        attempt = ScaledLP(solved, scale, usage)
        if usage <= 1 + tolerance:
            found = attempt
        if least is None or usage < least.usage:
            least = attempt
        selected = float(np.asarray(select_cost, dtype=float) @ solved.x) / budget
        if abs(usage - 1) <= tolerance or usage <= 0 or (usage < 1 and selected < scale * (1 - 1e-6)):
            break  # on budget, or under it with a budget row that does not bind: more changes nothing
        # From the budget the plan actually spends on the selection costs (below B' when the row
        # does not bind), in proportion to how far its check cost is off.
        scale = min(scale, selected) / usage
    result = found if found is not None else least
    assert result is not None
    return result
