"""The two-stage paper's experiment on the semi-synthetic catalogue (issue 19, part 5).

``python -m evaluation.bandits.two_stage_experiment --out DIR [--rounds N] [--seeds S] [--budget B]``

World: :class:`~evaluation.bandits.two_stage_world.TwoStageWorld` (10,000 items, 50 Zipf-sized
topics, 100 users, d_1 = d_2 = 8, 5% positives, flip 0.1). Two parts:

* Under the computational budget B (default 200 acquisition scores per round, about the
  paper's MovieLens ratio b/N_item): Random, N-Greedy, one-stage S-N-GALM-UCB, two-stage
  S-N-GALM-UCB with the top topic only, and with DynaTopicRec (p = B, as in the paper's
  Table 5 setting). Propensities under the budget use one Monte Carlo draw (they are logged,
  not used here), so the recommendation time also pays for that draw.
* Without a budget (the paper's Table 6): one-stage S-N-GALM-UCB over every item beside the
  two two-stage versions (dynamic with p = N_item / N_topic); the recommendation time per
  round is the wall-clock time of ``choose`` (topic and item scores and the pick).

Writes ``DIR/budget/`` and ``DIR/no_budget/`` (summary.json, regret.csv, regret.png, table.md
through :mod:`evaluation.bandits.report`) and ``DIR/table.md``: cumulative reward and regret
(mean ± std over the seeds), scores per round and milliseconds per round.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.bandits.report import write_run
from evaluation.bandits.runner import PolicySummary, RunResult, summarise
from evaluation.bandits.two_stage_world import TwoStageWorld
from models.policies.registry import make_policy


@dataclass(frozen=True)
class Arm:
    """One configuration of the experiment: a label, a registered policy and its parameters."""

    label: str
    policy: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Timed:
    """A run with its per-round recommendation time and scores computed."""

    result: RunResult
    ms_per_round: float
    scores_per_round: float


def arms(world: TwoStageWorld, budget: int | None) -> list[Arm]:
    """The policies of one part: with a budget every one of them, without it the Table 6 trio."""
    topics = [int(t) for t in world.topics]
    if budget is None:
        p = world.n_items // world.n_topics
        return [
            Arm("galm_ucb", "galm_ucb", {}),
            Arm("two_stage_galm_ucb", "two_stage_galm_ucb", {"topics": topics}),
            Arm("two_stage_galm_ucb_dynamic", "two_stage_galm_ucb_dynamic", {"topics": topics, "min_topic_size": p}),
        ]
    common = {"budget": budget, "propensity_draws": 1}
    return [
        Arm("random", "random", {}),
        Arm("n_greedy", "n_greedy", common),
        Arm("galm_ucb", "galm_ucb", common),
        Arm("two_stage_galm_ucb", "two_stage_galm_ucb", {**common, "topics": topics}),
        Arm(
            "two_stage_galm_ucb_dynamic",
            "two_stage_galm_ucb_dynamic",
            {**common, "topics": topics, "min_topic_size": budget},
        ),
    ]


def run_arm(arm: Arm, world: TwoStageWorld, rounds: int, seed: int) -> Timed:
    """One arm on one seed of the world, timing ``choose`` alone."""
    world.reset(seed)
    rng = np.random.default_rng([seed, 1])
    policy = make_policy(arm.policy, world.n_actions, world.feature_dim, seed=seed, **dict(arm.params))
    actions = np.zeros(rounds, dtype=np.int64)
    props, rewards, regret = np.zeros(rounds), np.zeros(rounds), np.zeros(rounds)
    choose_s, scored = 0.0, 0
    start = time.perf_counter()
    for t in range(rounds):
        rnd = world.next_round()
        tick = time.perf_counter()
        choice = policy.choose(rnd.features, rng)
        choose_s += time.perf_counter() - tick
        scored += int(getattr(policy, "last_scored", world.n_actions))
        reward = world.reward(choice.action)
        policy.update(choice.action, rnd.features, reward)
        assert rnd.expected is not None
        actions[t], props[t], rewards[t] = choice.action, choice.propensity, reward
        regret[t] = rnd.expected.max() - rnd.expected[choice.action]
    seconds = time.perf_counter() - start
    result = RunResult(arm.label, seed, actions, props, rewards, regret, seconds)
    return Timed(result, 1e3 * choose_s / rounds, scored / rounds)


def run_part(
    world: TwoStageWorld, budget: int | None, rounds: int, seeds: Sequence[int]
) -> tuple[dict[str, PolicySummary], dict[str, list[Timed]]]:
    """Every arm of one part on every seed."""
    runs: dict[str, list[Timed]] = {}
    for arm in arms(world, budget):
        runs[arm.label] = [run_arm(arm, world, rounds, seed) for seed in seeds]
        print(f"  {arm.label}: {np.mean([r.result.rewards.sum() for r in runs[arm.label]]):.1f} clicks", flush=True)
    return {k: summarise([r.result for r in v]) for k, v in runs.items()}, runs


def table(title: str, runs: Mapping[str, Sequence[Timed]]) -> str:
    """Markdown: cumulative reward and regret (mean ± std), scores and ms per round, best reward first."""
    lines = [
        f"### {title}",
        "",
        "| policy | cumulative reward (mean ± std) | cumulative regret (mean ± std) | scores / round | ms / round |",
        "| --- | --- | --- | --- | --- |",
    ]
    order = sorted(runs, key=lambda k: -np.mean([r.result.rewards.sum() for r in runs[k]]))
    for label in order:
        rs = runs[label]
        reward = np.array([r.result.rewards.sum() for r in rs])
        regret = np.array([r.result.regret.sum() for r in rs])
        lines.append(
            f"| {label} | {reward.mean():.1f} ± {reward.std():.1f} | {regret.mean():.1f} ± {regret.std():.1f} "
            f"| {np.mean([r.scores_per_round for r in rs]):.0f} | {np.mean([r.ms_per_round for r in rs]):.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=200)
    args = parser.parse_args(argv)
    world = TwoStageWorld()
    seeds = list(range(args.seeds))
    sections, summary = [], {}
    for part, budget in (("budget", args.budget), ("no_budget", None)):
        print(f"{part} (B = {budget}):", flush=True)
        summaries, runs = run_part(world, budget, args.rounds, seeds)
        title = f"{'B = ' + str(budget) if budget else 'no budget'}, {args.rounds} rounds, {len(seeds)} seeds"
        write_run(args.out / part, args.rounds, summaries, title=f"two-stage world, {title}")
        sections.append(table(title, runs))
        summary[part] = {
            k: {"ms_per_round": [r.ms_per_round for r in v], "scores_per_round": [r.scores_per_round for r in v]}
            for k, v in runs.items()
        }
    header = (
        f"World: {world.n_items} items in {world.n_topics} Zipf topics (sizes {int(world.topic_sizes.max())}"
        f"..{int(world.topic_sizes.min())}), {world.n_users} users, d = {world.dim}, flip {world.flip}."
    )
    text = header + "\n\n" + "\n\n".join(sections) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text)
    (args.out / "timing.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
