"""Exact solves of the allocation LP with HiGHS (highspy), built column-wise without dense matrices.

Rows, in this order: one per user (``sum_u x <= k_u``), one per budget (``c_l . x <= B_l``), one
range row per provider (``lo_p <= sum_p x <= hi_p``). Columns: one per pair, then (elastic only)
one slack per budget row and one per provider with a positive minimum.

Elastic mode (``elastic=True``) keeps the user caps and provider maximums hard and lets the budget
rows and the provider minimums give way: ``c_l . x - s_l <= B_l`` and ``sum_p x + t_p >= lo_p``
with ``s, t >= 0``, and subtracts ``rho_row x slack`` from the objective. The penalty is stated per
"pair's worth" of a row: ``rho`` (default ``10 x max|r| x (1 + L)``) per unit of provider minimum,
and ``rho / max_e |c_{l,e}|`` per unit of budget ``l``. It is an exact penalty — the slacks are zero
whenever the LP is feasible — as long as no true dual exceeds it (in those units); the result
lists every row left violated and by how much.
"""

from __future__ import annotations

import time
from typing import Literal

import highspy
import numpy as np

from allocator.errors import AllocatorError, InfeasibilityReport, InfeasibleAllocation
from allocator.feasibility import precheck
from allocator.problem import AllocationProblem
from allocator.result import AllocationResult, Status
from allocator.violations import violations
from banditlp.arrays import IntArray

Method = Literal["ipm", "simplex", "pdlp", "choose"]
#: Below this many pairs the IPM runs its crossover by default, so duals are exact vertex duals.
CROSSOVER_BELOW = 200_000


def default_elastic_penalty(problem: AllocationProblem) -> float:
    """``10 x max|r| x (1 + L)``: the penalty per pair's worth of violation (see module docstring)."""
    return 10.0 * max(float(np.abs(problem.reward).max()), 1e-12) * (1 + problem.n_budgets)


def _build_lp(problem: AllocationProblem, elastic: bool, penalty: float) -> tuple[highspy.HighsLp, IntArray]:
    """The HiGHS model, column-wise (CSC), built with array operations only.

    Returns:
        ``(lp, elastic_providers)``: the model and the providers that got a slack column.
    """
    e, n_u, n_l, n_p = problem.n_pairs, problem.n_users, problem.n_budgets, problem.n_providers
    idx = np.empty((e, n_l + 2), dtype=np.int32)
    val = np.ones((e, n_l + 2), dtype=np.float64)
    idx[:, 0] = problem.user
    idx[:, 1 : n_l + 1] = n_u + np.arange(n_l, dtype=np.int32)
    idx[:, n_l + 1] = n_u + n_l + problem.provider
    val[:, 1 : n_l + 1] = problem.cost.T
    keep = val != 0.0  # explicit zeros are left out of the CSC
    count = keep.sum(axis=1)
    index, value = (idx.ravel(), val.ravel()) if keep.all() else (idx[keep], val[keep])
    start = np.zeros(e + 1, dtype=np.int32)
    np.cumsum(count, out=start[1:])
    col_cost, col_lo, col_hi = problem.reward.copy(), np.zeros(e), np.ones(e)
    elastic_prov = np.zeros(0, dtype=np.int64)
    if elastic:
        lo = problem.provider_min
        elastic_prov = np.flatnonzero(np.isfinite(lo) & (lo > 0))
        cmax = np.abs(problem.cost).max(axis=1) if n_l else np.zeros(0)
        slack_rows = np.concatenate([n_u + np.arange(n_l), n_u + n_l + elastic_prov]).astype(np.int32)
        slack_vals = np.concatenate([-np.ones(n_l), np.ones(elastic_prov.size)])
        slack_cost = -np.concatenate([penalty / np.where(cmax > 0, cmax, 1.0), np.full(elastic_prov.size, penalty)])
        index, value = np.concatenate([index, slack_rows]), np.concatenate([value, slack_vals])
        start = np.concatenate([start, start[-1] + 1 + np.arange(slack_rows.size, dtype=np.int32)])
        col_cost = np.concatenate([col_cost, slack_cost])
        col_lo = np.concatenate([col_lo, np.zeros(slack_rows.size)])
        col_hi = np.concatenate([col_hi, np.full(slack_rows.size, np.inf)])
    lp = highspy.HighsLp()
    lp.num_col_ = int(col_cost.size)
    lp.num_row_ = n_u + n_l + n_p
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = col_cost, col_lo, col_hi
    lp.row_lower_ = np.concatenate([np.full(n_u + n_l, -np.inf), problem.provider_min])
    lp.row_upper_ = np.concatenate([problem.caps, problem.budget, problem.provider_max])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = start, index.astype(np.int32), value
    return lp, elastic_prov


