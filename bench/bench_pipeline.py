"""Benchmark: the streaming pipeline against raw Kafka, both on the real broker in one run.

Baseline: raw confluent-kafka, N ``candidates``-sized records (one user's C candidates with
features, encoded with the project's AvroSerde, so the bytes are the real ones) produced to a
fresh topic with the pipeline's partitions and the simulator's producer settings (lz4, linger
5 ms, idempotence), then consumed; records/s each way, and pairs/s = records/s x C. It runs
``--baseline-repeats`` times before the pipeline and once after it (a changed figure says the
machine was disturbed); the table shows the median.

Pipeline: a fresh topic namespace, a warm-start model snapshot (``publish_warm_start``), the
processors workers (faust scorer + learner; ``--processors-workers``, by default one per core
as deployed) and the allocator worker as processes; a warm-up
batch of ``--warmup-users`` users goes through the whole loop first. Then ONE batch of
``--users`` x ``--candidates`` (the simulated email world, published by
``SimulatorFeed.publish_batch``: OPENED, every user's candidates, CLOSED), measuring

(a) scorer throughput: pairs / (first candidates record produced -> last scores record of
    the batch produced), both Kafka CreateTimes, read back from the topics by this script
    after the batch (so reading them does not load the pipeline while it runs);
(b) batch close -> decisions: from the CLOSED record's CreateTime to the moment this script
    reads each committed decision (read_committed), p50 and p99 over users and the last.

``--batches N`` measures N such batches one after the other and reports medians (and every
batch in the JSON), for a steadier figure on a busy machine.

``--feature-arms on,off,...`` runs the pipeline once per arm, each in a fresh topic namespace
with the same model and batches, between the same baseline rounds: ``on`` is the deployed
scorer (every scored item carries its pair features, which the allocator copies into the
decision contexts), ``off`` leaves them empty (``bench/scorer_without_features.py``). The JSON
then has every arm and the ratios of the on arms' medians to the off arms'.

Targets (reported, never asserted): >= 50,000 scored pairs/s on this machine; every decision
of the batch within 5 s of its close. Also reported: CPU seconds used by each worker, this
script and the whole machine during the batch (the machine is shared; the sum shows what else
ran), and the allocator's own solve time from its allocation report. ``--py-spy FILE`` records
the processors worker with py-spy during the batch (raw collapsed stacks; needs py-spy).

Topics are left on the broker (this script deletes nothing outside its temp directory).

    ~/.cache/banditlp/venv/bin/python bench/bench_pipeline.py --users 10000 --candidates 20 \\
        --batches 3 --out bench/results/pipeline-cpu-2core-2workers.json
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# run as a script from anywhere: import this checkout's packages, not another installed copy
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import typer  # noqa: E402
from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, KafkaException, TopicPartition  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from banditlp.errors import BanditLPError  # noqa: E402
from evaluation.email_world import EmailWorld, EmailWorldConfig  # noqa: E402
from streams.avro.serde import AvroSerde  # noqa: E402
from streams.cli.processes import WorkerSet  # noqa: E402
from streams.kafka import clients  # noqa: E402
from streams.kafka.connection import ConnectionConfig  # noqa: E402
from streams.kafka.local_broker import ensure_kafka  # noqa: E402
from streams.kafka.topics import DAY_MS, TopicNames, TopicSpec, create_topics, delete_topics, topic_specs  # noqa: E402
from streams.settings import Settings  # noqa: E402

# The simulator's own producer, so the baseline produces with exactly the pipeline's settings.
from streams.simulate.feed import SimulatorConfig, SimulatorFeed, _producer, candidates_values  # noqa: E402
from streams.simulate.warm_start import publish_warm_start  # noqa: E402

console = Console(width=170)
TARGET_PAIRS_PER_S = 50_000
TARGET_DECISIONS_S = 5.0


class BenchError(BanditLPError):
    """The benchmark could not run (a worker died, a phase timed out)."""


# -- reading topics back ----------------------------------------------------------------------


def _consumer(connection: ConnectionConfig, group: str) -> Consumer:
    return clients.consumer(
        connection,
        {
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
            "enable.partition.eof": False,
        },
    )


def end_offsets(connection: ConnectionConfig, topic: str, partitions: int, timeout_s: float = 30.0) -> list[int]:
    """The high watermark of every partition of ``topic`` (retried while a new topic's
    partitions are not known to the broker yet)."""
    c = _consumer(connection, "bench-offsets")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


def read_range(
    connection: ConnectionConfig,
    topic: str,
    start: list[int],
    timeout_s: float,
    stop_at: list[int] | None = None,
    only_first: bool = False,
):
    """Messages of ``topic`` from ``start[p]`` up to the current end (or ``stop_at``) of each
    partition (``only_first``: one message per non-empty partition)."""
    stop = stop_at or end_offsets(connection, topic, len(start))
    want = {p: s for p, s in enumerate(start) if stop[p] > s}
    if not want:
        return []
    c = _consumer(connection, "bench-reader")
    c.assign([TopicPartition(topic, p, o) for p, o in want.items()])
    out, done = [], set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(done) < len(want) and time.monotonic() < deadline:
            for msg in c.consume(5000, timeout=0.5):
                if msg.error():
                    continue
                p = msg.partition()
                if p in done:
                    continue
                out.append(msg)
                if only_first or msg.offset() >= stop[p] - 1:
                    done.add(p)
    finally:
        c.close()
    if len(done) < len(want):
        raise BenchError(f"reading {topic} back timed out after {timeout_s:.0f} s")
    return out


def create_time_s(msg) -> float:  # noqa: ANN001 - confluent_kafka.Message
    kind, ms = msg.timestamp()
    if kind != TIMESTAMP_CREATE_TIME:
        raise BenchError(f"{msg.topic()} carries no CreateTime (timestamp type {kind})")
    return ms / 1000.0


# -- baseline: raw confluent-kafka ------------------------------------------------------------


def candidates_records(world: EmailWorld, serde: AvroSerde, batch_index: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of every user's ``candidates`` record of one batch, encoded as the
    simulator encodes them (``streams.simulate.feed.candidates_values``)."""
    batch = world.candidates(batch_index)
    values = candidates_values(world, batch, world.constraints(batch), int(time.time() * 1000))
    return [(key, serde.encode("candidates", value)) for key, value in values]


