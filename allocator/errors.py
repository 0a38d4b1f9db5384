"""Errors raised by the allocator; each kind has one fixed response in the stream.

- ``ProblemValidationError``: the inputs of an LP are malformed (NaN/inf where a finite number is
  needed, wrong shapes or dtypes, negative ids, ``lo > hi``). The batch's scores go to dead-letters.
- ``InfeasibleAllocation``: the LP has no feasible point (or the dual solver diverged as if it had
  none). It carries an :class:`InfeasibilityReport`; the worker falls back to the documented
  elastic solve and publishes its report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from banditlp.errors import BanditLPError


class AllocatorError(BanditLPError):
    """Base of the allocator's errors."""


class ProblemValidationError(AllocatorError, ValueError):
    """An :class:`~allocator.problem.AllocationProblem` input is malformed.

    The message names the array and, where it applies, the first bad index.
    """


@dataclass(frozen=True)
class ConstraintViolation:
    """One constraint that cannot hold (or does not hold), and by how much.

    Attributes:
        kind: ``"budget"``, ``"provider_min"``, ``"provider_max"`` or ``"user_cap"``.
        index: the budget row ``l``, the provider ``p`` or the user ``u``.
        amount: absolute shortfall/excess in the row's own units (>= 0).
        relative: ``amount / max(|rhs|, largest |coefficient| of the row)``.
        detail: a short human-readable explanation.
    """

    kind: str
    index: int
    amount: float
    relative: float
    detail: str = ""


@dataclass(frozen=True)
class InfeasibilityReport:
    """Why an allocation LP is infeasible.

    Attributes:
        source: who found it (``"precheck"``, ``"highs"``, ``"dual"``).
        violations: the constraints in conflict, with the least violation that resolves them
            (from an elastic solve) or the certified gap (from a pre-check), largest first.
        message: a one-line summary.
    """

    source: str
    violations: tuple[ConstraintViolation, ...] = field(default_factory=tuple)
    message: str = ""

    def summary(self, limit: int = 5) -> str:
        """A one-line summary listing at most ``limit`` violated constraints."""
        parts = [f"{v.kind}[{v.index}] by {v.amount:.6g} ({v.relative:.3g} rel)" for v in self.violations[:limit]]
        more = len(self.violations) - limit
        tail = f" and {more} more" if more > 0 else ""
        return f"{self.message} [{self.source}]: " + ("; ".join(parts) or "no detail") + tail


class InfeasibleAllocation(AllocatorError):
    """The allocation LP has no feasible point.

    Attributes:
        report: the structured :class:`InfeasibilityReport`.
    """

    def __init__(self, report: InfeasibilityReport) -> None:
        self.report = report
        super().__init__(report.summary())
