"""Merge two-stage experiment runs made in separate processes into one table (same seeds, disjoint arms).

``python -m evaluation.bandits.two_stage_merge --out OUT DIR [DIR ...]``

Each arm of :mod:`evaluation.bandits.two_stage_experiment` is seeded on its own (the world's
episode from ``reset(seed)``, the decisions from ``default_rng([seed, 1])``), so splitting the
arms over processes (``--only``, ``--parts``) gives the numbers one process would give; this
reads each ``DIR/{budget,no_budget}/summary.json`` and ``DIR/timing.json`` and writes the
merged ``OUT/table.md``, ``OUT/timing.json`` and ``OUT/{part}/`` (summary.json, regret.csv,
regret.png, table.md).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.bandits.report import write_run
from evaluation.bandits.runner import PolicySummary

PARTS = ("budget", "no_budget")


def merge_table(title: str, policies: Mapping[str, Mapping[str, Any]], timing: Mapping[str, Any]) -> str:
    """The experiment's Markdown table from summary.json policies and timing.json entries."""
    lines = [
        f"### {title}",
        "",
        "| policy | cumulative reward (mean ± std) | cumulative regret (mean ± std) | scores / round | ms / round |",
        "| --- | --- | --- | --- | --- |",
    ]
    order = sorted(policies, key=lambda k: -float(np.mean(policies[k]["cumulative_reward"])))
    for label in order:
        reward = np.asarray(policies[label]["cumulative_reward"])
        regret = np.asarray(policies[label]["cumulative_regret"])
        t = timing[label]
        lines.append(
            f"| {label} | {reward.mean():.1f} ± {reward.std():.1f} | {regret.mean():.1f} ± {regret.std():.1f} "
            f"| {np.mean(t['scores_per_round']):.0f} | {np.mean(t['ms_per_round']):.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--header", default="", help="a first paragraph for table.md")
    parser.add_argument("dirs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    sections, timing_out = [], {}
    for part in PARTS:
        policies: dict[str, Any] = {}
        timing: dict[str, Any] = {}
        rounds = 0
        for d in args.dirs:
            path = d / part / "summary.json"
            if not path.exists():
                continue
            summary = json.loads(path.read_text())
            rounds = int(summary["rounds"])
            policies |= summary["policies"]
            timing |= json.loads((d / "timing.json").read_text()).get(part, {})
        if not policies:
            continue
        seeds = len(next(iter(policies.values()))["cumulative_reward"])
        title = f"{'B = 200' if part == 'budget' else 'no budget'}, {rounds} rounds, {seeds} seeds"
        summaries = {k: PolicySummary(**v) for k, v in policies.items()}
        write_run(args.out / part, rounds, summaries, title=f"two-stage world, {title}")
        sections.append(merge_table(title, policies, timing))
        timing_out[part] = timing
    args.out.mkdir(parents=True, exist_ok=True)
    text = (args.header + "\n\n" if args.header else "") + "\n\n".join(sections) + "\n"
    (args.out / "table.md").write_text(text)
    (args.out / "timing.json").write_text(json.dumps(timing_out, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