def raw_kafka_round(
    connection: ConnectionConfig,
    topic: str,
    partitions: int,
    records: list[tuple[bytes, bytes]],
    progress: Progress,
    label: str,
    timeout_s: float,
) -> dict[str, float]:
    """Produce every record (simulator producer settings), then consume them all back."""
    start = end_offsets(connection, topic, partitions)
    producer = _producer(connection)
    task = progress.add_task(f"{label}: produce", total=len(records))
    t0 = time.perf_counter()
    for i, (key, value) in enumerate(records):
        clients.produce(producer, topic, value, key, timeout_s=timeout_s)
        if i % 1000 == 999:
            producer.poll(0)
            progress.update(task, completed=i + 1)
    left = producer.flush(timeout_s)
    produce_s = time.perf_counter() - t0
    progress.update(task, completed=len(records))
    if left:
        raise BenchError(f"{left} baseline records not delivered in {timeout_s:.0f} s")

    consumer = _consumer(connection, f"{topic}-reader")
    task = progress.add_task(f"{label}: consume", total=len(records))
    n = 0
    t0 = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, o) for p, o in enumerate(start)])
    deadline = time.monotonic() + timeout_s
    try:
        while n < len(records) and time.monotonic() < deadline:
            # ask for no more than are missing: consume() returns once it has them all
            n += sum(1 for m in consumer.consume(min(10_000, len(records) - n), timeout=0.5) if not m.error())
            progress.update(task, completed=n)
        consume_s = time.perf_counter() - t0
    finally:
        consumer.close()
    if n < len(records):
        raise BenchError(f"consumed {n} of {len(records)} baseline records in {timeout_s:.0f} s")
    size = sum(len(v) for _, v in records)
    return {
        "records": len(records),
        "bytes": size,
        "produce_s": produce_s,
        "consume_s": consume_s,
        "produce_records_per_s": len(records) / produce_s,
        "consume_records_per_s": len(records) / consume_s,
    }


# -- the pipeline -----------------------------------------------------------------------------


