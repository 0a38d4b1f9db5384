"""Drawing helpers shared by the report's figures: figures on an Agg canvas, PNG bytes, one
colour per method across every figure, lines with their confidence bands.

As in ``evaluation.report``, figures are built with matplotlib's object-oriented API on an
explicit Agg canvas, never through ``pyplot``: no global backend or figure registry.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evaluation.reporting.bands import Band

#: Resolution of every embedded PNG.
DPI = 100

#: The colour of a bound (budget, minimum) drawn across a plot.
BOUND_COLOUR = "#d62728"

# Fixed colours for the experiment's methods, so that a method looks the same in every figure
# and every report; other methods take the remaining colours in order of appearance.
_KNOWN_COLOURS = {
    "banditlp": "#1f77b4",
    "banditlp_naive_calibration": "#17becf",
    "nn_lp": "#ff7f0e",
    "nnts": "#2ca02c",
    "linucb_lp": "#9467bd",
    "random_lp": "#7f7f7f",
    "oracle_lp": "#000000",
}
_SPARE_COLOURS = ("#8c564b", "#e377c2", "#bcbd22", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94")


class MethodStyles:
    """One colour and line style per method, the same in every figure of a page."""

    def __init__(self, methods: Iterable[str]) -> None:
        """Assign colours to ``methods`` (known methods keep theirs; others take spares in order)."""
        self._colours: dict[str, str] = {}
        spare = 0
        for method in methods:
            if method in _KNOWN_COLOURS:
                self._colours[method] = _KNOWN_COLOURS[method]
            else:
                self._colours[method] = _SPARE_COLOURS[spare % len(_SPARE_COLOURS)]
                spare += 1

    def colour(self, method: str) -> str:
        """The method's colour (grey for a method not given to the constructor)."""
        return self._colours.get(method, "#555555")

    @staticmethod
    def linestyle(method: str) -> str:
        """Dashed for the oracle (a reference, not a policy), solid otherwise."""
        return "--" if method == "oracle_lp" else "-"


def measure_label(name: str) -> str:
    """A measure's name for a title: ``"calibration_error.unsub"`` -> ``"calibration error: unsub"``."""
    return name.replace(".", ": ").replace("_", " ")


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas, constrained layout."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself to the figure
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure rendered as PNG at :data:`DPI`."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def plot_band(
    ax: Axes,
    x: np.ndarray,
    values: Band,
    styles: MethodStyles,
    method: str,
    limits: tuple[float | None, float | None] = (None, None),
) -> None:
    """Draw a method's mean line and, where there are two seeds or more, its shaded band.

    Args:
        ax: Where to draw.
        x: ``(B,)`` batch numbers.
        values: The method's band, each series ``(B,)``.
        styles: The page's method styles.
        method: The method's name (its legend label).
        limits: The measure's natural range (e.g. ``(0, 1)`` for a share): the band is cut to it,
            as a t-interval of a bounded measure near its bound reaches past it.
    """
    colour = styles.colour(method)
    ax.plot(x, values.mean, color=colour, linestyle=styles.linestyle(method), linewidth=1.6, label=method)
    if np.any(np.isfinite(values.low)):
        low, high = np.clip(values.low, *limits), np.clip(values.high, *limits)
        ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)


def batch_axis(ax: Axes, n_batches: int) -> None:
    """Label the x axis as send batches 1..n with integer ticks only."""
    ax.set_xlabel("send batch")
    locator = ax.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):
        locator.set_params(integer=True)
    ax.set_xlim(0.5, max(n_batches, 1) + 0.5)
    ax.grid(True, alpha=0.3)


def shared_legend(figure: Figure, axes: Iterable[Axes]) -> None:
    """One legend for the whole figure, below the plots, with each label once."""
    handles, labels, seen = [], [], set()
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in seen and not label.startswith("_"):
                seen.add(label)
                handles.append(handle)
                labels.append(label)
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)


def empty_panel(ax: Axes, message: str) -> None:
    """Mark a panel that has nothing to draw, with the reason in its middle."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])
