"""Benchmark: backpressure. Candidates offered at 3x the pipeline's capacity for 2 minutes.

On a broker of its own (the first free port pair in 19550-19599, fresh storage, deleted at the
end), the workers run as processes (two processors workers, the allocator, the trainer) and:

1. capacity: a backlog of ``--capacity-batches`` batches is produced at once; the capacity is the
   users (candidates records) decided per second from the first record produced to the last
   batch's committed report: what the processors and the allocator sustain together, here, now;
2. overload: candidates are produced at ``--factor`` x that capacity for ``--seconds`` (paced every
   0.1 s, batch after batch: OPENED, the users' candidates, CLOSED); the allocator's window after
   CLOSED is long (``--window-s``), so a batch waits for its users' scores rather than falling back;
3. drain: from the last record produced until every batch has its committed report (every user
   decided; with the long window, only once every user is scored) and the allocator's group has
   committed its inputs to the end. The processors' committed offsets are reported beside it but
   not waited for: in a first run one processors worker scored every record of a candidates
   partition and its committed offset stayed at 339 of 25,602 (see the README).

Every second each worker's RSS (psutil, the process and its children) is sampled; the peak per
worker and phase is reported. At the end, read_committed: every user of every batch has exactly
one decision, and every candidates record was scored (a scores record of its (batch, user)) or
dead-lettered. Candidates are encoded once per template batch and re-stamped with each batch's
id (the batch id is the record's first field; ids of one length keep the rest of the bytes), so
that producing 3x the capacity does not itself need a core.

    nice ~/.cache/banditlp/venv/bin/python bench/bench_backpressure.py \\
        --out bench/results/backpressure-cpu-2core.json
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

# run as a script from anywhere: import this checkout's packages, not another installed copy
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import typer  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition  # noqa: E402
from rich.console import Console  # noqa: E402

from evaluation.email_world import EmailWorld, EmailWorldConfig  # noqa: E402
from streams.avro.serde import AvroSerde  # noqa: E402
from streams.kafka import clients  # noqa: E402
from streams.kafka.local_broker import LocalBroker, LocalBrokerConfig  # noqa: E402
from streams.kafka.reading import read_to_end  # noqa: E402
from streams.kafka.topics import TopicNames, create_topics, topic_specs  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.simulate.feed import candidates_values, control_value  # noqa: E402
from streams.simulate.warm_start import publish_warm_start  # noqa: E402
from streams.soak.run import claim_port_pair  # noqa: E402
from streams.soak.workers import Supervisor, WorkerSpec  # noqa: E402

console = Console(width=150)
PREFIX = "bp-"
TEMPLATES = 4  # distinct world batches whose encoded records are re-stamped


class RssSampler:
    """Samples every worker's RSS (process + children) once a second, tagged with the current phase."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.phase = "start"
        self.samples: list[tuple[float, str, str, int]] = []  # (t, phase, worker, rss bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            for name, p in list(self.supervisor.procs.items()):
                try:
                    proc = psutil.Process(p.pid)
                    rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
                except psutil.Error:
                    continue
                self.samples.append((now, self.phase, name, rss))

    def peaks(self) -> dict[str, dict[str, float]]:
        """worker -> phase -> peak RSS in MB."""
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for _, phase, name, rss in self.samples:
            out[name][phase] = max(out[name].get(phase, 0.0), round(rss / 2**20, 1))
        return dict(out)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Batches:
    """Encoded batches of the world, re-stamped: ``bp-NNNNNN`` ids of one length."""

    def __init__(self, world: EmailWorld, serde: AvroSerde, names: TopicNames, window_ms: int) -> None:
        self.serde, self.names, self.window_ms = serde, names, window_ms
        self.templates: list[tuple[list[tuple[bytes, bytes]], Any, Any]] = []
        placeholder = self.batch_id(0)
        for t in range(TEMPLATES):
            batch = world.candidates(t)
            cons = world.constraints(batch)
            now = int(time.time() * 1000)
            records = []
            for key, value in candidates_values(world, batch, cons, now):
                records.append((key, serde.encode("candidates", {**value, "batch_id": placeholder})))
            self.templates.append((records, batch, cons))
        wire = self.templates[0][0][0][1]
        self.id_at = wire.index(placeholder.encode())  # after the wire header and the string's length
        self.users = len(self.templates[0][0])

    @staticmethod
    def batch_id(k: int) -> str:
        return f"bp-{k:06d}"

    def records(self, k: int) -> list[tuple[bytes, bytes]]:
        new = self.batch_id(k).encode()
        n = len(new)
        return [(key, v[: self.id_at] + new + v[self.id_at + n :]) for key, v in self.templates[k % TEMPLATES][0]]

    def control(self, k: int, event: str) -> bytes:
        _, batch, cons = self.templates[k % TEMPLATES]
        value = control_value(
            self.batch_id(k),
            batch,
            cons,
            event=event,
            timeout_ms=self.window_ms,
            default_user_cap=int(cons.user_cap.max()),
            created_at_ms=int(time.time() * 1000),
        )
        return self.serde.encode("batch-control", value)

    def users_of(self, k: int) -> set[str]:
        return {key.decode() for key, _ in self.templates[k % TEMPLATES][0]}


