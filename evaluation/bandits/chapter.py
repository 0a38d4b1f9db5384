"""The chapter's experiment: every policy of chapter 16 on the nonlinear synthetic problem.

    python -m evaluation.bandits.chapter --out DIR [--rounds 3000] [--seeds 5] [--workers 2]

World: :class:`~evaluation.bandits.worlds.NonlinearWorld` (K = 10 actions, d = 5, Bernoulli
rewards with ``P(r = 1) = σ(3·x_aᵀθ)``; ``--link sin`` for the sine world). Each policy runs on
seeds 0..S−1 (the same episodes for every policy), in ``--workers`` processes, each with one
torch and one BLAS thread (tiny matrices: a pool of threads costs more than it saves).

Writes DIR/summary.json, regret.csv, regret.png and table.md (``evaluation.bandits.report``)
and DIR/chapter.json with the two checks of issue 19's "Done when":

* ``neural_beats_lints``: neural_linear_ts's mean cumulative regret is below lints's;
* ``sublinear``: for every policy, the slope b of ``log R(t) = a + b log t`` fitted on the
  second half of its mean regret curve is below 1.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.bandits.report import regret_table, write_run
from evaluation.bandits.runner import PolicySummary, RunResult, growth_exponent, run_policy, summarise
from evaluation.bandits.worlds import NonlinearWorld

#: The chapter's policies and the parameters the experiment gives them (the rest are defaults).
#: mc_dropout's propensity repeats all T passes per draw, so it gets 50 draws instead of 200 to
#: keep the experiment to minutes; every other policy keeps its default.
CHAPTER_POLICIES: dict[str, dict[str, Any]] = {
    "linucb": {},
    "lints": {},
    "epsilon_greedy": {},
    "shared_linucb": {},
    "shared_lints": {},
    "hybrid_linucb": {},
    "ensemble_ts": {},
    "neural_linear_ts": {},
    "mc_dropout": {"propensity_draws": 50},
}


def _limit_threads() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def _job(args: tuple[str, dict[str, Any], int, int, str]) -> RunResult:
    name, params, rounds, seed, link = args
    _limit_threads()
    return run_policy(name, _World(link), rounds, seed, params)


class _World:
    """A picklable factory of the experiment's world (a process pool sends it to its workers)."""

    def __init__(self, link: str) -> None:
        self.link = link

    def __call__(self) -> NonlinearWorld:
        return NonlinearWorld(link=self.link)


def run_chapter(
    rounds: int,
    seeds: int,
    *,
    policies: Mapping[str, dict[str, Any]] = CHAPTER_POLICIES,
    workers: int = 2,
    link: str = "logistic",
) -> dict[str, PolicySummary]:
    """Run every policy on seeds 0..seeds−1 and summarise each (``workers`` processes; 1 = in-process)."""
    jobs = [(name, dict(params), rounds, seed, link) for name, params in policies.items() for seed in range(seeds)]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_job, jobs))
    else:
        results = [_job(job) for job in jobs]
    by_policy: dict[str, list[RunResult]] = {}
    for result in results:
        by_policy.setdefault(result.policy, []).append(result)
    return {name: summarise(by_policy[name]) for name in policies}


def checks(summaries: Mapping[str, PolicySummary]) -> dict[str, Any]:
    """The "Done when" checks: neural-linear below LinTS, and every fitted exponent below 1."""
    exponents = {name: growth_exponent(s.regret_curve) for name, s in summaries.items()}
    means = {name: float(np.mean(s.cumulative_regret)) for name, s in summaries.items()}
    out: dict[str, Any] = {
        "mean_cumulative_regret": means,
        "std_cumulative_regret": {name: float(np.std(s.cumulative_regret)) for name, s in summaries.items()},
        "exponent": exponents,
        "sublinear": bool(all(b < 1.0 for b in exponents.values())),
    }
    if "neural_linear_ts" in means and "lints" in means:
        out["neural_beats_lints"] = bool(means["neural_linear_ts"] < means["lints"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run, write the files, print the table and the checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--link", choices=("logistic", "sin"), default="logistic")
    parser.add_argument("--policies", default=",".join(CHAPTER_POLICIES), help="comma-separated subset")
    args = parser.parse_args(argv)
    names = [n for n in args.policies.split(",") if n]
    policies = {n: CHAPTER_POLICIES.get(n, {}) for n in names}
    summaries = run_chapter(args.rounds, args.seeds, policies=policies, workers=args.workers, link=args.link)
    write_run(args.out, args.rounds, summaries, title=f"NonlinearWorld(link={args.link}), {args.seeds} seeds")
    result = {"rounds": args.rounds, "seeds": args.seeds, "link": args.link, **checks(summaries)}
    (args.out / "chapter.json").write_text(json.dumps(result, indent=1) + "\n")
    print(regret_table(summaries))
    print(json.dumps({k: result[k] for k in ("sublinear", "neural_beats_lints") if k in result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
