"""Benchmark: how long a SIGKILLed worker takes to produce again after an immediate restart.

With ``banditlp simulate`` playing batches against the pipeline (processors, allocator, trainer
as processes), a worker is SIGKILLed while a batch is being scored and restarted at once with
the same arguments, as a supervisor would. The figure is the time from the kill to the first
record the worker produces afterwards, by its Kafka CreateTime:

- processors: the first ``scores`` record created after the kill;
- allocator: the first committed ``decisions`` record created after the kill (read_committed).

It runs twice in one invocation, on two fresh topic namespaces: the workers of ``--before-ref``
(a commit of this repository, exported with ``git archive``; by default the last one before
the fast-failover change: faust's 60 s session timeout, dynamic membership, a command line that
imported torch for every worker), then the workers of ``--after-ref`` or of this checkout
(``--instance`` for the processors worker: static membership, 10 s session timeout). The
simulator is the after-figure's in both. It prints each worker's median after/before ratio,
measured in the same run, and the conditions (cores, load before and after each half).

    ~/.cache/banditlp/venv/bin/python bench/bench_failover.py --rounds 3 \\
        --out bench/results/failover-cpu-2core.json
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# run as a script from anywhere: import this checkout's packages, not another installed copy
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import typer  # noqa: E402
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaException, TopicPartition  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from banditlp.errors import BanditLPError  # noqa: E402
from streams.cli.processes import WorkerSet  # noqa: E402
from streams.kafka import clients  # noqa: E402
from streams.kafka.connection import GROUP_TIMEOUTS, ConnectionConfig  # noqa: E402
from streams.kafka.local_broker import ensure_kafka  # noqa: E402
from streams.kafka.topics import create_topics, delete_topics, topic_specs  # noqa: E402
from streams.settings import Settings  # noqa: E402

console = Console(width=150)
BEFORE_REF = "85a5374ac56092db4ce810d331fd4a2fd1c115cf"  # the last commit before the fast-failover change
#: worker -> the topic whose first new record ends its failover
OUTPUT = {"processors": "scores", "allocator": "decisions"}


class BenchError(BanditLPError):
    """The benchmark could not run (a worker died, a phase timed out)."""


class Offsets:
    """End offsets of topics, read with one consumer (retried while a new topic gets its leaders)."""

    def __init__(self, connection: ConnectionConfig) -> None:
        self.consumer = clients.consumer(
            connection, {"group.id": "bench-failover-offsets", "enable.auto.commit": False}
        )

    def end(self, topic: str, timeout_s: float = 30.0) -> list[TopicPartition]:
        """Every partition of ``topic`` at its current end offset."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                c = self.consumer
                parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
                return [
                    TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                    for p in parts
                ]
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        self.consumer.close()


def first_created_after(
    connection: ConnectionConfig,
    start: list[TopicPartition],
    since_ms: int,
    timeout_s: float,
    alive: Callable[[], None],
) -> float:
    """CreateTime (s since the epoch) of the first record after ``start`` created at or after
    ``since_ms`` (committed records only).

    Raises:
        BenchError: none within ``timeout_s``.
    """
    c = clients.consumer(
        connection,
        {"group.id": "bench-failover-tail", "enable.auto.commit": False, "isolation.level": "read_committed"},
    )
    deadline = time.monotonic() + timeout_s
    try:
        c.assign(start)
        while time.monotonic() < deadline:
            for msg in c.consume(1000, 0.2):
                if msg.error() is not None:
                    continue
                kind, ts = msg.timestamp()
                if kind != TIMESTAMP_NOT_AVAILABLE and ts >= since_ms:
                    return ts / 1000
            alive()
    finally:
        c.close()
    raise BenchError(f"no new record on {start[0].topic} within {timeout_s:.0f} s of the kill")


def wait_for_new_records(offsets: Offsets, topic: str, timeout_s: float, alive: Callable[[], None]) -> None:
    """Wait until ``topic`` grows past its end offsets at the call (a batch is being worked on)."""
    before = sum(tp.offset for tp in offsets.end(topic))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(tp.offset for tp in offsets.end(topic)) > before:
            return
        alive()
        time.sleep(0.05)
    raise BenchError(f"{topic} did not grow within {timeout_s:.0f} s; is the simulator running?")


