"""``banditlp demo``: the whole loop on a real broker, on the simulated email world.

Provisions the broker if needed, creates this run's topics (a fresh prefix per run), starts
the processors, allocator and trainer as processes, plays R send batches with a progress
bar, and ends with a summary table (reward against the oracle LP that knows the true
probabilities, constraint usage, exploration) and PNG plots in the run directory. Ctrl-C
stops every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from banditlp.errors import BanditLPError
from streams.settings import Settings

console = Console()


def publish_warm_start(bootstrap: str, names, world_cfg, model_name: str, n_batches: int, seed: int) -> int:
    """Log sends of a uniformly random policy on ``training-rows``, train version 1 of the
    model on them and publish it.

    BanditLP starts from models trained on logged data; without this the scorer would start
    from the untrained prior (flat 50% probabilities), which makes the unsubscription budget
    look infeasible for the first batches. The logged rows stay on ``training-rows``, so the
    trainer's later versions learn from them too, not only from the pipeline's own sends.
    Returns the number of logged rows.
    """
    import numpy as np
    from confluent_kafka import Producer

    from evaluation.email_world import EmailWorld
    from models.neural import NeuralThompsonModel
    from streams.avro.serde import AvroSerde
    from streams.train.trainer import fit_model

    world = EmailWorld(world_cfg)
    rng = np.random.default_rng(seed + 7)
    X, conv, unsub, value, who = [], [], [], [], []
    for b in range(n_batches):
        batch = world.candidates(1_000_000 + b)  # batches the demo never plays
        starts = np.flatnonzero(np.r_[True, np.diff(batch.pair_user) != 0])
        sizes = np.diff(np.r_[starts, batch.n_pairs])
        idx = starts + (rng.random(len(starts)) * sizes).astype(int)
        c, u, v = world.draw_outcomes(batch.pair_user[idx], batch.pair_item[idx], rng)
        X.append(batch.features[idx]); conv.append(c); unsub.append(u); value.append(v)
        who += [(batch.batch_id, int(batch.pair_user[j]), int(batch.pair_item[j])) for j in idx]
    X = np.concatenate(X)
    conv_all, unsub_all, value_all = (np.concatenate(a) for a in (conv, unsub, value))
    model = fit_model(X, conv_all.astype(float), unsub_all.astype(float), value_all, seed=seed)
    serde = AvroSerde()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                         "partitioner": "murmur2_random"})
    now = int(time.time() * 1000)
    for j, (batch_id, user, item) in enumerate(who):
        producer.produce(names("training-rows"), key=f"u{user}".encode(), value=serde.encode("training-rows", {
            "decision_id": f"{batch_id}/u{user}", "batch_id": batch_id, "user_id": f"u{user}",
            "item_id": f"i{item}", "features": X[j].tolist(), "converted": bool(conv_all[j]),
            "unsubscribed": bool(unsub_all[j]), "value": float(value_all[j]), "model_version": 0,
            "observed_at_ms": now}))
        producer.poll(0)
    producer.produce(names("model-snapshots"), key=model_name.encode(), value=serde.encode("model-snapshots", {
        "name": model_name, "version": 1, "kind": NeuralThompsonModel.snapshot_kind,
        "created_at_ms": int(time.time() * 1000), "n_observations": len(X),
        "payload": model.to_bytes(name=model_name, version=1)}))
    producer.flush(30)
    return len(X)


def play_batches(feed, batches: int, check: Callable[[], None] = lambda: None, first: int = 0) -> list:
    """Play ``batches`` send batches through the pipeline with a progress bar; returns the
    ``BatchRun`` of each. ``check`` runs before every batch (e.g. raises if a worker died)."""
    runs = []
    with Progress(TextColumn("[bold]send batches"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[note]}"), console=console) as progress:
        task = progress.add_task("batches", total=batches, note="")
        for b in range(first, first + batches):
            check()
            run = feed.run_batch(b)
            runs.append(run)
            o = run.outcome
            progress.update(task, advance=1, note=(
                f"reward {float((o.x * o.expected_reward).sum()):.1f} / oracle {o.oracle_objective:.1f}, "
                f"unsub {float((o.x * o.expected_unsub).sum()) / o.unsub_budget:.0%} of budget, "
                f"decided in {run.decided_s:.1f} s"))
    return runs


def report_run(runs: list, run_dir: Path, title: str) -> None:
    """Print the summary table and write ``summary.json`` and the PNG plots into ``run_dir``."""
    from evaluation.report import write_plots
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


class WorkerSet:
    """Child processes with their logs; stopped together (SIGTERM, then SIGKILL)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "streams", *args], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def check(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise BanditLPError(f"worker {name} exited with code {p.returncode}; see {self.log_dir / (name + '.log')}")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# The simulated world's options, shared by `banditlp demo` and `banditlp simulate`.
BatchesOpt = typer.Option(12, "--batches", "-r", help="Send batches to play.")
UsersOpt = typer.Option(300, help="Users in the simulated world.")
ItemsOpt = typer.Option(40, help="Items (marketing units).")
ProvidersOpt = typer.Option(8, help="Providers owning the items.")
CandidatesOpt = typer.Option(10, help="Candidates per user per batch.")


def demo(
    batches: int = BatchesOpt,
    users: int = UsersOpt,
    items: int = ItemsOpt,
    providers: int = ProvidersOpt,
    candidates: int = CandidatesOpt,
    tau: float = typer.Option(1.0, help="Thompson temperature (0 = greedy)."),
    seed: int = typer.Option(0),
    warm_start_batches: int = typer.Option(5, help="Logged random-policy batches that train model v1."),
    run_dir: Optional[Path] = typer.Option(None, help="Where logs, summary and plots go (default runs/demo-<time>)."),
    keep_topics: bool = typer.Option(False, "--keep-topics",
                                     help="Keep the run's topics on the broker (default: delete them at the end)."),
) -> None:
    """Run the whole pipeline on the simulated email world and summarise it."""
    from evaluation.email_world import EmailWorldConfig
    from streams.kafka.local_broker import ensure_kafka
    from streams.kafka.topics import TopicNames, create_topics, delete_topics, topic_specs
    from streams.simulate.feed import SimulatorConfig, SimulatorFeed

    settings = Settings.from_env()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = run_dir or Path("runs") / f"demo-{stamp}"
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    prefix = f"{settings.topic_prefix}demo-{stamp}-"
    names = TopicNames(prefix)
    workers = WorkerSet(run_dir / "logs")
    created = False
    try:
        with console.status("checking for a Kafka broker (starting the local one if none answers) ..."):
            ensure_kafka(settings.bootstrap, settings.kafka_home, settings.kafka_port,
                         external="KAFKA_BOOTSTRAP_SERVERS" in os.environ)
        created = True
        create_topics(settings.bootstrap, names, topic_specs(settings.partitions))
        world = EmailWorldConfig(n_users=users, n_items=items, n_providers=providers,
                                 candidates_per_user=candidates, seed=seed)
        with console.status("training version 1 on logged data of a random policy ..."):
            n_logged = publish_warm_start(settings.bootstrap, names, world, "email", warm_start_batches, seed)
        console.print(f"model v1 trained on {n_logged} logged sends of a uniformly random policy")
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap, "BANDITLP_TOPIC_PREFIX": prefix,
               "BANDITLP_STATE_DIR": str((run_dir / "state").resolve())}
        workers.start("processors", ["worker", "processors", "--tau", str(tau), "--seed", str(seed)], env)
        workers.start("allocator", ["worker", "allocator"], env)
        workers.start("trainer", ["worker", "trainer", "--retrain-every", str(users), "--min-rows",
                                  str(min(200, users)), "--retrain-interval-s", "5"], env)
        feed = SimulatorFeed(SimulatorConfig(bootstrap=settings.bootstrap, names=names, world=world, seed=seed))
        runs = play_batches(feed, batches, check=workers.check)
        feed.close()
        report_run(runs, run_dir, f"BanditLP demo: {batches} batches x {users} users x {candidates} candidates")
        console.print(f"logs: {run_dir / 'logs'}")
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; stopping workers[/]")
        raise typer.Exit(code=130)
    except BanditLPError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2)
    finally:
        workers.stop()
        # Every partition a broker ever held is recovered at its next start; a demo's topics
        # are left behind only on request.
        if created and not keep_topics:
            try:
                gone = delete_topics(settings.bootstrap, prefix)
                console.print(f"deleted the run's {len(gone)} topics ({prefix}*); --keep-topics keeps them")
            except BanditLPError as exc:
                console.print(f"[yellow]could not delete the run's topics ({prefix}*):[/] {exc}")
