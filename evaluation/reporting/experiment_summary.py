"""The experiment's summary tables: one row per method, and one method's reward against the rest.

Per method, over seeds: cumulative reward and regret against the oracle (mean and 95% interval),
the oracle fraction of the last batch, the unsubscription budget usage averaged over batches
4-20 (``evaluation.reporting.reductions``: the batches after the warm-up that the budget
criterion is judged on, or from the config's ``summary_from``) and its worst batch,
and the provider minimum shortfall. Cells that break the criteria the experiment is held to
(mean usage above 1.00, a batch above 1.05, a shortfall in expectation) are marked.
"""

from __future__ import annotations

import math

import numpy as np

from evaluation.reporting.bands import CONFIDENCE, decimals_for, interval
from evaluation.reporting.experiment_results import ORACLE_METHOD, ExperimentResults, MethodResults
from evaluation.reporting.html_page import Cell, Table
from evaluation.reporting.reductions import (
    cumulative_per_seed,
    mean_per_seed,
    regret_per_seed,
    usage_window,
)

#: The mean usage over the window may not exceed this.
MEAN_USAGE_LIMIT = 1.00
#: No single batch's usage may exceed this.
BATCH_USAGE_LIMIT = 1.05
#: A shortfall below this counts as zero (solver tolerance).
SHORTFALL_TOLERANCE = 1e-6

#: The method the pairwise table compares the others against, when present.
REFERENCE_METHOD = "banditlp"


def summary_table(results: ExperimentResults) -> Table:
    """One row per method: reward, regret, oracle fraction, budget usage, provider shortfall.

    Args:
        results: The experiment.

    Returns:
        The table; a measure a method lacks reads ``n/a``.
    """
    n_batches = max(m.n_batches for m in results.methods.values())
    first, last = usage_window(n_batches, results.usage_from)
    level = f"{CONFIDENCE:.0%}"
    header = (
        "method",
        "seeds × batches",
        "cumulative reward",
        f"cumulative regret vs {ORACLE_METHOD}",
        "oracle fraction, last batch",
        f"unsub usage, mean of batches {first}–{last}",
        "unsub usage, worst batch",
        "provider min shortfall, mean / max",
    )
    oracle = results.methods.get(ORACLE_METHOD)
    rows = tuple(_row(method, oracle, first, last) for method in results.methods.values())
    note = (
        f"a ± b: mean over seeds ± half-width of its {level} t-interval. Unsubscription usage is expected "
        "unsubscriptions under the true probabilities divided by the budget; marked red where the mean over "
        f"batches {first}–{last} "
        f"exceeds {MEAN_USAGE_LIMIT:.2f}, where a batch of any seed exceeds {BATCH_USAGE_LIMIT:.2f}, "
        "or where a provider falls short of its minimum on average. The worst batch is the largest usage "
        "over all batches and seeds."
    )
    return Table(header=header, rows=rows, caption="Summary per method", note=note)


def _row(method: MethodResults, oracle: MethodResults | None, first: int, last: int) -> tuple[Cell | str, ...]:
    series = method.series
    shape = f"{method.n_seeds} × {method.n_batches}"
    reward = series.get("reward")
    reward_cell = Cell(interval(cumulative_per_seed(reward)).format(), "num") if reward is not None else _na()
    regret_cell = _na()
    if reward is not None and oracle is not None and "reward" in oracle.series and method is not oracle:
        regret = regret_per_seed(reward, oracle.series["reward"])
        regret_cell = Cell(interval(regret[:, -1]).format(), "num") if regret is not None else _na("seeds differ")
    fraction = series.get("oracle_fraction")
    fraction_cell = Cell(interval(fraction[:, -1]).format(), "num") if fraction is not None else _na()
    usage = series.get("unsub_usage")
    mean_cell, worst_cell = _na(), _na()
    if usage is not None:
        mean = interval(mean_per_seed(usage[:, first - 1 : last]))
        mean_cell = Cell(mean.format(), "num bad" if mean.mean > MEAN_USAGE_LIMIT + 1e-9 else "num")
        if np.isfinite(usage).any():
            seed, batch = np.unravel_index(int(np.nanargmax(usage)), usage.shape)
            worst = float(usage[seed, batch])
            text = f"{worst:.3f} (batch {batch + 1}, seed {seed})"
            worst_cell = Cell(text, "num bad" if worst > BATCH_USAGE_LIMIT else "num")
    shortfall = series.get("provider_min_shortfall")
    shortfall_cell = _na()
    if shortfall is not None and np.isfinite(shortfall).any():
        mean_shortfall = float(np.nanmean(shortfall))
        text = f"{mean_shortfall:.3f} / {float(np.nanmax(shortfall)):.3f}"
        shortfall_cell = Cell(text, "num bad" if mean_shortfall > SHORTFALL_TOLERANCE else "num")
    return (
        method.name,
        Cell(shape, "num"),
        reward_cell,
        regret_cell,
        fraction_cell,
        mean_cell,
        worst_cell,
        shortfall_cell,
    )


def comparison_table(results: ExperimentResults) -> Table | None:
    """Cumulative reward of the reference method minus each other method's, paired by seed.

    The reference is :data:`REFERENCE_METHOD` when present, else the first method.

    Args:
        results: The experiment.

    Returns:
        The table, or None when fewer than two methods hold a reward.
    """
    rewards = results.holding("reward")
    if len(rewards) < 2:
        return None
    reference = REFERENCE_METHOD if REFERENCE_METHOD in rewards else next(iter(rewards))
    level = f"{CONFIDENCE:.0%}"
    ours = cumulative_per_seed(rewards[reference])
    rows: list[tuple[Cell | str, ...]] = []
    for name, reward in rewards.items():
        if name == reference:
            continue
        theirs = cumulative_per_seed(reward)
        if theirs.shape != ours.shape:
            rows.append((name, _na("seeds differ"), _na(), _na()))
            continue
        difference = ours - theirs
        diff = interval(difference)
        low, high = diff.mean - diff.half_width, diff.mean + diff.half_width
        d = decimals_for(diff.mean)
        ci = f"[{low:.{d}f}, {high:.{d}f}]" if math.isfinite(diff.half_width) else "n/a (one seed)"
        finite = difference[np.isfinite(difference)]
        ahead = f"{int(np.sum(finite > 0))} of {finite.size}"
        rows.append((name, Cell(f"{diff.mean:+.{d}f}", "num"), Cell(ci, "num"), Cell(ahead, "num")))
    return Table(
        header=(
            "compared with",
            f"{reference} − method, cumulative reward",
            f"{level} CI (paired over seeds)",
            f"seeds where {reference} is ahead",
        ),
        rows=tuple(rows),
        caption=f"Cumulative reward of {reference} against each other method",
        note="Differences are taken seed by seed (the same world and users for both methods), then averaged.",
    )


def _na(why: str = "") -> Cell:
    return Cell(f"n/a ({why})" if why else "n/a", "num")
