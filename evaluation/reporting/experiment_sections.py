"""The sections of an experiment's report, in reading order.

Summary tables first (is the budget kept, is the reward better), then one section per figure the
results can fill: reward, regret against the oracle, constraint usage, overlap@K, calibration,
each sweep, any further per-batch measures; then the run's configuration and what was not shown.
A section whose data is absent is left out, never drawn empty.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from evaluation.reporting.bands import CONFIDENCE, decimals_for
from evaluation.reporting.experiment_figures import (
    calibration_plot,
    constraints_plot,
    other_plot,
    overlap_plot,
    regret_plot,
    reward_plot,
    shown_elsewhere,
    sweep_plot,
)
from evaluation.reporting.experiment_results import ORACLE_METHOD, ExperimentResults
from evaluation.reporting.experiment_summary import comparison_table, summary_table
from evaluation.reporting.html_page import Cell, Plot, Section, Table
from evaluation.reporting.plotting import MethodStyles
from evaluation.reporting.sweeps import Sweep

# (anchor, title, figure, what the reader should look for)
_FIGURE_SECTIONS: tuple[tuple[str, str, Callable[[ExperimentResults, MethodStyles], Plot | None], str], ...] = (
    (
        "reward",
        "Reward",
        reward_plot,
        "How much expected reward each method earns, in total and per batch as a share of the oracle LP's "
        "(which knows the true probabilities).",
    ),
    (
        "regret",
        f"Regret against {ORACLE_METHOD}",
        regret_plot,
        "What each method loses against the oracle LP over the run; a flattening curve is a method that learns.",
    ),
    (
        "constraints",
        "Constraint usage",
        constraints_plot,
        "Whether each method keeps its constraints under the true probabilities: the unsubscription budget "
        "(at or below 1.0) and every provider's minimum exposure (shortfall 0).",
    ),
    (
        "overlap",
        "Overlap@K",
        overlap_plot,
        "How much of each user's allocation carries over from one batch to the next: a policy that never "
        "changes its mind does not explore.",
    ),
    (
        "calibration",
        "Calibration",
        calibration_plot,
        "How close the scores the LP sees are to the true probabilities.",
    ),
)


def experiment_sections(results: ExperimentResults) -> list[Section]:
    """Every section the results can fill, in reading order.

    Args:
        results: The experiment.

    Returns:
        The sections; each figure section holds exactly one plot.
    """
    styles = MethodStyles(list(results.methods) + [m for s in results.sweeps for m in s.methods])
    sections = [_summary_section(results)]
    for anchor, title, draw, text in _FIGURE_SECTIONS:
        plot = draw(results, styles)
        if plot is not None:
            sections.append(Section(anchor=anchor, title=title, paragraphs=(text,), plots=(plot,)))
    for sweep in results.sweeps:
        sections.append(_sweep_section(sweep, styles))
    others = [name for name in results.series_names() if not shown_elsewhere(name)]
    plot = other_plot(results, styles, others)
    if plot is not None:
        sections.append(Section(anchor="other-measures", title="Other measures", plots=(plot,)))
    if results.config:
        sections.append(_config_section(results))
    if results.not_shown:
        sections.append(
            Section(
                anchor="not-shown",
                title="Not shown",
                paragraphs=("Keys of results.json that the page could not read as a measure or a sweep:",),
                notes=results.not_shown,
            )
        )
    return sections


def _summary_section(results: ExperimentResults) -> Section:
    methods = list(results.methods)
    seeds = max(m.n_seeds for m in results.methods.values())
    batches = max(m.n_batches for m in results.methods.values())
    text = (
        f"{len(methods)} methods ({', '.join(methods)}), up to {seeds} seeds × {batches} batches. "
        f"Every figure and interval is a mean over seeds with its {CONFIDENCE:.0%} confidence interval."
    )
    tables: list[Table] = [summary_table(results)]
    comparison = comparison_table(results)
    if comparison is not None:
        tables.append(comparison)
    return Section(anchor="summary", title="Summary", paragraphs=(text,), tables=tuple(tables))


def _sweep_section(sweep: Sweep, styles: MethodStyles) -> Section:
    rows: list[tuple[Cell | str, ...]] = []
    for measure, per_method in sweep.measures.items():
        description = sweep.descriptions.get(measure)
        label = f"{measure} ({description})" if description else measure
        for method, values in per_method.items():
            halves = sweep.half_widths[measure][method]
            rows.append((method, label, *(Cell(_number(v, h), "num") for v, h in zip(values, halves))))
    table = Table(
        header=("method", "measure", *(f"{sweep.symbol} = {label}" for label in sweep.labels)),
        rows=tuple(rows),
        caption=f"Sweep over {sweep.parameter} ({sweep.key} in results.json)",
    )
    return Section(
        anchor=f"sweep-{sweep.key}",
        title=f"Sweep: {sweep.parameter}",
        paragraphs=(
            f"How the methods' measures change with {sweep.parameter}. The table holds every measure of the "
            f"sweep (mean over seeds ± half-width of the {CONFIDENCE:.0%} interval); the figure the main ones.",
        ),
        plots=(sweep_plot(sweep, styles),),
        tables=(table,),
    )


def _config_section(results: ExperimentResults) -> Section:
    rows = tuple((key, Cell(value, "code")) for key, value in _flat_config(results.config))
    table = Table(header=("setting", "value"), rows=rows, caption="config in results.json")
    return Section(anchor="configuration", title="Configuration", tables=(table,))


def _flat_config(config: Mapping[str, Any], prefix: str = "", depth: int = 2) -> list[tuple[str, str]]:
    # Nested objects become dotted settings (two levels: world_config.n_users,
    # method_configs.banditlp.tau); what lies deeper, and every list, is shown as JSON.
    rows: list[tuple[str, str]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and depth > 0:
            rows.extend(_flat_config(value, f"{name}.", depth - 1))
        else:
            rows.append((name, value if isinstance(value, str) else json.dumps(value, sort_keys=True)))
    return rows


def _number(value: float, half_width: float) -> str:
    if math.isnan(value):
        return "n/a"
    d = decimals_for(value)
    return f"{value:.{d}f}" if math.isnan(half_width) else f"{value:.{d}f} ± {half_width:.{d}f}"
