"""Sweeps in ``results.json``: one measure per method at each value of a swept parameter.

A sweep sits under its own top-level key (``"tau_sweep"``, ``"train_size_sweep"``, or children
of a ``"sweeps"`` object). Two shapes are read:

* by value: ``{"0.5": {METHOD: SUMMARY, ...}, "1.0": {...}}`` (each value's object may also wrap
  its methods in ``"methods"``), or the same with methods outside and values inside;
* by column: ``{"values": [0.5, 1.0], "methods": {METHOD: {MEASURE: [one per value]}}}``.

A ``SUMMARY`` is an object of measures (one level of grouping allowed), each a number or a list
(per batch, or per seed per batch). A list becomes one number per seed as in the summary table
(``evaluation.reporting.reductions``: cumulative reward, last batch's oracle fraction, budget
usage over its window, else the mean), then their mean over seeds with a 95% interval; a bare
number is read as the measure ``"value"``. Anything else is reported as not shown, never raised:
a sweep is optional.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.reporting.bands import Interval, interval
from evaluation.reporting.errors import ReportInputError
from evaluation.reporting.json_values import json_kind, per_seed_matrix
from evaluation.reporting.reductions import USAGE_WINDOW, per_seed_summary

# Keys under which the by-column shape keeps its parameter values.
_VALUE_KEYS = ("values", "grid", "parameter_values", "taus", "sizes", "x")

# Display names of parameters the experiment sweeps.
# (symbol, description) of parameters the experiment sweeps.
_PARAMETER_NAMES = {"tau": ("τ", "τ (Thompson temperature)"), "temperature": ("τ", "τ (Thompson temperature)")}


@dataclass(frozen=True, eq=False)
class Sweep:
    """One sweep: a measure per method at each value of one parameter.

    Attributes:
        key: Where the sweep sits in the file (``"tau_sweep"``, ``"sweeps.train_size"``).
        parameter: The parameter's display name (``"τ (Thompson temperature)"``).
        symbol: Its short name, for table headers (``"τ"``).
        labels: ``(V,)`` the parameter's values as written, in plotting order.
        positions: ``(V,)`` the values as numbers when all are numbers (sorted), else None.
        measures: Measure -> method -> ``(V,)`` mean over seeds (nan where a method has none).
        half_widths: Measure -> method -> ``(V,)`` half-width of the 95% interval of that mean
            (nan for a single seed or a number given as such).
        descriptions: Measure -> how its lists were read (``"cumulative"``, ``"last batch"``,
            ``"mean of batches 4–20"``, ``"mean over batches"``); absent for numbers.
    """

    key: str
    parameter: str
    symbol: str
    labels: tuple[str, ...]
    positions: FloatArray | None
    measures: Mapping[str, Mapping[str, FloatArray]]
    half_widths: Mapping[str, Mapping[str, FloatArray]]
    descriptions: Mapping[str, str]

    @property
    def methods(self) -> list[str]:
        """Every method with a value for some measure, in order of appearance."""
        seen: dict[str, None] = {}
        for per_method in self.measures.values():
            for method in per_method:
                seen.setdefault(method, None)
        return list(seen)


def read_sweeps(
    document: Mapping[str, Any], methods: Iterable[str] = (), usage_from: int = USAGE_WINDOW[0]
) -> tuple[tuple[Sweep, ...], list[str]]:
    """Read every sweep among the top-level keys of ``results.json`` other than config and methods.

    Args:
        document: Those keys and their values.
        methods: The experiment's method names (to tell methods from parameter values).
        usage_from: First batch of the budget-usage window.

    Returns:
        The sweeps found, and one line per key that is not a sweep of a known shape.
    """
    known = set(methods)
    sweeps: list[Sweep] = []
    notes: list[str] = []
    for key, value in document.items():
        children = value.items() if key == "sweeps" and isinstance(value, dict) else [(key, value)]
        for name, sub in children:
            where = f"sweeps.{name}" if key == "sweeps" else str(name)
            sweep = _sweep(where, str(name), sub, known, usage_from)
            if sweep is None:
                notes.append(f"{where}: not shown (not a sweep of a known shape: {json_kind(sub)})")
            else:
                sweeps.append(sweep)
    return tuple(sweeps), notes


def parameter_name(key: str) -> tuple[str, str]:
    """Short and long display names of the parameter of the sweep at ``key``.

    ``"tau_sweep"`` -> ``("τ", "τ (Thompson temperature)")``; ``"train_size"`` -> ``("train size", "train size")``.
    """
    base = re.sub(r"(^sweeps?_|_sweeps?$)", "", key.split(".")[-1]) or key
    plain = base.replace("_", " ")
    return _PARAMETER_NAMES.get(base.lower(), (plain, plain))


def _sweep(where: str, name: str, value: Any, methods: set[str], usage_from: int) -> Sweep | None:
    if not isinstance(value, dict) or not value:
        return None
    by_value: dict[str, dict[str, Any]] | None = None
    values_key = next((k for k in _VALUE_KEYS if isinstance(value.get(k), list)), None)
    if values_key is not None and isinstance(value.get("methods"), dict):
        by_value = _columns_to_values(value[values_key], value["methods"])
    elif all(isinstance(v, dict) for v in value.values()):
        if methods and set(value) <= methods:  # methods outside, values inside
            by_value = {}
            for method, per_value in value.items():
                for label, summary in per_value.items():
                    by_value.setdefault(str(label), {})[method] = summary
        else:
            by_value = {
                str(label): (inner["methods"] if isinstance(inner.get("methods"), dict) else inner)
                for label, inner in value.items()
            }
    if not by_value:
        return None
    return _assemble(where, name, by_value, usage_from)


def _columns_to_values(values: list[Any], per_method: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    labels = [_label(v) for v in values]
    by_value: dict[str, dict[str, Any]] = {label: {} for label in labels}
    for method, measures in per_method.items():
        if not isinstance(measures, dict):
            return None
        for measure, column in measures.items():
            if not isinstance(column, list) or len(column) != len(labels):
                return None
            for label, cell in zip(labels, column):
                by_value[label].setdefault(method, {})[measure] = cell
    return by_value


def _assemble(where: str, name: str, by_value: dict[str, dict[str, Any]], usage_from: int) -> Sweep | None:
    labels = list(by_value)
    numbers = [_number(label) for label in labels]
    positions: FloatArray | None = None
    if all(n is not None for n in numbers):
        order = sorted(range(len(labels)), key=lambda i: numbers[i] or 0.0)
        labels = [labels[i] for i in order]
        positions = np.array([numbers[i] for i in order], dtype=float)
    measures: dict[str, dict[str, FloatArray]] = {}
    half_widths: dict[str, dict[str, FloatArray]] = {}
    descriptions: dict[str, str] = {}
    for index, label in enumerate(labels):
        for method, summary in by_value[label].items():
            cells = summary if isinstance(summary, dict) else {"value": summary}
            for measure, cell in _flatten(cells):
                reduced = _reduce(measure, cell, usage_from)
                if reduced is None:
                    continue
                value, description = reduced
                for table, number in ((measures, value.mean), (half_widths, value.half_width)):
                    column = table.setdefault(measure, {}).setdefault(str(method), np.full(len(labels), math.nan))
                    column[index] = number
                if description:
                    descriptions[measure] = description
    if not measures:
        return None
    symbol, parameter = parameter_name(name)
    return Sweep(
        key=where,
        parameter=parameter,
        symbol=symbol,
        labels=tuple(labels),
        positions=positions,
        measures=measures,
        half_widths=half_widths,
        descriptions=descriptions,
    )


def _flatten(cells: dict[str, Any]) -> list[tuple[str, Any]]:
    flat: list[tuple[str, Any]] = []
    for measure, cell in cells.items():
        if isinstance(cell, dict):
            flat.extend((f"{measure}.{sub}", v) for sub, v in cell.items() if not isinstance(v, dict))
        else:
            flat.append((str(measure), cell))
    return flat


def _reduce(measure: str, cell: Any, usage_from: int) -> tuple[Interval, str] | None:
    # A number as itself; a list of numbers (or of per-seed lists) as the mean over seeds of its
    # per-seed summary; anything else: nothing.
    if isinstance(cell, bool):
        return None
    if isinstance(cell, (int, float)):
        return Interval(float(cell), math.nan, 1), ""
    if isinstance(cell, list):
        try:
            matrix = per_seed_matrix(cell, measure)
        except ReportInputError:
            return None
        per_seed, description = per_seed_summary(measure.split(".")[-1], matrix, usage_from)
        value = interval(per_seed)
        return (value, description) if value.n else None
    return None


def _number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
