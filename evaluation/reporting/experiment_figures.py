"""The experiment's figures, one per section: each function returns a :class:`Plot`, or None
when the results hold nothing it could draw.

Every line is a method's mean over seeds; the shaded band around it is the 95% confidence band
of that mean (``evaluation.reporting.bands``). A method keeps its colour in every figure.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from banditlp.arrays import FloatArray
from evaluation.reporting.bands import CONFIDENCE, band
from evaluation.reporting.experiment_results import (
    CORE_SERIES,
    ORACLE_METHOD,
    CalibrationCurve,
    ExperimentResults,
)
from evaluation.reporting.experiment_summary import BATCH_USAGE_LIMIT
from evaluation.reporting.html_page import Plot
from evaluation.reporting.plotting import (
    BOUND_COLOUR,
    MethodStyles,
    batch_axis,
    empty_panel,
    measure_label,
    new_figure,
    plot_band,
    png_bytes,
    shared_legend,
)
from evaluation.reporting.reductions import regret_per_seed
from evaluation.reporting.sweeps import Sweep

WIDTH = 11.2  # inches: the page's text width (1120 px) at the PNG's resolution
ROW_HEIGHT = 4.0

#: Measures a sweep's figure draws when the sweep holds them.
SWEEP_PLOTTED = ("reward", "oracle_fraction", "unsub_usage", "provider_min_shortfall")

# Natural ranges of bounded measures (their bands are cut to them).
NON_NEGATIVE: tuple[float | None, float | None] = (0.0, None)
SHARE: tuple[float | None, float | None] = (0.0, 1.0)

#: The band's meaning, for captions.
BAND_TEXT = f"Lines: mean over seeds; shaded: {CONFIDENCE:.0%} confidence band of the mean."


def is_calibration_series(name: str) -> bool:
    """Whether a per-batch measure belongs to the calibration section."""
    return name.startswith("calibration")


def reward_plot(results: ExperimentResults, styles: MethodStyles) -> Plot | None:
    """Cumulative expected reward per method, and the reward / oracle ratio per batch."""
    rewards = results.holding("reward")
    fractions = results.holding("oracle_fraction")
    if not rewards and not fractions:
        return None
    figure = new_figure(WIDTH, ROW_HEIGHT + 0.6)
    cumulative_ax, fraction_ax = figure.subplots(1, 2)
    _draw_bands(cumulative_ax, {m: np.cumsum(np.nan_to_num(v), axis=1) for m, v in rewards.items()}, styles)
    cumulative_ax.set_title("Cumulative expected reward")
    cumulative_ax.set_ylabel("cumulative expected reward (value)")
    _draw_bands(fraction_ax, fractions, styles, NON_NEGATIVE)
    if fractions:
        fraction_ax.axhline(1.0, color="#000000", linewidth=0.8, linestyle=":")
    fraction_ax.set_title("Reward / oracle's reward, per batch")
    fraction_ax.set_ylabel("oracle fraction")
    _mark_missing(cumulative_ax, rewards, "no 'reward' in the results")
    _mark_missing(fraction_ax, fractions, "no 'oracle_fraction' in the results")
    shared_legend(figure, (cumulative_ax, fraction_ax))
    return Plot(
        png=png_bytes(figure),
        alt="Cumulative expected reward and oracle fraction per batch, per method",
        caption=f"Expected reward under the true probabilities. {BAND_TEXT}",
    )


def regret_plot(results: ExperimentResults, styles: MethodStyles) -> Plot | None:
    """Cumulative regret of each method against the oracle LP, seed by seed."""
    oracle = results.methods.get(ORACLE_METHOD)
    if oracle is None or "reward" not in oracle.series:
        return None
    regrets: dict[str, FloatArray] = {}
    for name, reward in results.holding("reward").items():
        if name == ORACLE_METHOD:
            continue
        regret = regret_per_seed(reward, oracle.series["reward"])
        if regret is not None:
            regrets[name] = regret
    if not regrets:
        return None
    figure = new_figure(WIDTH, ROW_HEIGHT + 0.4)
    ax = figure.add_subplot()
    _draw_bands(ax, regrets, styles)
    ax.axhline(0.0, color="#000000", linewidth=0.8)
    ax.set_title(f"Cumulative regret against {ORACLE_METHOD} (lower is better)")
    ax.set_ylabel("oracle's minus method's cumulative reward")
    shared_legend(figure, (ax,))
    return Plot(
        png=png_bytes(figure),
        alt=f"Cumulative regret against {ORACLE_METHOD} per method",
        caption=(
            f"Regret of seed s is {ORACLE_METHOD}'s cumulative reward on seed s minus the method's. "
            f"Below zero, a method earned more than the oracle, which is possible only by breaking "
            f"constraints the oracle keeps. {BAND_TEXT}"
        ),
    )


def constraints_plot(results: ExperimentResults, styles: MethodStyles) -> Plot | None:
    """Unsubscription budget usage per batch (line at 1.0) and the provider minimum shortfall."""
    usage = results.holding("unsub_usage")
    shortfall = results.holding("provider_min_shortfall")
    if not usage and not shortfall:
        return None
    figure = new_figure(WIDTH, ROW_HEIGHT + 0.6)
    usage_ax, shortfall_ax = figure.subplots(1, 2)
    _draw_bands(usage_ax, usage, styles, NON_NEGATIVE)
    usage_ax.axhline(1.0, color=BOUND_COLOUR, linewidth=1.4, label="budget (1.0)")
    usage_ax.axhline(BATCH_USAGE_LIMIT, color=BOUND_COLOUR, linewidth=1.2, linestyle=":", label="tolerance (1.05)")
    usage_ax.set_title("Unsubscription budget usage per batch")
    usage_ax.set_ylabel("expected unsubscriptions / budget")
    _draw_bands(shortfall_ax, shortfall, styles, SHARE)
    shortfall_ax.axhline(0.0, color=BOUND_COLOUR, linewidth=1.4, label="all minimums met (0)")
    shortfall_ax.set_title("Provider minimum shortfall per batch")
    shortfall_ax.set_ylabel("largest relative shortfall below a minimum")
    _mark_missing(usage_ax, usage, "no 'unsub_usage' in the results")
    _mark_missing(shortfall_ax, shortfall, "no 'provider_min_shortfall' in the results")
    shared_legend(figure, (usage_ax, shortfall_ax))
    return Plot(
        png=png_bytes(figure),
        alt="Unsubscription budget usage and provider minimum shortfall per batch, per method",
        caption=(
            "Both under the true probabilities of the simulated world. Usage above 1.0 breaks the "
            "budget; a shortfall of 0.1 means some provider got 10% less exposure than its minimum. "
            f"{BAND_TEXT}"
        ),
    )


def overlap_plot(results: ExperimentResults, styles: MethodStyles) -> Plot | None:
    """Overlap@K between consecutive allocations, per batch."""
    overlap = results.holding("overlap_at_k")
    if not overlap:
        return None
    figure = new_figure(WIDTH, ROW_HEIGHT + 0.4)
    ax = figure.add_subplot()
    _draw_bands(ax, overlap, styles, SHARE)
    ax.set_title("Overlap@K between consecutive allocations")
    ax.set_ylabel("share of a user's top K kept from the previous batch")
    ax.set_ylim(-0.02, 1.02)
    shared_legend(figure, (ax,))
    return Plot(
        png=png_bytes(figure),
        alt="Overlap at K between consecutive allocations per method",
        caption=f"1 = the same items as in the previous batch (no exploration), 0 = all new. {BAND_TEXT}",
    )


def calibration_plot(results: ExperimentResults, styles: MethodStyles) -> Plot | None:
    """Calibration error per batch and reliability curves, for whatever of them the results hold."""
    error_names = [n for n in results.series_names() if is_calibration_series(n)]
    curve_labels: dict[str, None] = {}
    for method in results.methods.values():
        for curve in method.curves:
            curve_labels.setdefault(curve.label, None)
    n_panels = len(error_names) + len(curve_labels)
    if n_panels == 0:
        return None
    figure, axes = _grid(n_panels)
    for ax, name in zip(axes, error_names):
        _draw_bands(ax, results.holding(name), styles, NON_NEGATIVE)
        ax.set_title(measure_label(name))
        ax.set_ylabel("calibration error")
        ax.set_ylim(bottom=0.0)
    for ax, label in zip(axes[len(error_names) :], curve_labels):
        _draw_curves(ax, label, results, styles)
    shared_legend(figure, axes)
    return Plot(
        png=png_bytes(figure),
        alt="Calibration error per batch and reliability curves per method",
        caption=(
            "Calibration error: the distance between predicted and observed rates (lower is better). "
            "Reliability curves: observed frequency against predicted probability per bin, averaged over "
            f"seeds; the diagonal is perfect calibration. {BAND_TEXT}"
        ),
    )


def other_plot(results: ExperimentResults, styles: MethodStyles, names: list[str]) -> Plot | None:
    """Small multiples of the per-batch measures no other figure shows."""
    if not names:
        return None
    figure, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        _draw_bands(ax, results.holding(name), styles)
        ax.set_title(measure_label(name))
        ax.set_ylabel(measure_label(name))
    shared_legend(figure, axes)
    return Plot(
        png=png_bytes(figure),
        alt="Further per-batch measures per method: " + ", ".join(names),
        caption=f"Measures in the results without a figure of their own, as written. {BAND_TEXT}",
    )


def sweep_measures(sweep: Sweep) -> list[str]:
    """The measures a sweep's figure draws: the core ones it holds, else its first six."""
    core = [name for name in SWEEP_PLOTTED if name in sweep.measures]
    return core or list(sweep.measures)[:6]