def solve_highs(
    problem: AllocationProblem,
    *,
    method: Method = "ipm",
    elastic: bool = False,
    elastic_penalty: float | None = None,
    time_limit: float | None = None,
    crossover: bool | None = None,
    threads: int | None = None,
) -> AllocationResult:
    """Solve the allocation LP exactly with HiGHS.

    Args:
        problem: the LP.
        method: HiGHS' ``solver`` option: ``"ipm"`` (interior point; much faster at scale),
            ``"simplex"``, ``"pdlp"`` or ``"choose"``.
        elastic: let budgets and provider minimums give way at a penalty (module docstring) and
            return status ``"elastic"`` with the violations instead of raising.
        elastic_penalty: penalty per pair's worth of violation; default
            :func:`default_elastic_penalty`.
        time_limit: seconds; on expiry the status is ``"time_limit"``.
        crossover: run the IPM crossover (exact vertex solution and duals); default on below
            :data:`CROSSOVER_BELOW` pairs, off above.
        threads: HiGHS threads (default: HiGHS' own choice).

    Returns:
        An :class:`AllocationResult` (duals in the conventions of :mod:`allocator.result`).

    Raises:
        InfeasibleAllocation: the LP is infeasible and ``elastic`` is False; the report lists
            the pre-check conflicts, else the least violations an elastic solve needs.
        AllocatorError: HiGHS failed for another reason.
    """
    t0 = time.perf_counter()
    penalty = float(elastic_penalty) if elastic_penalty is not None else default_elastic_penalty(problem)
    lp, elastic_prov = _build_lp(problem, elastic, penalty)
    h = highspy.Highs()  # type: ignore[no-untyped-call]  # highspy declares Highs.__init__ without -> None
    h.setOptionValue("output_flag", False)
    h.setOptionValue("solver", method)
    if method == "ipm":
        use_cross = crossover if crossover is not None else problem.n_pairs < CROSSOVER_BELOW
        h.setOptionValue("run_crossover", "on" if use_cross else "off")
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    ms = highspy.HighsModelStatus
    if status in (ms.kInfeasible, ms.kUnboundedOrInfeasible):
        raise InfeasibleAllocation(_report(problem, method, time_limit))
    info = h.getInfo()
    ipm_unknown = status == ms.kUnknown and info.primal_solution_status == 2 and info.max_primal_infeasibility <= 1e-6
    if status not in (ms.kOptimal, ms.kTimeLimit, ms.kIterationLimit) and not ipm_unknown:
        raise AllocatorError(f"HiGHS ({method}) ended with status {h.modelStatusToString(status)}")
    sol = h.getSolution()
    e, n_u, n_l = problem.n_pairs, problem.n_users, problem.n_budgets
    x = np.clip(np.asarray(sol.col_value)[:e], 0.0, 1.0)
    row_dual = np.asarray(sol.row_dual)
    # HiGHS' row duals satisfy reduced_cost = c - A^T y in the model's own sense; for a maximisation
    # a binding "<=" row has y >= 0 and a binding ">=" side has y <= 0, which is our convention:
    # budget_dual >= 0, provider_dual > 0 at a binding maximum and < 0 at a binding minimum.
    budget_dual = np.maximum(row_dual[n_u : n_u + n_l], 0.0)
    provider_dual = row_dual[n_u + n_l :].copy()
    viol = violations(problem, x)
    # an interior point without crossover whose primal is feasible and optimal but whose postsolved
    # duals miss HiGHS' tolerances is reported "optimal_primal": x and objective are right,
    # the duals approximate
    st = {
        ms.kOptimal: Status.OPTIMAL,
        ms.kTimeLimit: Status.TIME_LIMIT,
        ms.kIterationLimit: Status.ITERATION_LIMIT,
        ms.kUnknown: Status.OPTIMAL_PRIMAL,
    }[status]
    listing = viol.listing(tol=1e-9)
    if elastic and st in (Status.OPTIMAL, Status.OPTIMAL_PRIMAL) and listing:
        st = Status.ELASTIC
    iters = int(
        info.ipm_iteration_count
        + info.simplex_iteration_count
        + info.pdlp_iteration_count
        + info.crossover_iteration_count
    )
    return AllocationResult(
        x=x,
        objective=float(problem.reward @ x),
        budget_dual=budget_dual,
        provider_dual=provider_dual,
        status=st,
        max_violation=viol.max_violation,
        max_relative_violation=viol.max_relative_violation,
        iterations=iters,
        seconds=time.perf_counter() - t0,
        solver=f"highs-{method}",
        violations=listing,
    )


def _report(problem: AllocationProblem, method: Method, time_limit: float | None) -> InfeasibilityReport:
    """Which constraints conflict and by how much: pre-check conflicts, else an elastic solve's."""
    found = precheck(problem)
    if found:
        return InfeasibilityReport("precheck", found, "allocation LP is infeasible")
    try:
        res = solve_highs(problem, method=method, elastic=True, time_limit=time_limit)
    except AllocatorError as exc:  # the elastic model is always feasible; keep the cause anyway
        return InfeasibilityReport("highs", (), f"allocation LP is infeasible (elastic solve failed: {exc})")
    return InfeasibilityReport(
        "highs", res.violations, "allocation LP is infeasible; least violations of an elastic solve"
    )
