"""Write a policy-family run: ``summary.json``, ``regret.csv``, ``regret.png`` and a Markdown table.

``summary.json`` is exactly ``{"rounds": N, "policies": {NAME: {"cumulative_regret": [per seed],
"cumulative_reward": [per seed], "regret_curve": [mean over seeds, per round], "seconds": [per
seed]}}}``; the CSV has one row per round and one column per policy (the mean cumulative regret);
the PNG draws those curves with a ±1 std band over the seeds.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from evaluation.bandits.runner import PolicySummary, growth_exponent, summary_json
from evaluation.reporting.plotting import new_figure, png_bytes


def regret_table(summaries: Mapping[str, PolicySummary]) -> str:
    """A Markdown table: cumulative regret mean ± std over seeds, the fitted exponent b, seconds per seed."""
    lines = [
        "| policy | cumulative regret (mean ± std) | exponent b | seconds per seed |",
        "| --- | --- | --- | --- |",
    ]
    order = sorted(summaries, key=lambda n: float(np.mean(summaries[n].cumulative_regret)))
    for name in order:
        s = summaries[name]
        final = np.asarray(s.cumulative_regret)
        lines.append(
            f"| {name} | {final.mean():.1f} ± {final.std():.1f} | {growth_exponent(s.regret_curve):.2f} "
            f"| {np.mean(s.seconds):.1f} |"
        )
    return "\n".join(lines)


def write_run(out: Path, rounds: int, summaries: Mapping[str, PolicySummary], *, title: str = "") -> dict[str, Path]:
    """Write the run's files into ``out`` (created) and return their paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out / "summary.json",
        "csv": out / "regret.csv",
        "png": out / "regret.png",
        "table": out / "table.md",
    }
    paths["summary"].write_text(json.dumps(summary_json(rounds, summaries), indent=1) + "\n")
    names = list(summaries)
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round", *names])
        for t in range(rounds):
            writer.writerow([t + 1, *(f"{summaries[n].regret_curve[t]:.6g}" for n in names)])
    figure = new_figure(7.0, 4.5)
    ax = figure.add_subplot()
    x = np.arange(1, rounds + 1)
    for name in names:
        mean = np.asarray(summaries[name].regret_curve)
        (line,) = ax.plot(x, mean, linewidth=1.5, label=name)
        std = np.asarray(summaries[name].regret_std_curve)
        if std.shape == mean.shape:
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative regret (mean over seeds, ±1 std)")
    ax.set_title(title or "cumulative regret")
    ax.legend(fontsize=8)
    paths["png"].write_bytes(png_bytes(figure))
    paths["table"].write_text(regret_table(summaries) + "\n")
    return paths
