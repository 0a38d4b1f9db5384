"""``banditlp demo``: the whole loop on a real broker, on the simulated email world.

Provisions the broker if needed, creates this run's topics (a fresh prefix per run), starts
the processors, allocator and trainer as processes, plays R send batches with a progress
bar, and ends with a summary table (reward against the oracle LP that knows the true
probabilities, constraint usage, exploration) and PNG plots in the run directory, with the
count of the allocator's fallback decisions; it exits with code 1 when a closed batch left users
with no decision at all. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from banditlp.errors import BanditLPError
from evaluation.email_world import EmailWorldConfig
from models.version_guard import VersionGuardConfig
from streams.avro.serde import AvroSerde
from streams.cli.common import console, default_of, fail, settings_of
from streams.cli.processes import WorkerSet
from streams.decide.config import AllocatorWorkerConfig
from streams.kafka.topics import TopicNames
from streams.processors.config import ProcessorConfig
from streams.settings import Settings


def play_batches(feed, batches: int, check: Callable[[], None] = lambda: None, first: int = 0) -> list:
    """Play ``batches`` send batches through the pipeline with a progress bar; returns the
    ``BatchRun`` of each. ``check`` runs before every batch (e.g. raises if a worker died)."""
    runs = []
    with Progress(
        TextColumn("[bold]send batches"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    ) as progress:
        task = progress.add_task("batches", total=batches, note="")
        for b in range(first, first + batches):
            check()
            run = feed.run_batch(b)
            runs.append(run)
            o = run.outcome
            progress.update(
                task,
                advance=1,
                note=(
                    f"reward {float((o.x * o.expected_reward).sum()):.1f} / oracle {o.oracle_objective:.1f}, "
                    f"unsub {float((o.x * o.expected_unsub).sum()) / o.unsub_budget:.0%} of budget, "
                    f"decided in {run.decided_s:.1f} s"
                    + (f", {run.fallback} by the fallback" if run.fallback else "")
                    + (f", [red]{run.undecided} undecided[/]" if run.undecided else "")
                ),
            )
    return runs


def check_decided(runs: list) -> None:
    """Print how many decisions the allocator's fallback made; exit with code 1 when a closed
    batch has users with no decision at all (the allocator guarantees there are none)."""
    fallback = sum(r.fallback for r in runs)
    undecided = [(r.outcome.batch_id, r.undecided) for r in runs if r.undecided]
    console.print(
        f"fallback decisions: {fallback} (in {sum(1 for r in runs if r.fallback)} of {len(runs)} batches); "
        f"users with no decision: {sum(n for _, n in undecided)}"
    )
    if undecided:
        where = ", ".join(f"{b}: {n}" for b, n in undecided)
        console.print(f"[bold red]error:[/] closed batches left users without a decision ({where})")
        raise typer.Exit(code=1)


def report_run(runs: list, run_dir: Path, title: str) -> None:
    """Print the summary table and write ``summary.json``, the PNG plots and ``report.html`` into ``run_dir``."""
    from evaluation.report import write_plots
    from evaluation.reporting import write_report
    from evaluation.run_summary import summarise, summary_rows

    summary = summarise([r.outcome for r in runs])
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in summary_rows(summary):
        table.add_row(k, v)
    console.print(table)
    run_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots([r.outcome for r in runs], run_dir)
    (run_dir / "summary.json").write_text(json.dumps(dict(summary_rows(summary)), indent=2))
    console.print(f"plots: {', '.join(str(p) for p in plots)}")
    console.print(f"report: {write_report(run_dir)}")


# The simulated world's options, shared by `banditlp demo` and `banditlp simulate`.
BatchesOpt = typer.Option(12, "--batches", "-r", help="Send batches to play.")
UsersOpt = typer.Option(300, help="Users in the simulated world.")
ItemsOpt = typer.Option(40, help="Items (marketing units).")
ProvidersOpt = typer.Option(8, help="Providers owning the items.")
CandidatesOpt = typer.Option(10, help="Candidates per user per batch.")


@dataclass
class Pipeline:
    """A run's pipeline on the broker: its settings (the run's topic prefix), the topics' names and
    serde, the workers' environment and the started workers."""

    run: Settings
    names: TopicNames
    serde: AvroSerde
    env: dict[str, str]
    workers: WorkerSet


