"""``banditlp bandit run | list``: run registered policies on any environment; list the registry.

``run`` imports ``--env package.module:factory``, calls it with the ``--env-arg key=value``
pairs, gives each policy its ``--param NAME.key=value`` parameters, runs every policy on every
seed (``evaluation.bandits.runner``) with a progress bar per run, and writes
``OUT/summary.json``, ``OUT/regret.csv``, ``OUT/regret.png`` and ``OUT/table.md``
(``evaluation.bandits.report``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import typer

from banditlp.errors import BanditLPError
from streams.cli.common import console, fail

bandit_app = typer.Typer(
    help="Contextual-bandit policies on synthetic or user-supplied environments.", no_args_is_help=True
)


def _advance(progress: Any, task: Any, t: int, *, rounds: int) -> None:
    """Move a run's bar every 50 rounds and at the end (a redraw per round costs more than a round)."""
    if (t + 1) % 50 == 0 or t + 1 == rounds:
        progress.update(task, completed=t + 1)


def _policy_params(pairs: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``NAME.key=value`` options as each named policy's keyword arguments."""
    from evaluation.bandits.runner import parse_env_args
    from evaluation.errors import EvaluationInputError

    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for pair in pairs:
        name, dot, rest = pair.partition(".")
        if not dot or name not in out:
            raise EvaluationInputError(f"--param must be NAME.key=value for a policy of --policy, got {pair!r}")
        out[name].update(parse_env_args([rest]))
    return out


@bandit_app.command("list")
def list_policies() -> None:
    """Print every registered policy's name, one a line."""
    from models.policies.registry import policy_names

    for name in policy_names():
        typer.echo(name)


@bandit_app.command("run")
def run(
    policy: str = typer.Option(..., "--policy", help="Policy names, comma-separated (see `banditlp bandit list`)."),
    env: str = typer.Option(
        "evaluation.bandits.worlds:nonlinear", "--env", help="The environment factory, package.module:factory."
    ),
    env_arg: list[str] = typer.Option([], "--env-arg", help="key=value passed to the factory (repeatable)."),
    param: list[str] = typer.Option(
        [], "--param", help="NAME.key=value: a parameter of one policy (repeatable), e.g. linucb.alpha=0.5."
    ),
    rounds: int = typer.Option(1000, "--rounds", min=1, help="Rounds per run."),
    seeds: int = typer.Option(5, "--seeds", min=1, help="Seeds 0..S-1 per policy."),
    out: Path = typer.Option(..., "--out", help="Directory for summary.json, regret.csv, regret.png, table.md."),
) -> None:
    """Run each policy on each seed and write the regret summary, CSV and plot."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from evaluation.bandits.report import regret_table, write_run
    from evaluation.bandits.runner import load_factory, parse_env_args, run_policy, summarise
    from models.policies.registry import policy_class

    try:
        names = [n.strip() for n in policy.split(",") if n.strip()]
        for name in names:
            policy_class(name)  # an unknown name fails before any run
        params = _policy_params(param, names)
        factory = load_factory(env)
        kwargs = parse_env_args(env_arg)
        probe = factory(**kwargs)  # a bad argument fails before any run
        probe.reset(0)
        dim = probe.next_round().features.shape[1]
        for name in names:  # and so do bad parameters, on the environment's own shape
            policy_class(name)(probe.n_actions, dim, **params[name])
        summaries = {}
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            for name in names:
                results = []
                for seed in range(seeds):
                    task = progress.add_task(f"{name} seed {seed}", total=rounds)
                    results.append(
                        run_policy(
                            name,
                            lambda: factory(**kwargs),
                            rounds,
                            seed,
                            params[name],
                            on_round=partial(_advance, progress, task, rounds=rounds),
                        )
                    )
                summaries[name] = summarise(results)
        paths = write_run(out, rounds, summaries, title=f"{env} ({seeds} seeds)")
    except (BanditLPError, TypeError) as exc:  # TypeError: the factory refused an --env-arg
        fail(exc)
    console.print(regret_table(summaries))
    console.print(f"wrote {paths['summary']}, {paths['csv']}, {paths['png']}")
