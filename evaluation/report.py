"""PNG plots of a run: reward against the oracle, constraint usage and exploration per batch.

Figures are drawn with matplotlib's object-oriented API on an explicit Agg canvas rather than
through ``pyplot``: no global backend switch, no global figure registry, so plotting is safe in a
worker process that also runs other code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from banditlp.arrays import IntArray
from evaluation.run_summary import BatchOutcome, RunSummary, summarise

# File names, in the order write_plots returns them.
CUMULATIVE_REWARD_PNG = "cumulative_reward.png"
UNSUB_BUDGET_PNG = "unsub_budget_usage.png"
PROVIDER_EXPOSURE_PNG = "provider_exposure.png"
EXPLORATION_PNG = "exploration.png"


def write_plots(outcomes: list[BatchOutcome], run_dir: Path | str) -> list[Path]:
    """Write the run's four figures as PNGs into ``run_dir`` (created if missing).

    * ``cumulative_reward.png``: cumulative expected reward of the policy and of the oracle
      (plus the realised reward), and the cumulative regret;
    * ``unsub_budget_usage.png``: expected unsubscriptions / budget per batch, line at 1.0;
    * ``provider_exposure.png``: worst provider's exposure / minimum per batch, line at 1.0
      (and exposure / maximum where providers have maximums);
    * ``exploration.png``: distinct items sent per batch; mean selection entropy and mean
      posterior std where the policy reported them.

    Args:
        outcomes: One record per batch, in batch order (at least one).
        run_dir: Output directory.

    Returns:
        The four paths, in the order above.

    Raises:
        EvaluationInputError: if ``outcomes`` is empty.
    """
    summary = summarise(outcomes)
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    batches = np.arange(1, summary.n_batches + 1)
    drawers = (
        (CUMULATIVE_REWARD_PNG, _draw_cumulative_reward),
        (UNSUB_BUDGET_PNG, _draw_unsub_usage),
        (PROVIDER_EXPOSURE_PNG, _draw_provider_exposure),
        (EXPLORATION_PNG, _draw_exploration),
    )
    paths = []
    for name, draw in drawers:
        figure = Figure(figsize=(8.0, 4.8), layout="constrained")
        FigureCanvasAgg(figure)  # attaches itself to the figure
        draw(figure, batches, summary)
        path = out / name
        figure.savefig(path, dpi=110)
        paths.append(path)
    return paths


def _draw_cumulative_reward(figure: Figure, batches: IntArray, summary: RunSummary) -> None:
    ax = figure.add_subplot()
    ax.plot(batches, summary.cumulative_oracle_reward, label="oracle (true LP)", color="black")
    ax.plot(batches, summary.cumulative_expected_reward, label="policy, expected", color="C0")
    ax.plot(
        batches,
        summary.cumulative_realised_reward,
        label="policy, realised",
        color="C0",
        linestyle="--",
        alpha=0.7,
    )
    ax.plot(batches, summary.cumulative_regret, label="cumulative regret", color="C3")
    ax.set_title(f"Cumulative reward: policy reaches {summary.reward_fraction:.1%} of the oracle")
    ax.set_xlabel("send batch")
    ax.set_ylabel("cumulative reward (value of conversions)")
    ax.legend(loc="upper left")
    _integer_batches(ax, batches)


def _draw_unsub_usage(figure: Figure, batches: IntArray, summary: RunSummary) -> None:
    ax = figure.add_subplot()
    ax.plot(batches, summary.unsub_usage, marker="o", markersize=3, label="policy, expected")
    ax.axhline(1.0, color="C3", linestyle="--", label="budget")
    ax.set_title(
        "Unsubscription budget usage per batch "
        f"({summary.budget_violations} of {summary.n_batches} batches over budget)"
    )
    ax.set_xlabel("send batch")
    ax.set_ylabel("expected unsubscriptions / budget")
    ax.set_ylim(bottom=0.0)
    ax.legend(loc="best")
    _integer_batches(ax, batches)


def _draw_provider_exposure(figure: Figure, batches: IntArray, summary: RunSummary) -> None:
    ax = figure.add_subplot()
    if np.all(np.isnan(summary.provider_min_ratio)):
        ax.text(0.5, 0.5, "no provider minimums", ha="center", transform=ax.transAxes)
    else:
        ax.plot(
            batches,
            summary.provider_min_ratio,
            marker="o",
            markersize=3,
            label="worst provider: exposure / minimum",
        )
    if not np.all(np.isnan(summary.provider_max_ratio)):
        ax.plot(
            batches,
            summary.provider_max_ratio,
            marker="s",
            markersize=3,
            label="worst provider: exposure / maximum",
        )
    ax.axhline(1.0, color="C3", linestyle="--", label="bound")
    ax.set_title(
        "Provider exposure against its bounds per batch "
        f"({summary.provider_violations} of {summary.n_batches} batches out of bounds)"
    )
    ax.set_xlabel("send batch")
    ax.set_ylabel("exposure / bound")
    ax.set_ylim(bottom=0.0)
    ax.legend(loc="best")
    _integer_batches(ax, batches)


def _draw_exploration(figure: Figure, batches: IntArray, summary: RunSummary) -> None:
    items_ax, measures_ax = figure.subplots(1, 2)
    items_ax.plot(batches, summary.distinct_items, marker="o", markersize=3, color="C2")
    items_ax.set_title("Distinct items sent")
    items_ax.set_xlabel("send batch")
    items_ax.set_ylabel("items with x > 0")
    items_ax.set_ylim(bottom=0.0)
    _integer_batches(items_ax, batches)

    drawn = False
    for values, label, color in (
        (summary.mean_entropy, "mean selection entropy (nats)", "C4"),
        (summary.mean_posterior_std, "mean posterior std", "C1"),
    ):
        if not np.all(np.isnan(values)):
            measures_ax.plot(batches, values, marker="o", markersize=3, label=label, color=color)
            drawn = True
    if drawn:
        measures_ax.legend(loc="best")
    else:
        measures_ax.text(0.5, 0.5, "not reported by the policy", ha="center", transform=measures_ax.transAxes)
    measures_ax.set_title("Policy uncertainty")
    measures_ax.set_xlabel("send batch")
    measures_ax.set_ylabel("nats / std")
    measures_ax.set_ylim(bottom=0.0)
    _integer_batches(measures_ax, batches)
    figure.suptitle("Exploration per batch")


def _integer_batches(ax: Axes, batches: IntArray) -> None:
    # Batch numbers are integers: keep fractional ticks off the x axis. The default locator of an
    # axis (AutoLocator) is a MaxNLocator, which takes ``integer``.
    locator = ax.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):
        locator.set_params(integer=True)
    ax.set_xlim(batches[0] - 0.5, batches[-1] + 0.5)