def sweep_plot(sweep: Sweep, styles: MethodStyles) -> Plot:
    """One panel per measure of a sweep (:func:`sweep_measures`): each method's value against the parameter."""
    names = sweep_measures(sweep)
    figure, axes = _grid(len(names))
    x = sweep.positions if sweep.positions is not None else np.arange(len(sweep.labels), dtype=float)
    for ax, name in zip(axes, names):
        for method, values in sweep.measures[name].items():
            half = np.nan_to_num(sweep.half_widths[name][method], nan=0.0)
            ax.errorbar(
                x,
                values,
                yerr=half,
                marker="o",
                capsize=3,
                color=styles.colour(method),
                linestyle=styles.linestyle(method),
                label=method,
            )
        if sweep.positions is None:
            ax.set_xticks(x, list(sweep.labels))
        ax.set_xlabel(sweep.parameter)
        description = sweep.descriptions.get(name)
        ax.set_ylabel(measure_label(name))
        ax.set_title(measure_label(name) + (f" ({description})" if description else ""))
        ax.grid(True, alpha=0.3)
        if name == "unsub_usage":
            ax.axhline(1.0, color=BOUND_COLOUR, linewidth=1.2, label="budget (1.0)")
    shared_legend(figure, axes)
    return Plot(
        png=png_bytes(figure),
        alt=f"Sweep over {sweep.parameter}: " + ", ".join(names),
        caption=(
            f"Each point is the experiment run at that value of {sweep.parameter}: the mean over seeds, "
            f"with its {CONFIDENCE:.0%} interval as error bars where there are several seeds."
        ),
    )


