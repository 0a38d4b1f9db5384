"""Deciding under constraints, pure: the allocation LP, HiGHS, dual decomposition, rounding.

Imports numpy, scipy, torch, highspy and ``banditlp.errors`` only; never models/, evaluation/,
streams/ or Kafka.
"""

from __future__ import annotations

from typing import Any, Literal

from allocator.errors import (
    AllocatorError,
    ConstraintViolation,
    InfeasibilityReport,
    InfeasibleAllocation,
    ProblemValidationError,
)
from allocator.problem import AllocationProblem, load_problem, save_problem
from allocator.result import AllocationResult, Status, load_result, save_result
from allocator.rounding import Rounding, round_allocation
from allocator.violations import Violations, violations

#: ``solve(solver="auto")`` uses HiGHS below this many pairs and the dual solver from it on.
AUTO_THRESHOLD = 200_000


def solve(
    problem: AllocationProblem, solver: Literal["auto", "highs", "dual"] = "auto", **options: Any
) -> AllocationResult:
    """Solve the allocation LP with HiGHS (exact) or the dual-decomposition solver (fast at scale).

    Args:
        problem: the LP.
        solver: ``"highs"``, ``"dual"``, or ``"auto"``: HiGHS (IPM) below :data:`AUTO_THRESHOLD`
            pairs, the dual solver from there on.
        **options: passed on to :func:`allocator.highs.solve_highs` or
            :func:`allocator.dual_decomposition.solve_dual` (``elastic`` is understood by both).
            ``dual_start=(budget_dual (L,), provider_dual (P,))`` warm-starts the dual solver
            (e.g. from the previous batch's result). HiGHS takes no dual start: with
            ``solver="highs"`` it raises :class:`ProblemValidationError`; with ``solver="auto"``
            it is dropped when HiGHS is chosen (so a caller can pass the last batch's duals on
            every batch without knowing which solver the size picks).

    Returns:
        An :class:`AllocationResult`.

    Raises:
        InfeasibleAllocation: see the chosen solver.
        ProblemValidationError: ``solver`` is unknown, ``dual_start`` is given with
            ``solver="highs"``, or it is malformed and the dual solver runs (see ``solve_dual``).
    """
    if solver == "auto":
        solver = "highs" if problem.n_pairs < AUTO_THRESHOLD else "dual"
        if solver == "highs":
            options.pop("dual_start", None)
    if solver == "highs":
        from allocator.highs import solve_highs

        if options.get("dual_start") is not None:
            raise ProblemValidationError(
                "dual_start: HiGHS takes no dual start; it is for solver='dual' "
                "(or 'auto', which drops it when it picks HiGHS)"
            )
        options.pop("dual_start", None)
        return solve_highs(problem, **options)
    if solver == "dual":
        from allocator.dual_decomposition import solve_dual

        return solve_dual(problem, **options)
    raise ProblemValidationError(f"solver: expected 'auto', 'highs' or 'dual', got {solver!r}")


__all__ = [
    "AUTO_THRESHOLD",
    "AllocationProblem",
    "AllocationResult",
    "AllocatorError",
    "ConstraintViolation",
    "InfeasibilityReport",
    "InfeasibleAllocation",
    "ProblemValidationError",
    "Rounding",
    "Status",
    "Violations",
    "load_problem",
    "load_result",
    "round_allocation",
    "save_problem",
    "save_result",
    "solve",
    "violations",
]
