"""``banditlp simulate``: play the simulated email world against workers that already run.

The producer half of ``banditlp demo`` without the process management: it publishes batches
of the email world on the topics of ``--prefix``, waits for each batch's decisions, publishes
the feedback drawn from the true model, and ends with the same summary table and plots, the
count of fallback decisions, and exit code 1 when a closed batch left users with no decision.
docker-compose's ``simulator`` service runs it beside the worker services.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from banditlp.errors import BanditLPError
from streams.cli.common import console, fail, settings_of
from streams.cli.demo import (
    BatchesOpt,
    CandidatesOpt,
    ItemsOpt,
    ProvidersOpt,
    UsersOpt,
    check_decided,
    play_batches,
    report_run,
)
from streams.simulate.feed import SimulatorConfig


def simulate(
    ctx: typer.Context,
    batches: int = BatchesOpt,
    users: int = UsersOpt,
    items: int = ItemsOpt,
    providers: int = ProvidersOpt,
    candidates: int = CandidatesOpt,
    seed: int = typer.Option(0),
    first_batch: int = typer.Option(0, help="Index of the first batch (batch ids are sim-<index>)."),
    warm_start_batches: int = typer.Option(
        5,
        help="Logged random-policy batches that train model v1 when the snapshots topic holds no model yet (0: none).",
    ),
    timeout_ms: int = typer.Option(
        SimulatorConfig.timeout_ms, help="The allocator's wait for missing users after CLOSED."
    ),
    run_dir: Path | None = typer.Option(None, help="Where the summary and plots go (default runs/simulate-<time>)."),
) -> None:
    """Feed the running pipeline with the simulated email world and summarise what it decided."""
    from evaluation.email_world import EmailWorldConfig
    from streams.simulate.feed import SimulatorFeed
    from streams.simulate.warm_start import publish_warm_start
    from streams.train.trainer import latest_version

    settings = settings_of(ctx)
    names, serde = settings.names, settings.serde()
    run_dir = run_dir or Path("runs") / f"simulate-{time.strftime('%Y%m%d-%H%M%S')}"
    world = EmailWorldConfig(
        n_users=users, n_items=items, n_providers=providers, candidates_per_user=candidates, seed=seed
    )
    try:
        version, _ = latest_version(settings.connection, serde, names("model-snapshots"), "email")
        if version == 0 and warm_start_batches > 0:
            with console.status("no model yet: training version 1 on logged data of a random policy ..."):
                n = publish_warm_start(settings.connection, serde, names, world, "email", warm_start_batches, seed)
            console.print(f"model v1 trained on {n} logged sends of a uniformly random policy")
        feed = SimulatorFeed(
            SimulatorConfig(names=names, world=world, timeout_ms=timeout_ms, seed=seed), settings.connection, serde
        )
        try:
            runs = play_batches(feed, batches, first=first_batch)
        finally:
            feed.close()
        report_run(runs, run_dir, f"BanditLP simulation: {batches} batches x {users} users x {candidates} candidates")
        check_decided(runs)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(code=130) from None
    except BanditLPError as exc:
        fail(exc)