@dataclass
class CpuMeter:
    """CPU seconds of some processes and of the whole machine between ``start`` and ``stop``."""

    procs: dict[str, psutil.Process]
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def _machine(self) -> float:
        t = psutil.cpu_times()
        return t.user + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + getattr(t, "nice", 0.0)

    @staticmethod
    def _steal() -> float:
        """CPU time the hypervisor gave to other guests (a disturbance no process here shows)."""
        return getattr(psutil.cpu_times(), "steal", 0.0)

    def start(self) -> None:
        self.before = {name: self._cpu(p) for name, p in self.procs.items()}
        self.before["machine"] = self._machine()
        self.before["steal"] = self._steal()
        self.t0 = time.monotonic()

    def stop(self) -> None:
        self.used = {}
        for name, p in self.procs.items():  # "processors-2", ... count as "processors"
            group = name.split("-")[0]
            self.used[group] = self.used.get(group, 0.0) + self._cpu(p) - self.before[name]
        self.used["machine"] = self._machine() - self.before["machine"]
        self.used["steal"] = self._steal() - self.before["steal"]
        self.used["wall"] = time.monotonic() - self.t0
        self.used["machine_cores"] = psutil.cpu_count()


class DecisionReader:
    """Committed decisions and allocation reports as they arrive, with the time each was read."""

    def __init__(self, connection: ConnectionConfig, serde: AvroSerde, names: TopicNames, partitions: int) -> None:
        self.serde = serde
        self.consumer = _consumer(connection, f"{names.prefix}bench-decisions")
        self.reports_topic = names("allocation-reports")
        self.consumer.assign(
            [TopicPartition(names("decisions"), p, 0) for p in range(partitions)]
            + [TopicPartition(self.reports_topic, 0, 0)]
        )
        self.decisions: list[tuple[float, bytes]] = []  # (time read, raw value), undecoded until the end
        self.reports: dict[str, dict[str, Any]] = {}

    def poll(self, timeout: float = 0.02) -> int:
        """Read what has arrived; a decision's read time is late by at most ``timeout``
        (consume() returns when it has its count of messages or when the timeout expires)."""
        got = 0
        for msg in self.consumer.consume(1000, timeout=timeout):
            now = time.time()
            if msg.error():
                continue
            if msg.topic() == self.reports_topic:
                r = self.serde.decode("allocation-reports", msg.value())
                self.reports[r["batch_id"]] = r
            else:
                self.decisions.append((now, msg.value()))
                got += 1
        return got

    def of_batch(self, batch_id: str, since: int = 0) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for t, raw in self.decisions[since:]:
            d = self.serde.decode("decisions", raw)
            if d["batch_id"] == batch_id:
                out.append((t, d))
        return out

    def close(self) -> None:
        self.consumer.close()


