"""Deciding under constraints, pure: the allocation LP, its solvers (HiGHS, dual decomposition), rounding.

``allocator.solve(problem, solver="auto" | "highs" | "dual", **options)`` goes through the solver
registry of :mod:`allocator.solvers`, which also holds the one size rule of ``"auto"``
(:data:`AUTO_THRESHOLD`, :func:`auto_solver`, :func:`fallback_order`).

Imports numpy, scipy, torch, highspy and ``banditlp`` (errors, array types) only; never models/, evaluation/,
streams/ or Kafka. The solvers (and with them highspy and torch) load on first use.
"""

from __future__ import annotations

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
from allocator.solvers import AUTO_THRESHOLD, auto_solver, fallback_order, get_solver, register, solve, solver_names
from allocator.violations import Violations, violations

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
    "auto_solver",
    "fallback_order",
    "get_solver",
    "load_problem",
    "load_result",
    "register",
    "round_allocation",
    "save_problem",
    "save_result",
    "solve",
    "solver_names",
    "violations",
]
