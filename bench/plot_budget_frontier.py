"""The unsubscription budget's frontier: worst batch usage against the last batch's oracle fraction.

Reads bench/results/experiment-oracle-level-frontier.json (oracle_level_lp at posterior quantiles
of the level) and bench/results/experiment-email-defaults-5x20-summary.json (the learners), both
5 seeds x 20 batches at the email world's defaults, and draws where each lands beside the
issue's targets (worst batch <= 1.05, oracle fraction >= 0.85).

    python bench/plot_budget_frontier.py   # writes bench/results/budget-frontier.png
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    """Draw the frontier PNG."""
    frontier = json.loads((RESULTS / "experiment-oracle-level-frontier.json").read_text())
    level = frontier["worlds"]["defaults (300 users, world seed 0)"]
    learners = json.loads((RESULTS / "experiment-email-defaults-5x20-summary.json").read_text())["methods"]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    names = [n for n in level if n.startswith("lvl_q")]
    ax.plot(
        [level[n]["oracle_fraction_last"] for n in names],
        [level[n]["unsub_usage_max"] for n in names],
        "o-",
        color="black",
        label="oracle_level_lp at quantile q (only the level learnt)",
    )
    for n in names:
        ax.annotate(n.removeprefix("lvl_"), (level[n]["oracle_fraction_last"], level[n]["unsub_usage_max"]), fontsize=8)
    for name, m in learners.items():
        if name in ("oracle_lp", "random_lp", "nnts"):
            continue
        ax.plot(m["oracle_fraction_last"]["mean"], m["unsub_usage_max"], "s", color="tab:blue")
        ax.annotate(name, (m["oracle_fraction_last"]["mean"], m["unsub_usage_max"]), fontsize=7, color="tab:blue")
    ax.axhline(1.05, color="tab:red", ls="--", lw=1)
    ax.axvline(0.85, color="tab:red", ls="--", lw=1)
    ax.fill_between([0.85, 1.05], 0.0, 1.05, color="tab:green", alpha=0.08, label="the issue's targets")
    ax.set_xlim(0.5, 1.02)
    ax.set_ylim(0.8, 1.7)
    ax.set_xlabel("oracle fraction, last batch (mean of 5 seeds)")
    ax.set_ylabel("worst batch's unsubscription usage (true probabilities)")
    ax.set_title("Email world defaults, 5 seeds x 20 batches")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "budget-frontier.png", dpi=110)


if __name__ == "__main__":
    main()