def wait_for_batch(
    reader: DecisionReader,
    workers: WorkerSet,
    batch_id: str,
    n_users: int,
    since: int,
    timeout_s: float,
    progress: Progress | None = None,
    task: Any = None,
) -> None:
    """Poll until the batch has ``n_users`` decisions (or as many as its report says were decided)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reader.poll()
        n = len(reader.decisions) - since
        report = reader.reports.get(batch_id)
        if progress is not None:
            progress.update(task, completed=min(n, n_users))
        if n >= (n_users if report is None else report["n_users"]):
            end = time.monotonic() + 5.0  # the report is in the decisions' transaction: read it too
            while batch_id not in reader.reports and time.monotonic() < end:
                reader.poll()
            return
        workers.check()
    raise BenchError(
        f"batch {batch_id}: {len(reader.decisions) - since} of {n_users} decisions after {timeout_s:.0f} s"
    )


def start_py_spy(pid: int, out: Path) -> subprocess.Popen | None:
    exe = shutil.which("py-spy")
    if exe is None:
        console.print("[yellow]py-spy not found on PATH; no profile recorded[/]")
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            "--idle",
            "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_py_spy(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


def measure_batch(
    boot: ConnectionConfig,
    names: TopicNames,
    partitions: int,
    feed: SimulatorFeed,
    reader: DecisionReader,
    workers: WorkerSet,
    batch_index: int,
    users: int,
    candidates: int,
    timeout_s: float,
    py_spy: Path | None,
) -> dict[str, Any]:
    """Publish one batch, wait for its decisions, then read its timeline back from the topics."""
    start = {
        base: end_offsets(boot, names(base), n)
        for base, n in (("candidates", partitions), ("scores", partitions), ("batch-control", 1))
    }
    since = len(reader.decisions)
    procs = {name: psutil.Process(p.pid) for name, p in workers.procs.items()}
    procs["bench"] = psutil.Process()
    meter = CpuMeter(procs)
    spy = None if py_spy is None else start_py_spy(workers.procs["processors"].pid, py_spy)
    try:
        meter.start()
        with _progress() as progress:
            task = progress.add_task(f"batch {batch_index}: publishing", total=users)
            batch, _ = feed.publish_batch(batch_index)
            progress.update(task, description=f"batch {batch_index}: decisions")
            wait_for_batch(reader, workers, batch.batch_id, users, since, timeout_s, progress, task)
        meter.stop()
    finally:
        stop_py_spy(spy)

    with console.status("reading the batch's records back ..."):
        control = read_range(boot, names("batch-control"), start["batch-control"], timeout_s)
        events = {feed.serde.decode("batch-control", m.value())["event"]: create_time_s(m) for m in control}
        cand_end = end_offsets(boot, names("candidates"), partitions)
        first = read_range(boot, names("candidates"), start["candidates"], timeout_s, only_first=True)
        last = read_range(
            boot, names("candidates"), [max(s, e - 1) for s, e in zip(start["candidates"], cand_end)], timeout_s
        )
        scores = [
            m
            for m in read_range(boot, names("scores"), start["scores"], timeout_s)
            if m.key() == batch.batch_id.encode()
        ]
    if not scores:
        raise BenchError(f"no scores of batch {batch.batch_id} on the scores topic")
    decided = reader.of_batch(batch.batch_id, since)
    last_scores = feed.serde.decode("scores", scores[-1].value())
    score_times = [create_time_s(m) for m in scores]
    t_first_cand = min(create_time_s(m) for m in first)
    t_last_cand = max(create_time_s(m) for m in last)
    t_closed = events["CLOSED"]
    latencies = sorted(t - t_closed for t, _ in decided)
    scorer_s = max(score_times) - t_first_cand
    report = reader.reports.get(batch.batch_id, {})
    return {
        "batch_id": batch.batch_id,
        "model_version": last_scores["model_version"],
        "scores_feature_width": len(last_scores["items"][0]["features"]),
        "scores_bytes_mean": sum(len(m.value()) for m in scores) / len(scores),
        "produce_s": t_last_cand - t_first_cand,
        "produce_records_per_s": users / max(t_last_cand - t_first_cand, 1e-3),
        "scores_records": len(scores),
        "scorer_s": scorer_s,
        "scorer_pairs_per_s": users * candidates / scorer_s,
        "scorer_records_per_s": users / scorer_s,
        "scores_after_last_candidate_s": max(score_times) - t_last_cand,
        "closed_after_last_candidate_s": t_closed - t_last_cand,
        "last_score_after_close_s": max(score_times) - t_closed,
        "decisions": len(decided),
        "decision_p50_s": quantile(latencies, 0.5),
        "decision_p99_s": quantile(latencies, 0.99),
        "decision_last_s": latencies[-1],
        "first_decision_s": latencies[0],
        "allocator_report": {
            k: report.get(k)
            for k in (
                "status",
                "solver",
                "n_users",
                "n_pairs",
                "n_missing",
                "solve_seconds",
                "window_seconds",
                "iterations",
                "budgets",
            )
        },
        "cpu_seconds": meter.used,
    }


@dataclass(frozen=True)
class PipelineRun:
    """What one pipeline arm runs: the batch, the workers and the limits (``main``'s options)."""

    users: int
    candidates: int
    partitions: int
    warmup_users: int
    batches: int
    warm_start_batches: int
    timeout_s: float
    processors_workers: int
    processors_args: tuple[str, ...]
    worker_env: tuple[str, ...]
    seed: int
    py_spy: Path | None
    allocator_args: tuple[str, ...] = ()


FEATURE_ARMS = {"on": True, "off": False}


def start_processors(workers: WorkerSet, name: str, args: list[str], env: dict[str, str], features: bool) -> None:
    """``banditlp worker processors ARGS`` as ``name``; ``features=False`` runs it through
    ``bench/scorer_without_features.py`` (the scorer leaves the items' features empty)."""
    if features:
        workers.start(name, ["worker", "processors", *args], env)
        return
    with open(workers.log_dir / f"{name}.log", "ab") as log:
        workers.procs[name] = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "scorer_without_features.py"), "worker", "processors", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def run_pipeline(
    boot: ConnectionConfig, settings: Settings, prefix: str, run: PipelineRun, features: bool, tmp: Path
) -> dict[str, Any]:
    """One pipeline arm in the topic namespace ``prefix``: topics, model v1, workers, the warm-up
    batch, then ``run.batches`` measured batches; the workers are stopped at the end."""
    arm = settings.with_prefix(prefix)
    names, serde = arm.names, arm.serde()
    world_cfg = EmailWorldConfig(
        n_users=run.users, candidates_per_user=run.candidates, n_items=max(40, run.candidates), seed=run.seed
    )
    logs = tmp / prefix / "logs"
    logs.mkdir(parents=True)
    workers = WorkerSet(logs)
    feed = warm = reader = None
    out: dict[str, Any] = {"features": features, "prefix": prefix}
    try:
        create_topics(boot, names, topic_specs(run.partitions))
        with console.status("training model v1 on logged data of a random policy ..."):
            n_logged = publish_warm_start(boot, serde, names, world_cfg, "email", run.warm_start_batches, run.seed)
        env = {
            **os.environ,
            **arm.to_env(),
            "BANDITLP_PARTITIONS": str(run.partitions),
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            **dict(item.split("=", 1) for item in run.worker_env),
        }
        for w in range(run.processors_workers):  # one consumer group; each worker its own RocksDB directory
            start_processors(
                workers,
                "processors" if w == 0 else f"processors-{w + 1}",
                ["--seed", str(run.seed + w), *run.processors_args],
                {**env, "BANDITLP_STATE_DIR": str(tmp / prefix / f"state-{w}")},
                features,
            )
        workers.start("allocator", ["worker", "allocator", *run.allocator_args], env)
        reader = DecisionReader(boot, serde, names, run.partitions)
        warm = SimulatorFeed(
            SimulatorConfig(
                names=names,
                seed=run.seed,
                world=EmailWorldConfig(
                    n_users=run.warmup_users,
                    candidates_per_user=run.candidates,
                    n_items=max(40, run.candidates),
                    seed=run.seed,
                ),
            ),
            boot,
            serde,
        )
        t0 = time.monotonic()
        with console.status(
            f"model v1 on {n_logged} logged sends; warm-up batch of {run.warmup_users} users through the whole loop ..."
        ):
            batch, _ = warm.publish_batch(0)
            wait_for_batch(reader, workers, batch.batch_id, run.warmup_users, 0, run.timeout_s)
        out["warmup_s"] = time.monotonic() - t0
        warm.close()
        arm_name = "on" if features else "off"
        console.print(f"features {arm_name}: warm-up batch decided {out['warmup_s']:.1f} s after the workers started")

        feed = SimulatorFeed(
            SimulatorConfig(names=names, world=world_cfg, seed=run.seed, timeout_ms=int(run.timeout_s * 1000)),
            boot,
            serde,
        )
        runs = []
        for b in range(run.batches):
            spy = run.py_spy
            spy_out = None if spy is None else (spy if b == 0 else spy.with_suffix(f".{b + 1}{spy.suffix}"))
            runs.append(
                measure_batch(
                    boot,
                    names,
                    run.partitions,
                    feed,
                    reader,
                    workers,
                    1 + b,
                    run.users,
                    run.candidates,
                    run.timeout_s,
                    spy_out,
                )
            )
        out["pipeline_batches"] = runs
        out["pipeline"] = _medians(runs)
        out["pipeline"]["allocator_report"] = runs[len(runs) // 2]["allocator_report"]
        out["cpu_seconds"] = {k: statistics.median(r["cpu_seconds"][k] for r in runs) for k in runs[0]["cpu_seconds"]}
        return out
    except BanditLPError:
        for log in sorted(logs.glob("*.log")):
            console.print(f"[dim]--- {log.name} (tail) ---\n{log.read_text(errors='replace')[-2500:]}[/]")
        raise
    finally:
        workers.stop()
        for f in (feed, reader):
            if f is not None:
                f.close()


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every number of the batches' results."""
    return {
        k: statistics.median(r[k] for r in runs)
        for k, v in runs[0].items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def feature_comparison(arms: list[dict[str, Any]], consume_records_per_s: float) -> dict[str, Any]:
    """Medians over the batches of the on arms and of the off arms, and on / off of each.

    ``p99_less_solve_s`` is each batch's p99 less its allocator's solve time: the solve does not
    read the features, and its time varies from batch to batch with the dual's iterations.
    """
    keys = (
        "scorer_pairs_per_s",
        "scorer_records_per_s",
        "decision_p50_s",
        "decision_p99_s",
        "decision_last_s",
        "last_score_after_close_s",
        "scores_bytes_mean",
    )
    out: dict[str, Any] = {}
    for name, on in FEATURE_ARMS.items():
        batches = [b for a in arms if a["features"] is on for b in a["pipeline_batches"]]
        if batches:
            m = _medians(batches)
            out[name] = {k: m[k] for k in keys}
            out[name]["scorer_over_raw_consume"] = m["scorer_records_per_s"] / consume_records_per_s
            solve = [b["allocator_report"].get("solve_seconds") or 0.0 for b in batches]
            out[name]["solve_seconds"] = statistics.median(solve)
            out[name]["p99_less_solve_s"] = statistics.median(b["decision_p99_s"] - t for b, t in zip(batches, solve))
            out[name]["batches"] = len(batches)
    if "on" in out and "off" in out:
        out["on_over_off"] = {k: out["on"][k] / out["off"][k] for k in out["on"] if k != "batches" and out["off"][k]}
    return out


def main(
    users: int = typer.Option(10_000, help="Users in the measured batch (one candidates record each)."),
    candidates: int = typer.Option(20, help="Candidates per user (pairs per record)."),
    partitions: int = typer.Option(4, help="Partitions of the keyed topics (as the pipeline's)."),
    warmup_users: int = typer.Option(50, help="Users of the warm-up batch that proves the workers ready."),
    batches: int = typer.Option(1, help="Measured batches, one after the other (the table shows medians)."),
    warm_start_batches: int = typer.Option(1, help="Logged random-policy batches (of --users) that train model v1."),
    baseline_repeats: int = typer.Option(3, help="Raw Kafka rounds before the pipeline (one more runs after)."),
    timeout_s: float = typer.Option(300.0, help="Limit of each phase: warm-up, the batch's decisions, reads."),
    bootstrap: str | None = typer.Option(
        None,
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka (default: the local broker); security settings come from the KAFKA_* variables, as for banditlp.",
    ),
    py_spy: Path | None = typer.Option(
        None,
        "--py-spy",
        help="Record the processors worker during the batch to this file (py-spy raw/collapsed format).",
    ),
    keep_logs: Path | None = typer.Option(None, help="Copy the workers' logs here at the end."),
    processors_workers: int | None = typer.Option(
        None,
        help="Processors workers sharing the candidates "
        "partitions (default: one per core, at most one "
        "per partition: the deployment rule).",
    ),
    processors_arg: list[str] = typer.Option(
        [], help="An argument added to `banditlp worker processors` (repeatable), e.g. --processors-arg=--take=2000."
    ),
    worker_env: list[str] = typer.Option(
        [], help="NAME=VALUE added to the workers' environment (repeatable), for experiments such as OMP_NUM_THREADS=1."
    ),
    feature_arms: str = typer.Option(
        "on",
        help="Pipeline runs, in order, each in a fresh namespace: 'on' (the scorer copies the pair features into "
        "scores) or 'off' (empty), e.g. on,off,on,off for the cost of the features measured in one run.",
    ),
    out: Path | None = typer.Option(None, help="Write all figures as JSON here."),
    seed: int = typer.Option(0),
) -> None:
    """Run the benchmark and print the side-by-side table."""
    arms = [a.strip() for a in feature_arms.split(",") if a.strip()]
    if not arms or any(a not in FEATURE_ARMS for a in arms):
        raise typer.BadParameter(f"--feature-arms takes on/off, comma-separated, not {feature_arms!r}")
    settings = Settings.from_env(bootstrap=bootstrap)
    boot = settings.connection
    try:
        with console.status("checking for a Kafka broker (starting the local one if none answers) ..."):
            ensure_kafka(boot, settings.kafka_home, settings.kafka_port, external=bootstrap is not None)
    except BanditLPError as exc:
        raise typer.BadParameter(str(exc)) from exc
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = f"{settings.topic_prefix}bench-pipeline-{stamp}-{os.getpid()}-"
    serde = settings.with_prefix(prefix).serde()
    world_cfg = EmailWorldConfig(n_users=users, candidates_per_user=candidates, n_items=max(40, candidates), seed=seed)
    if processors_workers is None:
        processors_workers = max(1, min(partitions, psutil.cpu_count() or 1))
    run = PipelineRun(
        users,
        candidates,
        partitions,
        warmup_users,
        batches,
        warm_start_batches,
        timeout_s,
        processors_workers,
        tuple(processors_arg),
        tuple(worker_env),
        seed,
        py_spy,
    )
    result: dict[str, Any] = {
        "config": {
            "users": users,
            "candidates": candidates,
            "pairs": users * candidates,
            "partitions": partitions,
            "warmup_users": warmup_users,
            "batches": batches,
            "prefix": prefix,
            "cores": psutil.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "worker_env": worker_env,
            "processors_args": processors_arg,
            "processors_workers": processors_workers,
            "feature_arms": arms,
        },
        "targets": {"scored_pairs_per_s": TARGET_PAIRS_PER_S, "decisions_within_s": TARGET_DECISIONS_S},
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        # 1. Baseline ---------------------------------------------------------------------
        with console.status("encoding candidates records for the raw-Kafka baseline ..."):
            records = candidates_records(EmailWorld(world_cfg), serde, 2)
        base_topic = TopicNames(prefix)("baseline-candidates")
        create_topics(boot, TopicNames(prefix), (TopicSpec("baseline-candidates", partitions, retention_ms=DAY_MS),))
        with _progress() as progress:
            rounds = [
                raw_kafka_round(boot, base_topic, partitions, records, progress, f"raw Kafka #{r + 1}", timeout_s)
                for r in range(baseline_repeats)
            ]
        result["record_bytes_mean"] = sum(len(v) for _, v in records) / len(records)

        # 2. The pipeline, once per arm (a fresh namespace each) ----------------------------
        done = [
            run_pipeline(boot, settings, f"{prefix}{i}-" if len(arms) > 1 else prefix, run, FEATURE_ARMS[a], tmp)
            for i, a in enumerate(arms)
        ]
        first = done[0]
        result["warmup_s"] = first["warmup_s"]
        result["pipeline_batches"] = first["pipeline_batches"]
        result["pipeline"] = first["pipeline"]
        result["cpu_seconds"] = first["cpu_seconds"]
        if len(done) > 1:
            result["arms"] = done

        # 3. Baseline once more: was the machine disturbed? ---------------------------------
        with _progress() as progress:
            rounds.append(
                raw_kafka_round(boot, base_topic, partitions, records, progress, "raw Kafka (after)", timeout_s)
            )
        result["baseline_rounds"] = rounds
        result["baseline"] = {
            k: statistics.median(r[k] for r in rounds) for k in ("produce_records_per_s", "consume_records_per_s")
        }
        result["config"]["load_average_at_end"] = os.getloadavg()
        if len(done) > 1:
            result["features"] = feature_comparison(done, result["baseline"]["consume_records_per_s"])
        print_tables(result, candidates)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
            console.print(f"written: {out}")
    except BanditLPError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    finally:
        if keep_logs is not None:
            for logs in tmp.glob("*/logs"):
                shutil.copytree(logs, keep_logs / logs.parent.name, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        try:  # a broker recovers every partition it holds at start-up: leave none behind
            delete_topics(boot, prefix)
        except BanditLPError as exc:
            console.print(f"[yellow]could not delete the bench's topics ({prefix}*):[/] {exc}")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def print_tables(result: dict[str, Any], candidates: int) -> None:
    base, pipe, cfg = result["baseline"], result["pipeline"], result["config"]
    rounds = result["baseline_rounds"]
    spread = lambda k: f"{min(r[k] for r in rounds):,.0f}-{max(r[k] for r in rounds):,.0f}"  # noqa: E731
    batches = "one batch" if cfg["batches"] == 1 else f"median of {cfg['batches']} batches"
    table = Table(
        title=f"pipeline vs raw Kafka: {batches} of {cfg['users']:,} users x {candidates} candidates "
        f"({cfg['pairs']:,} pairs), {cfg['partitions']} partitions, {cfg['cores']} cores, "
        f"records of {result['record_bytes_mean']:,.0f} B"
    )
    for col in ("measure", "records/s", "pairs/s", "range over rounds", "x raw consume", "target", "met"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    table.add_row(
        "raw Kafka produce (baseline, median)",
        f"{base['produce_records_per_s']:,.0f}",
        f"{base['produce_records_per_s'] * candidates:,.0f}",
        spread("produce_records_per_s"),
        "",
        "",
        "",
    )
    table.add_row(
        "raw Kafka consume (baseline, median)",
        f"{base['consume_records_per_s']:,.0f}",
        f"{base['consume_records_per_s'] * candidates:,.0f}",
        spread("consume_records_per_s"),
        "1.00",
        "",
        "",
    )
    table.add_row(
        "simulator publish_batch (first -> last candidates)",
        f"{pipe['produce_records_per_s']:,.0f}",
        f"{pipe['produce_records_per_s'] * candidates:,.0f}",
        "",
        f"{pipe['produce_records_per_s'] / base['consume_records_per_s']:.3f}",
        "",
        "",
    )
    ok = pipe["scorer_pairs_per_s"] >= TARGET_PAIRS_PER_S
    table.add_row(
        "scorer (first candidates -> last scores)",
        f"{pipe['scorer_records_per_s']:,.0f}",
        f"{pipe['scorer_pairs_per_s']:,.0f}",
        "",
        f"{pipe['scorer_records_per_s'] / base['consume_records_per_s']:.3f}",
        f">= {TARGET_PAIRS_PER_S:,}",
        "[green]yes[/]" if ok else "[red]no[/]",
    )
    console.print(table)

    lat = Table(
        title=f"batch CLOSED -> committed decisions read ({pipe['decisions']:,.0f} decisions; "
        f"allocator: {pipe['allocator_report'].get('solver')}, solve "
        f"{pipe['allocator_report'].get('solve_seconds') or 0:.2f} s)"
    )
    for col in ("last score after close", "first decision", "p50", "p99", "last decision", "target", "met"):
        lat.add_column(col, justify="right")
    ok = pipe["decision_last_s"] <= TARGET_DECISIONS_S
    lat.add_row(
        f"{pipe['last_score_after_close_s']:.2f} s",
        f"{pipe['first_decision_s']:.2f} s",
        f"{pipe['decision_p50_s']:.2f} s",
        f"{pipe['decision_p99_s']:.2f} s",
        f"{pipe['decision_last_s']:.2f} s",
        f"<= {TARGET_DECISIONS_S:.0f} s",
        "[green]yes[/]" if ok else "[red]no[/]",
    )
    console.print(lat)
    cpu = result["cpu_seconds"]
    console.print(
        f"CPU seconds during the batch ({cpu['wall']:.1f} s wall, {cpu['machine_cores']:.0f} cores): "
        + ", ".join(f"{k} {cpu[k]:.1f}" for k in ("processors", "allocator", "bench", "machine", "steal"))
        + f"; load average at start {cfg['load_average_at_start'][0]:.2f}, "
        f"at end {cfg['load_average_at_end'][0]:.2f}"
    )
    if "features" in result:
        print_feature_table(result["features"])


def print_feature_table(features: dict[str, Any]) -> None:
    """The on and off arms' medians side by side, and on / off."""
    table = Table(title="the scorer's pair features in scores: on vs off (medians over each arm's batches)")
    columns = [name for name in ("on", "off", "on_over_off") if name in features]
    table.add_column("measure", justify="left")
    for name in columns:
        table.add_column(name.replace("_", " "), justify="right")
    rows = (
        ("scorer pairs/s", "scorer_pairs_per_s", "{:,.0f}"),
        ("scorer / raw consume", "scorer_over_raw_consume", "{:.4f}"),
        ("CLOSED -> decisions p50 (s)", "decision_p50_s", "{:.2f}"),
        ("CLOSED -> decisions p99 (s)", "decision_p99_s", "{:.2f}"),
        ("allocator solve (s)", "solve_seconds", "{:.2f}"),
        ("p99 less the solve (s)", "p99_less_solve_s", "{:.2f}"),
        ("scores record (bytes)", "scores_bytes_mean", "{:,.0f}"),
    )
    for label, key, fmt in rows:
        cells = []
        for name in columns:
            v = features[name].get(key)
            cells.append("" if v is None else (f"{v:.3f}" if name == "on_over_off" else fmt.format(v)))
        table.add_row(label, *cells)
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
