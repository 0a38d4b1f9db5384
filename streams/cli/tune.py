"""``banditlp tune --synthetic``: the constrained Bayesian-optimisation tuner against random and grid search.

No Kafka: the tuner of :mod:`models.tuner` on the synthetic problem of :mod:`evaluation.tuning.problem`,
each method spending the same budget of noisy observations in rounds (:mod:`evaluation.tuning.loop`).
Writes ``OUT/tune.json`` (``{"methods": {name: {"mass_near_best_feasible": [...], "best_feasible_found":
[...]}}, "best_feasible": f*}``), ``OUT/tune.md`` (the tables it prints), ``OUT/tune_distribution.png``
(the first seed's final tuner distribution over the box with the feasible region) and
``OUT/assignment.json`` (users changing arm between the first seed's successive tuner distributions:
the minimal relayout against the total-variation minimum, a stateless layout and a fresh hash).

The live loop through the broker (per-arm metrics from decisions and feedback, the distribution published
on the parameter-distribution topic) is not built: ``--synthetic`` is required.
"""

from __future__ import annotations

from pathlib import Path

import typer

from banditlp.errors import BanditLPError
from streams.cli.common import console, default_of, fail


def tune(
    synthetic: bool = typer.Option(False, "--synthetic", help="Run on the synthetic problem (required for now)."),
    seeds: int = typer.Option(10, "--seeds", min=1, help="Seeds first-seed, +1, ... (the same noise per seed)."),
    first_seed: int = typer.Option(0, "--first-seed", min=0, help="The first seed."),
    budget: int | None = typer.Option(None, "--budget", min=1, help="Observations per method and seed (default 64)."),
    rounds: int | None = typer.Option(None, "--rounds", min=1, help="Rounds the budget is spent in (default 8)."),
    samples: int | None = typer.Option(None, "--samples", min=1, help="S, joint posterior draws per step (1024)."),
    candidates: int | None = typer.Option(None, "--candidates", min=1, help="Sobol candidates (default 512)."),
    methods: str = typer.Option("tuner,random_search,grid_search", "--methods", help="Comma list of methods."),
    torch_threads: int = typer.Option(1, "--torch-threads", min=0, help="Torch intra-op threads (0: default)."),
    out: Path = typer.Option(..., "--out", help="Directory for tune.json, tune.md and tune_distribution.png."),
) -> None:
    """Tune the synthetic problem with the GP Thompson tuner, random search and grid search; write the table."""
    from streams.errors import ConfigError

    try:
        if not synthetic:
            raise ConfigError(
                "banditlp tune runs only on the synthetic problem for now: pass --synthetic "
                "(the live loop through the broker is not built)"
            )
        import torch
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from evaluation.tuning.loop import LoopConfig
        from evaluation.tuning.problem import SyntheticProblem
        from evaluation.tuning.report import run_experiment, write_outputs

        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        config = LoopConfig(
            budget=budget if budget is not None else default_of(LoopConfig, "budget"),
            rounds=rounds if rounds is not None else default_of(LoopConfig, "rounds"),
            n_samples=samples if samples is not None else default_of(LoopConfig, "n_samples"),
            n_candidates=candidates if candidates is not None else default_of(LoopConfig, "n_candidates"),
        )
        names = [m.strip() for m in methods.split(",") if m.strip()]
        problem = SyntheticProblem()
        seed_list = list(range(first_seed, first_seed + seeds))
        with Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bars = {m: progress.add_task(m, total=seeds * config.rounds) for m in names}
            result = run_experiment(
                problem, config, seed_list, names, on_round=lambda m, s, r: progress.advance(bars[m])
            )
        paths = write_outputs(result, out)
    except BanditLPError as exc:
        fail(exc)
    typer.echo(paths["table"].read_text())  # plain: the tables are markdown and must not be wrapped
    for path in paths.values():
        typer.echo(f"wrote {path}")
