"""One measured batch of ``bench/bench_pipeline.py``: publish it, wait for its decisions, time it.

The CPU meter (each worker's, this script's and the whole machine's CPU seconds during the
batch), the reader of committed decisions and allocation reports (each decision's read time),
the optional py-spy recording of the processors worker, and :func:`measure_batch`, which turns
the batch's records read back from the topics into the figures of one batch (scorer rate,
CLOSED -> decisions p50/p99/last, the allocator's report). Split from bench_pipeline.py to keep
each module short; the code is unchanged.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from confluent_kafka import TopicPartition
from pipeline_kafka import BenchError, _consumer, create_time_s, end_offsets, read_range
from pipeline_report import _progress, console
from rich.progress import Progress

from streams.avro.serde import AvroSerde
from streams.cli.processes import WorkerSet
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.simulate.feed import SimulatorFeed


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
