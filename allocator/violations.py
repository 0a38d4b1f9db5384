"""Per-constraint violation amounts of a candidate allocation ``x``; shared by every solver and test.

Relative amounts divide by ``max(|rhs|, largest |coefficient| of the row)``: "relative to the
right-hand side", read so that a row whose rhs is 0 (or tiny) is measured in units of one pair's
worth of that row instead of dividing by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from allocator.errors import ConstraintViolation
from allocator.problem import AllocationProblem
from banditlp.arrays import FloatArray, weighted_bincount


@dataclass(frozen=True, eq=False)
class Violations:
    """Violation (>= 0) of every constraint; zero where it holds.

    Attributes:
        bounds: (n_pairs,) ``max(-x_e, x_e - 1, 0)``.
        user_cap: (n_users,) ``max(sum_u x - k_u, 0)``.
        budget: (n_budgets,) ``max(c_l . x - B_l, 0)``.
        provider_min: (n_providers,) ``max(lo_p - sum_p x, 0)``.
        provider_max: (n_providers,) ``max(sum_p x - hi_p, 0)``.
        user_cap_rel, budget_rel, provider_min_rel, provider_max_rel: the same, relative.
    """

    bounds: FloatArray
    user_cap: FloatArray
    budget: FloatArray
    provider_min: FloatArray
    provider_max: FloatArray
    user_cap_rel: FloatArray
    budget_rel: FloatArray
    provider_min_rel: FloatArray
    provider_max_rel: FloatArray

    @property
    def max_violation(self) -> float:
        """Largest absolute violation over every constraint (bounds included)."""
        return float(
            max(
                (a.max() if a.size else 0.0)
                for a in (self.bounds, self.user_cap, self.budget, self.provider_min, self.provider_max)
            )
        )

    @property
    def max_relative_violation(self) -> float:
        """Largest relative violation over every constraint (bounds count as relative to 1)."""
        return float(
            max(
                (a.max() if a.size else 0.0)
                for a in (self.bounds, self.user_cap_rel, self.budget_rel, self.provider_min_rel, self.provider_max_rel)
            )
        )

    def listing(self, tol: float = 0.0, limit: int = 50) -> tuple[ConstraintViolation, ...]:
        """The violated rows (relative violation > ``tol``), largest relative first, at most ``limit``."""
        rows = []
        for kind, a, rel in (
            ("budget", self.budget, self.budget_rel),
            ("provider_min", self.provider_min, self.provider_min_rel),
            ("provider_max", self.provider_max, self.provider_max_rel),
            ("user_cap", self.user_cap, self.user_cap_rel),
        ):
            idx = np.flatnonzero(rel > tol)
            rows += [ConstraintViolation(kind, int(i), float(a[i]), float(rel[i])) for i in idx[:limit]]
        rows.sort(key=lambda v: -v.relative)
        return tuple(rows[:limit])


def row_activity(problem: AllocationProblem, x: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Left-hand sides of every row.

    Args:
        problem: the LP.
        x: (n_pairs,) allocation.

    Returns:
        ``(per_user (n_users,), per_budget (n_budgets,), per_provider (n_providers,))``.
    """
    x = np.asarray(x, dtype=np.float64)
    return (
        weighted_bincount(problem.user, x, problem.n_users),
        problem.cost @ x,
        weighted_bincount(problem.provider, x, problem.n_providers),
    )


def violations(problem: AllocationProblem, x: ArrayLike) -> Violations:
    """Absolute and relative violation of every constraint of ``problem`` at ``x``.

    Args:
        problem: the LP.
        x: (n_pairs,) allocation (any float dtype; evaluated in float64).

    Returns:
        A :class:`Violations`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (problem.n_pairs,):
        raise ValueError(f"x: expected shape ({problem.n_pairs},), got {x.shape}")
    per_user, per_budget, per_prov = row_activity(problem, x)
    caps, lo, hi = problem.caps, problem.provider_min, problem.provider_max
    user_v = np.maximum(per_user - caps, 0.0)
    budget_v = np.maximum(per_budget - problem.budget, 0.0)
    with np.errstate(invalid="ignore"):  # inf - finite is fine; the bounds are never NaN
        pmin_v = np.maximum(lo - per_prov, 0.0)
        pmax_v = np.maximum(per_prov - hi, 0.0)
    cmax = np.abs(problem.cost).max(axis=1) if problem.cost.size else np.zeros(0)
    budget_den = np.maximum(np.abs(problem.budget), np.where(cmax > 0, cmax, 1.0))
    lo_den = np.maximum(np.where(np.isfinite(lo), np.abs(lo), 0.0), 1.0)
    hi_den = np.maximum(np.where(np.isfinite(hi), np.abs(hi), 0.0), 1.0)
    return Violations(
        bounds=np.maximum(np.maximum(-x, x - 1.0), 0.0),
        user_cap=user_v,
        budget=budget_v,
        provider_min=pmin_v,
        provider_max=pmax_v,
        user_cap_rel=user_v / np.maximum(caps, 1.0),
        budget_rel=budget_v / budget_den,
        provider_min_rel=pmin_v / lo_den,
        provider_max_rel=pmax_v / hi_den,
    )