class Pipeline:
    """Produces batches and follows the committed allocation reports."""

    def __init__(self, settings: Settings, batches: Batches, supervisor: Supervisor) -> None:
        self.supervisor = supervisor  # a worker that exits is started again, as a deployment would
        self.names, self.serde, self.batches = settings.names, settings.serde(), batches
        self.producer = clients.producer(
            settings.connection,
            {"linger.ms": 5, "compression.type": "lz4", "enable.idempotence": True, "partitioner": "murmur2_random"},
        )
        self.reports = clients.consumer(
            settings.connection,
            {"group.id": f"{PREFIX}bench-reports", "isolation.level": "read_committed", "enable.auto.commit": False},
        )
        self.reports.assign([TopicPartition(self.names("allocation-reports"), 0, OFFSET_BEGINNING)])
        self.decided: dict[str, dict] = {}
        self.produced_records = 0

    def produce_batch(self, k: int, pace: Any = None) -> None:
        """OPENED, every user's candidates (``pace(n)`` may hold back before each record), CLOSED."""
        control = self.names("batch-control")
        key = self.batches.batch_id(k).encode()
        clients.produce(self.producer, control, key=key, value=self.batches.control(k, "OPENED"))
        topic = self.names("candidates")
        for user, value in self.batches.records(k):
            if pace is not None:
                pace()
            clients.produce(self.producer, topic, key=user, value=value)
            self.produced_records += 1
        clients.produce(self.producer, control, key=key, value=self.batches.control(k, "CLOSED"))
        self.producer.poll(0)

    def read_reports(self, timeout: float = 0.2) -> None:
        self.supervisor.restart_exited()
        for msg in self.reports.consume(500, timeout=timeout):
            if msg.error() is None:
                r = self.serde.decode("allocation-reports", msg.value())
                self.decided[r["batch_id"]] = r

    def wait_decided(self, ids: list[str], timeout_s: float) -> float:
        """Seconds until every batch of ``ids`` has a committed report."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            self.read_reports()
            if all(i in self.decided for i in ids):
                return time.monotonic() - t0
        raise TimeoutError(f"{sum(i not in self.decided for i in ids)} of {len(ids)} batches undecided")


def lag(settings: Settings, groups: dict[str, tuple[str, ...]]) -> int:
    """Records the groups have not committed yet, summed over their input partitions."""
    total = 0
    specs = {s.base: s.partitions for s in topic_specs(settings.partitions)}
    probe = clients.consumer(settings.connection, {"group.id": f"{PREFIX}bench-ends"})
    try:
        for group, topics in groups.items():
            c = clients.consumer(settings.connection, {"group.id": group, "enable.auto.commit": False})
            try:
                tps = [TopicPartition(settings.names(t), p) for t in topics for p in range(specs[t])]
                for tp in c.committed(tps, timeout=10):
                    end = probe.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
                    total += max(0, end - max(tp.offset, 0))
            finally:
                c.close()
    finally:
        probe.close()
    return total


def audit(settings: Settings, batches: Batches, n_batches: int) -> dict[str, int]:
    """Read_committed: every user decided once; every candidates record scored or dead-lettered."""
    names, serde = settings.names, settings.serde()
    owed = {(batches.batch_id(k), u) for k in range(n_batches) for u in batches.users_of(k)}
    counts: Counter[tuple[str, str]] = Counter()
    fallback = 0
    for msg in read_to_end(settings.connection, names("decisions"), timeout_s=600):
        d = serde.decode("decisions", msg.value())
        counts[(d["batch_id"], d["user_id"])] += 1
        fallback += d["policy"] == "fallback"
    scored: set[tuple[str, str]] = set()
    for msg in read_to_end(settings.connection, names("scores"), timeout_s=900):
        v = serde.decode("scores", msg.value())
        scored.add((v["batch_id"], v["user_id"]))
    dead: set[tuple[str, str]] = set()
    for msg in read_to_end(settings.connection, names("dead-letters"), timeout_s=300):
        letter = serde.decode("dead-letters", msg.value())
        if letter["source_topic"] == names("candidates"):
            try:
                c = serde.decode_listing(letter["value"])
                dead.add((c["batch_id"], c["user_id"]))
            except Exception:  # noqa: BLE001 - a letter of bytes we never produced: not ours to count
                continue
    return {
        "users_owed": len(owed),
        "decided": sum(1 for k in owed if k in counts),
        "undecided_users": sum(1 for k in owed if k not in counts),
        "duplicated": sum(n - 1 for n in counts.values()),
        "fallback_decisions": fallback,
        "scored": len(owed & scored),
        "dead_lettered": len(owed & dead),
        "dropped": len(owed - scored - dead),
    }


def main(
    seconds: float = typer.Option(120.0, help="Length of the overload (the kept result: 120 s)."),
    factor: float = typer.Option(3.0, help="Offered rate as a multiple of the measured capacity."),
    users: int = typer.Option(5_000, help="Users per batch."),
    candidates: int = typer.Option(5, help="Candidates per user."),
    capacity_batches: int = typer.Option(8, help="Batches of the capacity backlog."),
    window_s: float = typer.Option(900.0, help="The allocator's wait after CLOSED (long: no fallback by design)."),
    out: Path | None = typer.Option(None, help="Write the result JSON here."),
) -> None:
    # Ctrl-C and SIGTERM end the run through its cleanup (a background job starts with SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    home = Path(os.path.expanduser("~/.cache/banditlp/kafka"))
    port, _port_lock = claim_port_pair(home / "soak-ports", range(19550, 19599))
    broker = LocalBroker(LocalBrokerConfig(home=home, port=port, name="backpressure-broker", start_timeout_s=240))
    work = Path(f"/tmp/banditlp-backpressure-{port}")
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    settings = Settings(connection=broker.config.connection, kafka_home=home, kafka_port=port).with_prefix(PREFIX)
    names, serde = settings.names, settings.serde()
    world_cfg = EmailWorldConfig(n_users=users, candidates_per_user=candidates, seed=0)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "BANDITLP_"))}
    env = {**base, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    specs = {
        f"processors-{i}": WorkerSpec(
            ("worker", "processors", "--instance", str(i)), {**env, "BANDITLP_STATE_DIR": str(work / f"state-{i}")}
        )
        for i in range(2)
    }
    specs["allocator"] = WorkerSpec(("worker", "allocator", "--stats-interval-s", "10"), env)
    specs["trainer"] = WorkerSpec(("worker", "trainer"), env)
    supervisor = Supervisor(work / "logs", specs)
    groups = {
        f"{PREFIX}banditlp-processors": ("candidates",),
        f"{PREFIX}banditlp-allocator": ("scores", "candidates", "batch-control"),
    }
    result: dict[str, Any] = {
        "benchmark": "backpressure",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_start": os.getloadavg(),
        "config": {"users_per_batch": users, "candidates_per_user": candidates, "factor": factor, "seconds": seconds},
    }
    sampler: RssSampler | None = None
    try:
        broker.up(fresh=True)
        create_topics(settings.connection, names, topic_specs(settings.partitions))
        publish_warm_start(settings.connection, serde, names, world_cfg, "email", 2, 0)
        supervisor.start_all()
        sampler = RssSampler(supervisor)
        console.print(f"broker on {port}; encoding {TEMPLATES} template batches of {users} users ...")
        batches = Batches(EmailWorld(world_cfg), serde, names, int(window_s * 1000))
        pipe = Pipeline(settings, batches, supervisor)
        k = 0
        sampler.phase = "warm-up"
        pipe.produce_batch(k)
        pipe.producer.flush(60)
        warm_s = pipe.wait_decided([batches.batch_id(0)], 300)
        k = 1
        console.print(f"warm-up batch decided in {warm_s:.1f} s")

        sampler.phase = "capacity"
        t0 = time.monotonic()
        ids = []
        for _ in range(capacity_batches):
            pipe.produce_batch(k)
            ids.append(batches.batch_id(k))
            k += 1
        pipe.producer.flush(60)
        pipe.wait_decided(ids, 900)
        cap_s = time.monotonic() - t0
        capacity = capacity_batches * users / cap_s
        console.print(
            f"capacity: {capacity_batches * users} users decided in {cap_s:.1f} s = {capacity:,.0f} records/s"
        )

        sampler.phase = "overload"
        rate = factor * capacity
        produced_at_start = pipe.produced_records
        t1 = time.monotonic()
        overload_ids = []

        def pace() -> None:
            # hold back while ahead of the offered rate (checked every 100 records)
            if (pipe.produced_records - produced_at_start) % 100 == 0:
                while pipe.produced_records - produced_at_start > rate * (time.monotonic() - t1):
                    pipe.producer.poll(0.01)
                if (pipe.produced_records - produced_at_start) % 5000 == 0:
                    supervisor.restart_exited()

        while time.monotonic() - t1 < seconds:
            pipe.produce_batch(k, pace)
            overload_ids.append(batches.batch_id(k))
            k += 1
            pipe.read_reports(timeout=0)
        pipe.producer.flush(120)
        t2 = time.monotonic()
        offered = (pipe.produced_records - produced_at_start) / (t2 - t1)
        console.print(
            f"overload: {pipe.produced_records - produced_at_start:,} records in {t2 - t1:.1f} s = {offered:,.0f}/s"
        )

        sampler.phase = "drain"
        pipe.wait_decided(overload_ids, 1800)
        allocator = {g: t for g, t in groups.items() if g.endswith("allocator")}
        while lag(settings, allocator) > 0 and time.monotonic() - t2 < 1800:
            supervisor.restart_exited()
            time.sleep(0.5)
        drain_s = time.monotonic() - t2
        time.sleep(3.0)  # the processors commit every second: give them a few
        processors_lag = lag(settings, {g: t for g, t in groups.items() if g.endswith("processors")})
        console.print(f"drained {drain_s:.1f} s after the last record")
        sampler.phase = "after"
        time.sleep(3.0)
        sampler.stop()
        counts = audit(settings, batches, k)
        result.update(
            capacity_records_per_s=round(capacity, 1),
            capacity_pairs_per_s=round(capacity * candidates, 1),
            capacity_backlog_records=capacity_batches * users,
            capacity_s=round(cap_s, 2),
            offered_target_records_per_s=round(rate, 1),
            offered_records_per_s=round(offered, 1),
            offered_over_capacity=round(offered / capacity, 2),
            overload_s=round(t2 - t1, 1),
            overload_records=pipe.produced_records - produced_at_start,
            drain_s=round(drain_s, 1),
            drain_over_overload=round(drain_s / (t2 - t1), 2),
            processors_committed_lag_after_drain=processors_lag,
            batches=k,
            peak_rss_mb=sampler.peaks(),
            worker_exits=dict(supervisor.exits),
            load_end=os.getloadavg(),
            **counts,
        )
        console.print_json(json.dumps(result))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
            console.print(f"written to {out}")
        if counts["dropped"] or counts["undecided_users"] or counts["duplicated"]:
            raise typer.Exit(code=1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; workers and broker stopped[/]")
        raise typer.Exit(code=130) from None
    except (KafkaException, TimeoutError) as exc:
        console.print(f"[red]failed:[/] {exc}; logs in {work / 'logs'}")
        raise typer.Exit(code=2) from None
    finally:
        if sampler is not None:
            sampler.stop()
        supervisor.stop_all()
        broker.down()
        shutil.rmtree(broker.config.instance_dir, ignore_errors=True)


if __name__ == "__main__":
    typer.run(main)
