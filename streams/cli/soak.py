"""``banditlp soak``: the simulated world run continuously under faults, checked by an independent auditor.

A broker of its own (the first free port pair in 19500-19599, fresh storage, deleted at the end),
the workers (two processors workers where the machine has two cores or more, the allocator, the
trainer), the simulator's batches back to back, and a seeded chaos driver that SIGKILLs a random
worker ``--kills`` times (restarting it at once) and restarts the broker ``--broker-restarts``
times, spread over ``--minutes``. At the end the auditor reads the topics read_committed and
writes ``OUT/soak.json`` (``streams.soak``); the command prints it and exits with code 1 when a
decision or feedback record was lost, a decision duplicated, a user of a closed batch left
undecided, a user's posterior differs from the closed-form replay of the feedback log, or a
fault did not recover within its bound. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from banditlp.errors import BanditLPError
from streams.cli.common import configure_logging, console, fail, settings_of


def soak(
    ctx: typer.Context,
    minutes: float = typer.Option(10.0, min=0.1, help="Length of the chaos period (from the first decided batch)."),
    kills: int = typer.Option(100, min=0, help="SIGKILLs of a random worker, each restarted at once."),
    broker_restarts: int = typer.Option(10, min=0, help="Broker stops and starts (data kept)."),
    out: Path = typer.Option(..., help="Directory for soak.json."),
    seed: int = typer.Option(0, help="Seeds the chaos schedule and the simulated world."),
    users: int = typer.Option(200, min=1, help="Users per batch."),
    items: int = typer.Option(20, min=2),
    providers: int = typer.Option(4, min=1),
    candidates: int = typer.Option(5, min=1, help="Candidates per user per batch."),
    window_ms: int = typer.Option(5_000, min=100, help="The allocator's wait for missing users after CLOSED."),
    processors: int | None = typer.Option(
        None, min=1, help="Processors workers (default: 2 on a machine with 2+ cores, else 1)."
    ),
    port: int | None = typer.Option(None, help="The soak broker's port (default: the first free pair in 19500-19599)."),
    recovery_bound_s: float = typer.Option(180.0, help="A fault not recovered within this long fails the soak."),
    work_dir: Path | None = typer.Option(
        None, help="Workers' logs and state (default: a fresh directory beside soak.json, removed on success)."
    ),
    log_level: str = typer.Option("warning", help="The soak's own log level."),
) -> None:
    """Run the pipeline under SIGKILLs and broker restarts and audit it; writes OUT/soak.json."""
    from streams.soak.run import SoakConfig, SoakProgress, run_soak, write_result

    configure_logging(log_level)
    # Ctrl-C and SIGTERM both end the run through its cleanup (every worker's process group and
    # the broker stopped); SIGINT explicitly, since a shell starts background jobs with it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = settings_of(ctx)
    work = work_dir or out / f"work-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = SoakConfig(
        minutes=minutes,
        kills=kills,
        broker_restarts=broker_restarts,
        work_dir=work,
        kafka_home=settings.kafka_home,
        seed=seed,
        users=users,
        items=items,
        providers=providers,
        candidates=candidates,
        window_ms=window_ms,
        processors=processors or (2 if (os.cpu_count() or 1) >= 2 else 1),
        port=port,
        recovery_bound_s=recovery_bound_s,
    )
    total = minutes * 60
    with Progress(
        TextColumn("[bold]soak"),
        BarColumn(),
        TextColumn("{task.fields[clock]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    ) as bar:
        task = bar.add_task("soak", total=total, clock="", note="")

        def show(p: SoakProgress) -> None:
            bar.update(
                task,
                completed=min(p.elapsed_s, total),
                clock=f"{p.elapsed_s / 60:4.1f}/{minutes:g} min",
                note=(
                    f"{p.phase}: {p.batches} batches, {p.decisions} decisions ({p.fallback} fallback), "
                    f"kills {p.kills}/{kills}, broker restarts {p.broker_restarts}/{broker_restarts}"
                ),
            )

        # librdkafka logs every refused connection while the broker restarts to stderr: into the
        # work directory with them (and the soak's own log lines), so that the bar stays readable
        work.mkdir(parents=True, exist_ok=True)
        saved = os.dup(2)
        error: BanditLPError | None = None
        try:
            with open(work / "soak-stderr.log", "ab") as errors:
                os.dup2(errors.fileno(), 2)
            result = run_soak(cfg, show)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted; every worker and the broker were stopped; logs in {work}[/]")
            raise typer.Exit(code=130) from None
        except BanditLPError as exc:
            error = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    if error is not None:
        console.print(f"logs: {work}")
        fail(error)
    path = write_result(result, out)
    console.print_json(json.dumps(result.summary))
    console.print(f"details in {path}")
    if result.failed:
        console.print(f"[bold red]soak failed[/]: {result.details.get('mismatch_reasons')}; logs in {work}")
        raise typer.Exit(code=1)
    if work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
