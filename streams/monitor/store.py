"""The monitor's bounded history: per batch, the values the report's per-batch plots show.

From each allocation report (``allocation-reports``), for batch ``b``:

- ``objective``: the LP plan's objective;
- ``usage.<budget>``: (LP used + fallback used) / limit, the share of the budget spent on the
  sampled costs (1 = all of it), as the report's "budget usage per batch" plot;
- ``dual.<budget>`` per budget, and ``dual.provider`` the largest absolute provider dual (one
  line for what may be hundreds of providers);
- ``fallback``: users decided by the fallback; ``missing``: users never scored;
- ``solve_seconds`` (the solver, all draws) and ``window_seconds`` (CLOSED -> decisions).

From each ``health`` record (``schemas/health.avsc``, when the topic exists): every metric of
its ``values`` map as ``health.<metric>`` (null ones left out), except those not plotted
(``NOT_PLOTTED``: one PSI per feature, where ``feature_psi_max`` is the line; the ECE thresholds,
standard errors and outcome counts behind other series), and ``alarms``, how many fired. The
health panels group them as the health worker's alarms do (exploration, drift, calibration,
outcome rates); a metric no panel names goes to "Health, other", so a new one still shows.
Records are matched to reports by ``batch_id``.

Thread-safe: the feed's thread adds, the web server's reads.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

#: The page's panels: title, unit, and the series prefixes each one draws.
#: A reference line drawn on a panel (and kept inside its range), by title: the budget's limit.
REFERENCES = {"Budget usage": 1.0}
PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Objective", "sum of sampled reward x", ("objective",)),
    ("Budget usage", "used / limit", ("usage.",)),
    ("Duals (shadow prices)", "objective per unit", ("dual.",)),
    ("Fallback decisions", "users", ("fallback", "missing")),
    ("LP time", "seconds", ("solve_seconds", "window_seconds")),
    (
        "Exploration",
        "value",
        ("health.selection_entropy", "health.item_coverage", "health.overlap_at_k", "health.allocation_variance"),
    ),
    ("Drift (PSI)", "PSI", ("health.feature_psi_max", "health.prediction_shift_psi.", "health.prediction_psi.")),
    ("Calibration", "ECE, gap", ("health.ece.", "health.gap.")),
    ("Outcome rates", "z, CUSUM and its threshold h", ("health.rate_z.", "health.rate_cusum.", "health.rate_h.")),
    ("Alarms", "fired", ("alarms",)),
    ("Health, other", "value", ("health.",)),
)
#: Health metrics left off the page (module docstring).
NOT_PLOTTED = re.compile(r"feature_psi\.\d+|ece_threshold\..*|gap_se\..*|outcomes\..*")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _json(value: float | None) -> float | None:
    """JSON has no NaN or infinity: null, like a missing value."""
    return value if value is not None and math.isfinite(value) else None


def report_row(report: Mapping[str, Any]) -> dict[str, float]:
    """One decoded allocation report's values (module docstring)."""
    row: dict[str, float] = {
        "objective": float(report["objective"]),
        "fallback": float(report.get("n_fallback", 0)),
        "missing": float(report.get("n_missing", 0)),
        "solve_seconds": float(report["solve_seconds"]),
        "window_seconds": float(report["window_seconds"]),
    }
    for b in report.get("budgets", []):
        limit = float(b["limit"])
        used = float(b["used"]) + float(b.get("fallback_used", 0.0))
        if limit > 0 and math.isfinite(limit):
            row[f"usage.{b['name']}"] = used / limit
        row[f"dual.{b['name']}"] = float(b["dual"])
    providers = [abs(float(p["dual"])) for p in report.get("providers", [])]
    if providers:
        row["dual.provider"] = max(providers)
    return row


def health_row(record: Mapping[str, Any]) -> dict[str, float]:
    """One decoded health record's values (module docstring)."""
    row: dict[str, float] = {}
    for name, v in (record.get("values") or {}).items():
        number = _number(v)
        if number is not None and not NOT_PLOTTED.fullmatch(name):
            row[f"health.{name}"] = number
    alarms = record.get("alarms")
    if isinstance(alarms, list):
        row["alarms"] = float(len(alarms))
    return row


class SeriesStore:
    """The last ``history`` batches' rows, in the order their first record arrived.

    Args:
        history: batches kept; adding one more drops the oldest.
    """

    def __init__(self, history: int = 500) -> None:
        self.history = history
        self._rows: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.skipped = 0  # records that could not be read (the feed logs each)

    def _merge(self, batch_id: str, values: Mapping[str, float]) -> None:
        with self._lock:
            row = self._rows.get(batch_id)
            if row is None:
                row = self._rows[batch_id] = {}
                while len(self._rows) > self.history:
                    self._rows.popitem(last=False)
            row.update(values)

    def add_report(self, report: Mapping[str, Any]) -> None:
        self._merge(str(report["batch_id"]), report_row(report))

    def add_health(self, record: Mapping[str, Any]) -> None:
        self._merge(str(record["batch_id"]), health_row(record))

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def series(self) -> dict[str, Any]:
        """The JSON of ``/api/series``::

            {"batches": [batch_id, ...],                        # oldest first, B of them
             "panels": [{"title": str, "unit": str, "ref": float or null,
                         "series": {name: [value or null] * B}}, ...]}

        A panel lists the series whose names start with one of its prefixes (sorted), each with
        one value per batch, null where that batch has none (a health record not yet read);
        panels with no series are left out.
        """
        with self._lock:
            batches = list(self._rows)
            rows = list(self._rows.values())
        left = sorted({name for row in rows for name in row})
        panels = []
        for title, unit, prefixes in PANELS:  # each series in the first panel that names it
            mine = [n for n in left if any(n == p or (p.endswith(".") and n.startswith(p)) for p in prefixes)]
            left = [n for n in left if n not in mine]
            if mine:
                panels.append(
                    {
                        "title": title,
                        "unit": unit,
                        "ref": REFERENCES.get(title),
                        "series": {n: [_json(row.get(n)) for row in rows] for n in mine},
                    }
                )
        return {"batches": batches, "panels": panels}