def shown_elsewhere(name: str) -> bool:
    """Whether a per-batch measure has a figure of its own (core measures and calibration)."""
    return name in CORE_SERIES or is_calibration_series(name)


def _draw_bands(
    ax: Axes,
    per_method: dict[str, FloatArray],
    styles: MethodStyles,
    limits: tuple[float | None, float | None] = (None, None),
) -> None:
    n_batches = 1
    for method, values in per_method.items():
        x = np.arange(1, values.shape[1] + 1)
        plot_band(ax, x, band(values), styles, method, limits)
        n_batches = max(n_batches, values.shape[1])
    batch_axis(ax, n_batches)


def _draw_curves(ax: Axes, label: str, results: ExperimentResults, styles: MethodStyles) -> None:
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", label="_perfect")
    top = 0.0
    for method in results.methods.values():
        curve: CalibrationCurve | None = next((c for c in method.curves if c.label == label), None)
        if curve is None:
            continue
        ax.plot(
            curve.predicted,
            curve.observed,
            marker="o",
            markersize=3,
            color=styles.colour(method.name),
            label=method.name,
        )
        finite = np.concatenate([curve.predicted, curve.observed])
        finite = finite[np.isfinite(finite)]
        top = max(top, float(finite.max()) if finite.size else 0.0)
    limit = min(1.0, top * 1.1) if top > 0 else 1.0
    ax.set_xlim(0.0, limit)
    ax.set_ylim(0.0, limit)
    ax.set_title(f"Reliability curve{': ' + measure_label(label) if label else ''}")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.grid(True, alpha=0.3)


def _grid(n_panels: int) -> tuple[Figure, list[Axes]]:
    columns = min(n_panels, 3)
    rows = math.ceil(n_panels / columns)
    figure = new_figure(WIDTH, ROW_HEIGHT * rows + 0.6)
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for extra in grid[n_panels:]:
        extra.set_visible(False)
    return figure, list(grid[:n_panels])


def _mark_missing(ax: Axes, per_method: dict[str, FloatArray], message: str) -> None:
    if not per_method:
        empty_panel(ax, message)
