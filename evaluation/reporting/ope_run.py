"""A replay's run directory (``banditlp replay evaluate --out DIR``), read into report sections.

``DIR/ope.json`` holds, per target policy, every estimator's estimate and bootstrap interval of the
reward and of the unsubscriptions per logged decision, the share of the policy's sends off the log's
support, its expected budget usage per batch, the logged policy's observed means, and the join's
report. The page shows a table of every estimate, one interval plot per policy (an estimator per
point, its interval as a bar, the observed logged mean as a dashed line), the budget usage and the
join's counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.reporting.errors import ReportInputError
from evaluation.reporting.html_page import Cell, Plot, Section, Table
from evaluation.reporting.json_values import json_kind
from evaluation.reporting.plotting import MethodStyles, new_figure, png_bytes

OPE_JSON = "ope.json"
#: The outcomes every estimate is of, in the page's order, and their axis labels.
OUTCOMES = {"reward": "reward per decision (value)", "unsubscription": "unsubscriptions per decision"}


@dataclass(frozen=True)
class Interval:
    """One estimate: its value and its ``(low, high)`` interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class PolicyResult:
    """One target policy of ``ope.json``.

    Attributes:
        estimates: outcome -> estimator -> :class:`Interval`.
        unsupported_share: share of the policy's sends on pairs the log could not send (NaN: absent).
        expected_sends: expected sends per decision (NaN: absent).
        budget_usage: budget name -> ``(B,)`` usage per batch (NaN where unknown).
    """

    name: str
    estimates: dict[str, dict[str, Interval]]
    unsupported_share: float
    expected_sends: float
    budget_usage: dict[str, np.ndarray]


@dataclass(frozen=True)
class OPEResults:
    """``ope.json`` as typed values."""

    policies: tuple[PolicyResult, ...]
    logged: dict[str, float]
    n_rounds: int
    source: dict[str, Any]
    join: dict[str, Any]
    slate: str