def export_tree(ref: str, into: Path) -> Path:
    """The files of commit ``ref`` of this repository under ``into/<ref>`` (``git archive``)."""
    into = into / ref
    into.mkdir(parents=True)
    archive = into / "tree.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", ref], stdout=out, check=True)
    tree = into / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def run_half(
    label: str,
    settings: Settings,
    tree: Path,
    worker_args: dict[str, list[str]],
    users: int,
    rounds: int,
    tmp: Path,
    timeout_s: float,
    simulator_tree: Path,
    keep_topics: bool = False,
) -> dict[str, Any]:
    """One pipeline (the workers of ``tree``, the simulator of ``simulator_tree``); ``rounds``
    kills of each worker."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = settings.with_prefix(f"{settings.topic_prefix}bench-failover-{stamp}-{label}-")
    connection, names = run.connection, run.names
    create_topics(connection, names, topic_specs(run.partitions))
    logs = tmp / label / "logs"
    logs.mkdir(parents=True)
    env = {
        **os.environ,
        **run.to_env(),
        "BANDITLP_STATE_DIR": str(tmp / label / "state"),
        "PYTHONUNBUFFERED": "1",
    }
    workers = WorkerSet(logs)
    sim_log = open(logs / "simulate.log", "ab")  # noqa: SIM115  # closed in the finally below
    sim: subprocess.Popen[bytes] | None = None
    load_start = os.getloadavg()

    def alive() -> None:
        workers.check()
        if sim is not None and sim.poll() is not None:
            raise BenchError(f"the simulator exited with code {sim.returncode}; see {logs / 'simulate.log'}")

    kills: dict[str, list[dict[str, float]]] = {w: [] for w in OUTPUT}
    offsets = Offsets(connection)
    try:
        for name, args in worker_args.items():
            workers.start(name, args, env, cwd=tree)
        sim = subprocess.Popen(
            [sys.executable, "-m", "streams", "simulate", "--batches", "100000", "--users", str(users)]
            + ["--timeout-ms", str(int(timeout_s * 1000)), "--warm-start-batches", "2"]
            + ["--run-dir", str(tmp / label / "simulate")],
            cwd=simulator_tree,
            env=env,
            stdout=sim_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        with console.status(f"{label}: warm start and the first decisions ..."):
            wait_for_new_records(offsets, names("decisions"), timeout_s, alive)
        for r in range(rounds):
            for worker, output in OUTPUT.items():
                with console.status(f"{label}: round {r + 1} of {rounds}, {worker}: waiting for a batch ..."):
                    wait_for_new_records(offsets, names("scores"), timeout_s, alive)
                    start = offsets.end(names(output))
                    killed = time.time()
                    workers.kill(worker)
                    workers.start(worker, worker_args[worker], env, cwd=tree)
                    restarted = time.time()
                with console.status(f"{label}: round {r + 1} of {rounds}, {worker}: killed, waiting for {output} ..."):
                    first = first_created_after(connection, start, int(killed * 1000), timeout_s, alive)
                kills[worker].append({"failover_s": first - killed, "restart_call_s": restarted - killed})
                console.print(f"{label}: {worker} killed, first new {output} after {first - killed:.2f} s")
    finally:
        if sim is not None and sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(15)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        sim_log.close()
        offsets.close()
        workers.stop()
        try:
            if not keep_topics:
                delete_topics(connection, names.prefix)
        except BanditLPError as exc:
            console.print(f"[yellow]could not delete {names.prefix}*: {exc}[/]")
    return {
        "prefix": names.prefix,
        "worker_args": worker_args,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "kills": kills,
        "median_s": {w: statistics.median(k["failover_s"] for k in ks) for w, ks in kills.items()},
    }


def main(
    rounds: int = typer.Option(3, min=1, help="Kills of each worker per half (the table shows medians)."),
    users: int = typer.Option(300, help="Users per simulated batch."),
    before_ref: str = typer.Option(BEFORE_REF, help="The commit whose workers give the before-figure."),
    after_ref: str | None = typer.Option(
        None, help="The commit whose workers (and simulator) give the after-figure (default: this checkout's files)."
    ),
    timeout_s: float = typer.Option(300.0, help="Limit of each wait (a batch, a first record after a kill)."),
    bootstrap: str | None = typer.Option(
        None, envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka (default: the local broker, started if none answers)."
    ),
    keep_logs: Path | None = typer.Option(None, help="Copy the workers' logs here at the end."),
    keep_topics: bool = typer.Option(False, help="Leave each half's topics on the broker (to inspect them)."),
    only: str | None = typer.Option(None, help="Run one half only, before | after (no ratio then)."),
    out: Path | None = typer.Option(None, help="Write all figures as JSON here."),
) -> None:
    """Measure SIGKILL -> first new record for the processors and the allocator, before and after."""
    settings = Settings.from_env(bootstrap=bootstrap)
    try:
        with console.status("checking for a Kafka broker (starting the local one if none answers) ..."):
            ensure_kafka(settings.connection, settings.kafka_home, settings.kafka_port, external=bootstrap is not None)
    except BanditLPError as exc:
        raise typer.BadParameter(str(exc)) from exc
    base = ["worker"]
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp_name:
        tmp = Path(tmp_name)
        before_tree = export_tree(before_ref, tmp)
        after_tree = ROOT if after_ref is None else export_tree(after_ref, tmp)
        halves = {
            "before": (before_tree, {"processors": [*base, "processors"]}),
            "after": (after_tree, {"processors": [*base, "processors", "--instance", "0"]}),
        }
        results: dict[str, Any] = {}
        try:
            for label, (tree, args) in halves.items():
                if only is not None and label != only:
                    continue
                worker_args = {**args, "allocator": [*base, "allocator"], "trainer": [*base, "trainer"]}
                results[label] = run_half(
                    label,
                    settings,
                    tree,
                    worker_args,
                    users,
                    rounds,
                    tmp,
                    timeout_s,
                    simulator_tree=after_tree,
                    keep_topics=keep_topics,
                )
        finally:
            if keep_logs is not None:
                import shutil

                for label in halves:
                    if (tmp / label / "logs").exists():
                        shutil.copytree(tmp / label / "logs", keep_logs / label, dirs_exist_ok=True)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    head, dirty = git("rev-parse", "HEAD"), bool(git("status", "--porcelain"))
    if only is not None:
        console.print(results[only]["median_s"])
        return
    ratio = {w: results["after"]["median_s"][w] / results["before"]["median_s"][w] for w in OUTPUT}
    report = {
        "conditions": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "bootstrap": settings.bootstrap,
            "users_per_batch": users,
            "rounds": rounds,
            "before_ref": before_ref,
            "after_ref": after_ref or (head + (" (with uncommitted changes)" if dirty else "")),
            "after_group_timeouts": {
                "session_timeout_ms": GROUP_TIMEOUTS.session_timeout_ms,
                "heartbeat_interval_ms": GROUP_TIMEOUTS.heartbeat_interval_ms,
                "max_poll_interval_ms": GROUP_TIMEOUTS.max_poll_interval_ms,
                "rebalance_timeout_ms": GROUP_TIMEOUTS.rebalance_timeout_ms,
            },
            "note": "one machine shared by the broker, the workers, the simulator and whatever else ran "
            "(see the load averages); SIGKILL then an immediate restart with the same arguments",
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "before": results["before"],
        "after": results["after"],
        "ratio_after_to_before": ratio,
    }
    table = Table(title="SIGKILL -> first new record after an immediate restart (median over kills)")
    for col in ("worker", "output", "before (s)", "after (s)", "after / before", "each kill, after (s)"):
        table.add_column(col, justify="right")
    for w, topic in OUTPUT.items():
        table.add_row(
            w,
            topic,
            f"{results['before']['median_s'][w]:.2f}",
            f"{results['after']['median_s'][w]:.2f}",
            f"{ratio[w]:.3f}",
            ", ".join(f"{k['failover_s']:.2f}" for k in results["after"]["kills"][w]),
        )
    console.print(table)
    console.print(
        f"{os.cpu_count()} cores; load average before/after: "
        + "; ".join(f"{h} {results[h]['loadavg_start'][0]:.1f} -> {results[h]['loadavg_end'][0]:.1f}" for h in results)
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"written {out}")


if __name__ == "__main__":
    typer.run(main)