@contextmanager
def simulated_pipeline(
    settings: Settings,
    run_dir: Path,
    label: str,
    world: EmailWorldConfig,
    *,
    seed: int,
    warm_start_batches: int,
    processor_args: list[str],
    keep_topics: bool,
    trainer_args: tuple[str, ...] = (),
    allocator_args: tuple[str, ...] = (),
) -> Iterator[Pipeline]:
    """The broker (the local one started if none answers), this run's topics (prefix
    ``<label>-<time>-``), model v1 trained on a random policy's logged batches, and the processors,
    allocator and trainer started as processes; on exit every worker is stopped and the topics are
    deleted unless ``keep_topics``.

    Raises:
        BanditLPError: the broker, the topics or the warm start failed.
    """
    from streams.kafka.local_broker import ensure_kafka
    from streams.kafka.topics import create_topics, delete_topics, topic_specs
    from streams.simulate.warm_start import publish_warm_start

    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    prefix = f"{settings.topic_prefix}{label}-{time.strftime('%Y%m%d-%H%M%S')}-"
    run = settings.with_prefix(prefix)
    names, serde = run.names, run.serde()
    workers = WorkerSet(run_dir / "logs")
    created = False
    try:
        with console.status("checking for a Kafka broker (starting the local one if none answers) ..."):
            ensure_kafka(
                settings.connection,
                settings.kafka_home,
                settings.kafka_port,
                external=settings.bootstrap != f"127.0.0.1:{settings.kafka_port}",
            )
        created = True
        create_topics(settings.connection, names, topic_specs(settings.partitions))
        with console.status("training version 1 on logged data of a random policy ..."):
            n_logged = publish_warm_start(run.connection, serde, names, world, "email", warm_start_batches, seed)
        console.print(f"model v1 trained on {n_logged} logged sends of a uniformly random policy")
        # The workers read the same settings from their environment (the root options' envvars).
        env = {**os.environ, **run.to_env(), "BANDITLP_STATE_DIR": str((run_dir / "state").resolve())}
        workers.start("processors", ["worker", "processors", "--instance", "0", *processor_args], env)
        workers.start("allocator", ["worker", "allocator", *allocator_args], env)
        users = world.n_users
        workers.start(
            "trainer",
            [
                "worker",
                "trainer",
                "--retrain-every",
                str(users),
                "--min-rows",
                str(min(200, users)),
                "--retrain-interval-s",
                "5",
                *trainer_args,
            ],
            env,
        )
        yield Pipeline(run, names, serde, env, workers)
    finally:
        workers.stop()
        # Every partition a broker ever held is recovered at its next start; a run's topics
        # are left behind only on request.
        if created and not keep_topics:
            try:
                gone = delete_topics(settings.connection, prefix)
                console.print(f"deleted the run's {len(gone)} topics ({prefix}*); --keep-topics keeps them")
            except BanditLPError as exc:
                console.print(f"[yellow]could not delete the run's topics ({prefix}*):[/] {exc}")


def demo(
    ctx: typer.Context,
    batches: int = BatchesOpt,
    users: int = UsersOpt,
    items: int = ItemsOpt,
    providers: int = ProvidersOpt,
    candidates: int = CandidatesOpt,
    tau: float = typer.Option(1.0, help="Thompson temperature (0 = greedy)."),
    draws: int = typer.Option(
        default_of(ProcessorConfig, "n_draws"), min=1, help="K Thompson draws per pair (exact propensities)."
    ),
    seed: int = typer.Option(0),
    warm_start_batches: int = typer.Option(5, help="Logged random-policy batches that train model v1."),
    run_dir: Path | None = typer.Option(None, help="Where logs, summary and plots go (default runs/demo-<time>)."),
    keep_topics: bool = typer.Option(
        False, "--keep-topics", help="Keep the run's topics on the broker (default: delete them at the end)."
    ),
    version_guard: int = typer.Option(
        default_of(VersionGuardConfig, "versions"),
        min=1,
        help="The trainer's version guard: the model versions it compares (1: off).",
    ),
    exploration_floor: float = typer.Option(
        default_of(AllocatorWorkerConfig, "exploration_floor"),
        help="The allocator's exploration floor: the share of every plan mixed with a spread plan (0: off).",
    ),
) -> None:
    """Run the whole pipeline on the simulated email world and summarise it."""
    from streams.simulate.feed import SimulatorConfig, SimulatorFeed

    settings = settings_of(ctx)
    run_dir = run_dir or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    world = EmailWorldConfig(
        n_users=users, n_items=items, n_providers=providers, candidates_per_user=candidates, seed=seed
    )
    try:
        with simulated_pipeline(
            settings,
            run_dir,
            "demo",
            world,
            seed=seed,
            warm_start_batches=warm_start_batches,
            processor_args=["--tau", str(tau), "--seed", str(seed), "--draws", str(draws)],
            keep_topics=keep_topics,
            trainer_args=("--version-guard", str(version_guard)),
            allocator_args=("--exploration-floor", str(exploration_floor)),
        ) as pipe:
            feed = SimulatorFeed(
                SimulatorConfig(names=pipe.names, world=world, seed=seed), pipe.run.connection, pipe.serde
            )
            runs = play_batches(feed, batches, check=pipe.workers.check)
            feed.close()
            report_run(runs, run_dir, f"BanditLP demo: {batches} batches x {users} users x {candidates} candidates")
            console.print(f"logs: {run_dir / 'logs'}")
            check_decided(runs)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; stopping workers[/]")
        raise typer.Exit(code=130) from None
    except BanditLPError as exc:
        fail(exc)
