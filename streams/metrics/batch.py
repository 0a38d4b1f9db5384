"""What one decided batch contributes to the metrics: read from its allocation report (the record
operators already trust) plus the timings only the worker knows. Pure, no prometheus_client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConstraintRow:
    """One LP constraint row of a batch.

    Attributes:
        name: ``budget:<name>`` or ``provider:<provider_id>`` (the label of the per-constraint gauges).
        dual: its shadow price as the report carries it (a provider's is positive when its
            minimum binds, negative when its maximum does).
        violation: how far the published x is outside the row, in the row's own units (0 when it
            holds): ``max(0, used - limit)`` for a budget, ``max(0, min - exposure, exposure - max)``
            for a provider; the LP's share only, as the report's ``used``/``exposure`` are.
    """

    name: str
    dual: float
    violation: float


def constraint_rows(report: Mapping[str, Any]) -> list[ConstraintRow]:
    """The budget rows, then the provider rows, of a decoded ``allocation-reports`` value."""
    rows = [
        ConstraintRow(f"budget:{b['name']}", float(b["dual"]), max(0.0, float(b["used"]) - float(b["limit"])))
        for b in report.get("budgets", [])
    ]
    for p in report.get("providers", []):
        exposure = float(p["exposure"])
        high = p.get("max_exposure")
        over = exposure - float(high) if high is not None else 0.0
        rows.append(
            ConstraintRow(
                f"provider:{p['provider_id']}", float(p["dual"]), max(0.0, float(p["min_exposure"]) - exposure, over)
            )
        )
    return rows


@dataclass(frozen=True)
class BatchObservation:
    """One committed batch, as the allocator's metrics see it.

    Attributes:
        report: the decoded allocation report.
        solve_seconds: the solver time of each Thompson draw's LP (one entry per LP solved;
            empty when no LP was solved).
        open_to_close_s: OPENED seen -> CLOSED seen, on the worker's clock; None when either was
            not seen (a batch decided on its open timeout).
        close_to_decision_s: CLOSED seen -> the transaction with its decisions committed; None
            when CLOSED was not seen.
        n_decisions: decisions published (the LP's and the fallback's).
        n_fallback: of them, the fallback's.
        versions: ``(model name, model version, parameter version) -> decisions`` of the LP's users.
    """

    report: Mapping[str, Any]
    solve_seconds: Sequence[float] = ()
    open_to_close_s: float | None = None
    close_to_decision_s: float | None = None
    n_decisions: int = 0
    n_fallback: int = 0
    versions: Mapping[tuple[str, int, str], int] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The report's status reduced to its first word (``optimal``, ``elastic``, ``rejected``...):
        the full status names users and providers, which would make a label per batch."""
        word = str(self.report.get("status", "")).split(";")[0].split(" ")[0].strip(":")
        return word or "unknown"
