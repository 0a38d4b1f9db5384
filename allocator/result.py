"""The outcome of an allocation solve and its ``.npz`` file format.

RESULT ``.npz`` keys: ``x`` (float64, E), ``objective`` (0-d), ``budget_dual`` (float64, L),
``provider_dual`` (float64, P), ``status`` (0-d str), ``max_violation`` (0-d, absolute),
``max_relative_violation`` (0-d), ``iterations`` (0-d int), ``seconds`` (0-d), plus ``solver``
(0-d str) and, for the dual solver, ``x_unrepaired`` (float64, E) when it was kept.

Sign conventions of the duals (both solvers):

- ``budget_dual[l] >= 0`` is the shadow price of budget ``l``: the objective gains about
  ``budget_dual[l]`` per extra unit of ``B_l``.
- ``provider_dual[p]`` is the dual of the provider's range row ``lo_p <= sum_p x <= hi_p`` with
  the convention ``reduced_cost_e = r_e - sum_l budget_dual[l] c_{l,e} - provider_dual[p(e)] - user_dual[u(e)]``:
  ``> 0`` when the maximum binds (the objective gains ``provider_dual[p]`` per extra unit of
  ``hi_p``), ``< 0`` when the minimum binds (the objective loses ``|provider_dual[p]|`` per extra
  unit of ``lo_p``), 0 when neither binds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike

import numpy as np

from allocator.errors import ConstraintViolation, ProblemValidationError
from banditlp.arrays import FloatArray


class Status:
    """Solve status strings (plain ``str`` values so they travel in Avro and ``.npz`` as is)."""

    OPTIMAL = "optimal"  #: solved to the requested tolerance, feasible
    OPTIMAL_PRIMAL = "optimal_primal"  #: HiGHS IPM without crossover: optimal x, approximate duals
    ELASTIC = "elastic"  #: infeasible as stated; elastic solution with reported violations
    ITERATION_LIMIT = "iteration_limit"  #: stopped at max_iter; x is repaired but not optimal to tol
    TIME_LIMIT = "time_limit"  #: stopped at the time limit


RESULT_KEYS = (
    "x",
    "objective",
    "budget_dual",
    "provider_dual",
    "status",
    "max_violation",
    "max_relative_violation",
    "iterations",
    "seconds",
)


@dataclass(frozen=True, eq=False)
class AllocationResult:
    """A solved allocation.

    Attributes:
        x: (n_pairs,) float64 allocation, every entry in ``[0, 1]``.
        objective: ``sum_e r_e x_e`` at ``x``.
        budget_dual: (n_budgets,) shadow prices of the budgets (>= 0).
        provider_dual: (n_providers,) signed duals of the provider rows (see module docstring).
        status: one of the :class:`Status` strings.
        max_violation: largest absolute constraint violation of ``x``.
        max_relative_violation: largest relative violation of ``x``.
        iterations: solver iterations (IPM/simplex/PDLP iterations, or dual-ascent steps).
        seconds: wall-clock solve time.
        solver: ``"highs-ipm"``, ``"highs-simplex"``, ``"highs-pdlp"``, ``"highs-choose"`` or ``"dual"``.
        violations: the violated rows of ``x`` (empty when feasible; the elastic report otherwise).
        x_unrepaired: (n_pairs,) the dual solver's primal before repair, or None.
        max_violation_before_repair: relative max violation of ``x_unrepaired`` (NaN when None).
        duality_gap: relative gap at the end of the dual solver (NaN for HiGHS).
    """

    x: FloatArray
    objective: float
    budget_dual: FloatArray
    provider_dual: FloatArray
    status: str
    max_violation: float
    max_relative_violation: float
    iterations: int
    seconds: float
    solver: str
    violations: tuple[ConstraintViolation, ...] = field(default_factory=tuple)
    x_unrepaired: FloatArray | None = None
    max_violation_before_repair: float = float("nan")
    duality_gap: float = float("nan")


def save_result(result: AllocationResult, path: str | PathLike[str]) -> None:
    """Write ``result`` to a RESULT ``.npz`` (keys in :data:`RESULT_KEYS`, plus ``solver``)."""
    arrays = {k: np.asarray(getattr(result, k)) for k in RESULT_KEYS}
    arrays["solver"] = np.asarray(result.solver)
    if result.x_unrepaired is not None:
        arrays["x_unrepaired"] = result.x_unrepaired
    np.savez(path, allow_pickle=False, **arrays)  # numeric and string arrays only, as load_result reads


def load_result(path: str | PathLike[str]) -> AllocationResult:
    """Read a RESULT ``.npz`` written by :func:`save_result` (the violation listing is not stored)."""
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in RESULT_KEYS if k not in f.files]
        if missing:
            raise ProblemValidationError(f"{path}: missing result arrays {missing}")
        a = {k: f[k] for k in f.files}
    return AllocationResult(
        x=a["x"],
        objective=float(a["objective"]),
        budget_dual=a["budget_dual"],
        provider_dual=a["provider_dual"],
        status=str(a["status"]),
        max_violation=float(a["max_violation"]),
        max_relative_violation=float(a["max_relative_violation"]),
        iterations=int(a["iterations"]),
        seconds=float(a["seconds"]),
        solver=str(a.get("solver", "unknown")),
        x_unrepaired=a.get("x_unrepaired"),
    )