def _number(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportInputError(f"{where} must be a number, got {json_kind(value)} {value!r:.40}")
    return float(value)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportInputError(f"{where} must be an object, got {json_kind(value)}")
    return value


def _policy(name: str, entry: Any, where: str) -> PolicyResult:
    entry = _mapping(entry, where)
    estimates: dict[str, dict[str, Interval]] = {}
    for outcome in OUTCOMES:
        if outcome not in entry:
            continue
        estimates[outcome] = {}
        for estimator, e in _mapping(entry[outcome], f"{where}.{outcome}").items():
            at = f"{where}.{outcome}.{estimator}"
            e = _mapping(e, at)
            ci = e.get("ci")
            if not isinstance(ci, list) or len(ci) != 2:
                raise ReportInputError(f"{at}.ci must be a list [low, high], got {json_kind(ci)}")
            estimates[outcome][estimator] = Interval(
                _number(e.get("value"), f"{at}.value"), _number(ci[0], f"{at}.ci[0]"), _number(ci[1], f"{at}.ci[1]")
            )
    if not estimates:
        raise ReportInputError(f"{where} holds no estimate of {' or '.join(OUTCOMES)}")
    usage: dict[str, list[float]] = {}
    for batch, budgets in _mapping(entry.get("budget_usage", {}), f"{where}.budget_usage").items():
        for budget, value in _mapping(budgets, f"{where}.budget_usage.{batch}").items():
            usage.setdefault(budget, []).append(_number(value, f"{where}.budget_usage.{batch}.{budget}"))
    return PolicyResult(
        name=name,
        estimates=estimates,
        unsupported_share=_number(entry.get("unsupported_share"), f"{where}.unsupported_share"),
        expected_sends=_number(entry.get("expected_sends_per_round"), f"{where}.expected_sends_per_round"),
        budget_usage={b: np.array(v, dtype=float) for b, v in usage.items()},
    )


def load_ope(path: Path) -> OPEResults:
    """Read a replay's ``ope.json``.

    Raises:
        ReportInputError: it cannot be read, is not JSON, or breaks the layout (the message names where).
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: cannot read it: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    document = _mapping(document, str(path))
    policies = _mapping(document.get("policies"), f"{path}: policies")
    if not policies:
        raise ReportInputError(f"{path}: policies is empty")
    logged = _mapping(document.get("logged"), f"{path}: logged")
    n = logged.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ReportInputError(f"{path}: logged.n must be a positive integer (the logged decisions), got {n!r:.40}")
    return OPEResults(
        policies=tuple(_policy(str(k), v, f"{path}: policies.{k}") for k, v in policies.items()),
        logged={o: _number(logged.get(o), f"{path}: logged.{o}") for o in OUTCOMES},
        n_rounds=n,
        source=_mapping(document.get("source", {}), f"{path}: source"),
        join=_mapping(document.get("join", {}), f"{path}: join"),
        slate=str(document.get("slate", "")),
    )


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4g}"


def policy_plot(policy: PolicyResult, logged: dict[str, float], styles: MethodStyles) -> Plot:
    """One panel per outcome: each estimator's estimate (point) and interval (bar); the observed
    mean of the logging policy as a dashed line."""
    figure = new_figure(11.2, 3.6)
    axes = figure.subplots(1, len(OUTCOMES))
    colour = styles.colour(policy.name)
    for ax, (outcome, label) in zip(np.atleast_1d(axes), OUTCOMES.items()):
        by_name = policy.estimates.get(outcome, {})
        names = list(by_name)
        values = np.array([by_name[n].value for n in names])
        low = np.array([by_name[n].low for n in names])
        high = np.array([by_name[n].high for n in names])
        x = np.arange(len(names))
        ax.bar(x, np.nan_to_num(values), color=colour, alpha=0.25, width=0.6)
        ax.errorbar(
            x,
            values,
            yerr=np.vstack([np.maximum(values - low, 0), np.maximum(high - values, 0)]),
            fmt="o",
            color=colour,
            capsize=4,
            label=f"{policy.name}: estimate and 95% interval",
        )
        if math.isfinite(logged.get(outcome, math.nan)):
            ax.axhline(logged[outcome], color="#000000", linestyle="--", linewidth=1, label="logged policy, observed")
        ax.set_xticks(x, names)
        ax.set_title(f"{policy.name}: {outcome}")
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize=8, frameon=False)
    caption = f"Estimates of {policy.name}'s {' and '.join(OUTCOMES)} per logged decision, with bootstrap intervals."
    if policy.unsupported_share > 0:
        caption += (
            f" {policy.unsupported_share:.1%} of its expected sends are on pairs the log never sends: "
            "IPS counts nothing there, the model estimators use the outcome model."
        )
    return Plot(png=png_bytes(figure), alt=f"Off-policy estimates of {policy.name}", caption=caption)


def ope_sections(run_dir: Path) -> list[Section]:
    """The replay's sections: the estimates table, one plot per policy, budget usage, the join's counts.

    Raises:
        ReportInputError: if ``ope.json`` is malformed.
    """
    results = load_ope(run_dir / OPE_JSON)
    rows: list[tuple[Cell | str, ...]] = [
        ("logged (observed)", outcome, "mean", Cell(_fmt(results.logged[outcome]), "num"), "") for outcome in OUTCOMES
    ]
    for p in results.policies:
        for outcome, by_name in p.estimates.items():
            for estimator, e in by_name.items():
                rows.append(
                    (
                        p.name,
                        outcome,
                        estimator,
                        Cell(_fmt(e.value), "num"),
                        Cell(f"[{_fmt(e.low)}, {_fmt(e.high)}]", "num"),
                    )
                )
    source = ", ".join(f"{k} {v}" for k, v in results.source.items())
    summary = Section(
        anchor="ope",
        title="Off-policy evaluation",
        paragraphs=tuple(
            text
            for text in (
                f"Estimates per logged decision from {results.n_rounds} logged decisions "
                f"({source or 'source unknown'}).",
                f"Slate assumption: {results.slate}" if results.slate else "",
            )
            if text
        ),
        tables=(
            Table(
                header=("policy", "outcome", "estimator", "value", "95% interval"),
                rows=tuple(rows),
                caption="Every estimator of every target policy (ope.json)",
            ),
        ),
    )
    styles = MethodStyles(p.name for p in results.policies)
    sections = [summary]
    sections += [
        Section(anchor=f"ope-{p.name}", title=f"OPE: {p.name}", plots=(policy_plot(p, results.logged, styles),))
        for p in results.policies
    ]
    usage_rows = []
    for p in results.policies:
        for budget, values in p.budget_usage.items():
            finite = values[np.isfinite(values)]
            worst = float(finite.max()) if finite.size else math.nan
            mean = float(finite.mean()) if finite.size else math.nan
            usage_rows.append(
                (p.name, budget, Cell(_fmt(mean), "num"), Cell(_fmt(worst), "num bad" if worst > 1.05 else "num"))
            )
    support_rows = tuple(
        (p.name, Cell(f"{p.unsupported_share:.1%}", "num"), Cell(_fmt(p.expected_sends), "num"))
        for p in results.policies
    )
    tables = [
        Table(
            header=("policy", "sends off the log's support", "expected sends per decision"),
            rows=support_rows,
            caption="Support",
        )
    ]
    if usage_rows:
        tables.append(
            Table(
                header=("policy", "budget", "mean usage over batches", "worst batch"),
                rows=tuple(usage_rows),
                caption="Budget usage under the logged calibrated means (expected use / limit)",
            )
        )
    counts = tuple((k, Cell(str(v), "num")) for k, v in results.join.items() if isinstance(v, int))
    if counts:
        tables.append(Table(header=("join", "count"), rows=counts, caption="The join of the logs"))
    sections.append(Section(anchor="ope-usage", title="OPE: support and budget usage", tables=tuple(tables)))
    return sections
