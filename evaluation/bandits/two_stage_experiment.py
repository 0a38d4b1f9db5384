"""The two-stage paper's experiment on the semi-synthetic catalogue (issue 19, part 5).

``python -m evaluation.bandits.two_stage_experiment --out DIR [--rounds N] [--seeds S] [--budget B]
[--only NAME,...] [--extra LABEL=POLICY:key=value,...]``

World: :class:`~evaluation.bandits.two_stage_world.TwoStageWorld` (10,000 items, 50 Zipf-sized
topics, 100 users, d_1 = d_2 = 8, 5% positives, flip 0.1). Two parts:

* Under the computational budget B (default 200 acquisition scores per round, about the
  paper's MovieLens ratio b/N_item): every policy of :data:`BUDGET_POLICIES` — Random and
  2-Random, N-Greedy (the GALM head without its bonus, and the paper's greedy on a two-tower
  network), GLM-UCB, N-GLM-UCB, N-Dropout-UCB, S-N-GALM-UCB, S-N-GBLM-UCB, two-stage
  S-N-GALM-UCB with the top topic only, and the two-stage versions with DynaTopicRec (p = B, as
  in the paper's Table 5 setting). Propensities under the budget use one Monte Carlo draw (they
  are logged, not used here), so the recommendation time also pays for that draw.
* Without a budget (the paper's Table 6): one-stage S-N-GALM-UCB and S-N-GBLM-UCB over every
  item beside their two-stage versions (dynamic with p = N_item / N_topic); the recommendation
  time per round is the wall-clock time of ``choose`` (topic and item scores and the pick).

Every policy runs with the paper's settings (β = 0.1, eq. 3's confidence matrices as written)
unless an arm's label says otherwise (``--extra LABEL=POLICY:key=value,...`` adds one, e.g. a
setting chosen on the tuning seeds of :mod:`evaluation.bandits.two_stage_study`).

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
import torch

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


#: Budgeted policies beside the Table 4/5 baselines; the two-stage ones take the topics (and p = B).
BUDGET_POLICIES = (
    "random",
    "two_stage_random",
    "n_greedy",
    "n_greedy_net",
    "glm_ucb",
    "n_glm_ucb",
    "n_dropout_ucb",
    "galm_ucb",
    "gblm_ucb",
    "two_stage_galm_ucb",
    "two_stage_galm_ucb_dynamic",
    "two_stage_gblm_ucb_dynamic",
    "two_stage_n_greedy_dynamic",
    "two_stage_n_greedy_net_dynamic",
    "two_stage_n_dropout_ucb_dynamic",
)
#: Without a budget: the paper's Table 6 (one- and two-stage S-N-GALM and S-N-GBLM) and Algorithm 1 without line 8.
NO_BUDGET_POLICIES = (
    "galm_ucb",
    "gblm_ucb",
    "two_stage_galm_ucb",
    "two_stage_galm_ucb_dynamic",
    "two_stage_gblm_ucb_dynamic",
)


def arms(
    world: TwoStageWorld,
    budget: int | None,
    only: Sequence[str] | None = None,
    extra: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
) -> list[Arm]:
    """The policies of one part (``only``: a subset of the labels; ``extra``: (label, policy, params) arms added
    with the part's budget), with their topics, p and budget."""
    names = BUDGET_POLICIES if budget is not None else NO_BUDGET_POLICIES
    out = [Arm(name, name, default_params(name, world, budget)) for name in names if only is None or name in only]
    for label, name, settings in extra:
        out.append(Arm(label, name, {**default_params(name, world, budget), **settings}))
    return out


def default_params(name: str, world: TwoStageWorld, budget: int | None) -> dict[str, Any]:
    """A policy's budget (one propensity draw under it), topics and p in this experiment."""
    params: dict[str, Any] = {}
    if name != "random" and budget is not None:
        params = {"budget": budget, "propensity_draws": 1}
    if name.startswith("two_stage"):
        params["topics"] = [int(t) for t in world.topics]
    if name.endswith("_dynamic") or name == "two_stage_random":
        # p = B under the budget (the paper's Table 5 setting), N_item / N_topic without (Table 6)
        params["min_topic_size"] = budget if budget is not None else world.n_items // world.n_topics
    return params


def parse_extra(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``LABEL=POLICY:key=value,key=value`` as (label, policy, params); values parsed as JSON, else str."""
    label, _, rest = spec.partition("=")
    policy, _, settings = rest.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, settings.split(",")):
        key, _, raw = item.partition("=")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return label, policy, params


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
    world: TwoStageWorld,
    budget: int | None,
    rounds: int,
    seeds: Sequence[int],
    only: Sequence[str] | None = None,
    extra: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
) -> tuple[dict[str, PolicySummary], dict[str, list[Timed]]]:
    """Every arm of one part on every seed."""
    runs: dict[str, list[Timed]] = {}
    for arm in arms(world, budget, only, extra):
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
    parser.add_argument("--only", default=None, help="comma-separated policy labels (default: all)")
    parser.add_argument("--parts", default="budget,no_budget", help="which parts to run (budget, no_budget)")
    parser.add_argument("--extra", action="append", default=[], help="LABEL=POLICY:key=value,... (repeatable)")
    parser.add_argument("--extra-no-budget", action="store_true", help="also run the --extra arms without a budget")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the networks are a few rows wide: a thread pool costs more than it saves
    only = None if args.only is None else args.only.split(",")
    world = TwoStageWorld()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    sections, summary = [], {}
    for part, budget in (("budget", args.budget), ("no_budget", None)):
        if part not in args.parts.split(","):
            continue
        print(f"{part} (B = {budget}):", flush=True)
        extra = [parse_extra(e) for e in args.extra] if budget is not None or args.extra_no_budget else []
        summaries, runs = run_part(world, budget, args.rounds, seeds, only, extra)
        if not runs:
            continue
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
