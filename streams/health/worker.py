"""The health worker: batch health from decisions, decision contexts, feedback and allocation
reports, one ``health`` record per closed batch, alarms in the log.

It reads its four topics from the beginning (read_committed, so an aborted allocator transaction
is never counted) and keeps no offsets: a restarted worker reads them again, which rebuilds the
monitor's state (reference window, CUSUMs, calibration window) exactly as it was, and publishes
only the batches whose ``batch_id`` is not on the ``health`` topic yet (read once at start), so a
restart neither loses a reference nor duplicates a record.

A batch closes when it is complete (:class:`~streams.health.batches.OpenBatch`) and no record of
it (its feedback included) has arrived for ``quiet_s``, so the feedback of its sends (which the
delivery or the simulator publishes right after the decisions) is in. Its outcomes are its own
feedback; feedback that arrives after its batch closed is late and counts with the next batch
closed, once. Batches close in the order of their
allocation reports (one partition: the allocator's order). A batch that is still incomplete
``incomplete_timeout_s`` after its report is dropped with a warning (its first records were
deleted by retention, say). A record that cannot be decoded or fails its checks goes to
dead-letters with its reason, as in every consumer here.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from banditlp.errors import BanditLPError
from evaluation.health import BatchHealth, HealthMonitor, MonitorConfig
from streams.avro.serde import AvroSerde
from streams.dead_letters import DeadLetterSink
from streams.errors import ValidationError
from streams.health.batches import (
    OUTCOME_FIELDS,
    ContextIndex,
    IdMap,
    OpenBatch,
    check_context,
    check_decision,
    observation,
)
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.reading import read_to_end
from streams.kafka.topics import TopicNames
from streams.metrics import MetricsConfig, WorkerMetrics, confluent_lag, start_worker_metrics
from streams.records import FeedbackRecord

log = logging.getLogger("banditlp.health")

CONSUMER_NAME = "health"
#: Topics read, by subject.
SUBJECTS = ("decisions", "decision-contexts", "feedback", "allocation-reports")
# Feedback whose context has not been read yet waits this many closings before it is dropped.
_PENDING_CLOSINGS = 3


@dataclass(frozen=True)
class HealthWorkerConfig:
    """The health worker's settings.

    Attributes:
        names: Topic names (the run's prefix).
        monitor: How the health is measured (:class:`evaluation.health.MonitorConfig`).
        quiet_s: Seconds without a record of a complete batch (or any feedback) before it closes.
        incomplete_timeout_s: Seconds after its report an incomplete batch is dropped.
        stats_every_s: Seconds between stats lines in the log.
    """

    names: TopicNames = field(default_factory=TopicNames)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    quiet_s: float = 3.0
    incomplete_timeout_s: float = 300.0
    stats_every_s: float = 30.0


@dataclass
class HealthStats:
    """Counters of a run."""

    records: int = 0
    dead_letters: int = 0
    published: int = 0
    replayed: int = 0
    alarms: int = 0
    dropped_batches: int = 0
    unmatched_feedback: int = 0


def health_value(
    batch_id: str,
    sequence: int,
    in_reference: bool,
    counts: dict[str, int],
    n_outcomes: int,
    model_versions: list[int],
    health: BatchHealth,
    now_ms: int,
) -> dict[str, Any]:
    """The ``health`` record of one batch (``schemas/health.avsc``)."""
    return {
        "batch_id": batch_id,
        "sequence": sequence,
        "in_reference": in_reference,
        "n_users": counts["n_users"],
        "n_pairs": counts["n_pairs"],
        "n_contexts": counts["n_contexts"],
        "n_outcomes": n_outcomes,
        "model_versions": model_versions,
        "values": {k: (float(v) if math.isfinite(v) else None) for k, v in health.values.items()},
        "alarms": [{"name": a.name, "value": float(a.value), "threshold": float(a.threshold)} for a in health.alarms],
        "computed_at_ms": now_ms,
    }


class HealthWorker:
    """Consumes the four topics, closes batches, publishes their health (module docstring).

    Args:
        cfg: The settings.
        connection: The cluster.
        serde: The process's serde.
        clock: Monotonic seconds (tests may pass their own).
        metrics: Where its records in and out, dead letters, lag, batches and alarms are counted
            (its own, unserved, when None).
    """

    def __init__(
        self,
        cfg: HealthWorkerConfig,
        connection: ConnectionConfig,
        serde: AvroSerde,
        clock: Callable[[], float] = time.monotonic,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.cfg, self.connection, self.serde, self.clock = cfg, connection, serde, clock
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self.stop_event = threading.Event()
        self.stats = HealthStats()
        self.monitor = HealthMonitor(cfg.monitor)
        self.open: OrderedDict[str, OpenBatch] = OrderedDict()
        self.report_order: list[str] = []
        self.closed: set[str] = set()
        self.contexts = ContextIndex()
        self.users, self.items = IdMap(), IdMap()
        self.outcomes: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _, _ in OUTCOME_FIELDS}
        self.n_outcomes = 0
        # Feedback of closed batches (late) and feedback whose context is not read yet, with the
        # closings it has waited through.
        self.pending_feedback: list[tuple[FeedbackRecord, int]] = []
        self.report_seen_s: dict[str, float] = {}
        self.sequence = 0
        self.already_published: set[str] = set()
        self.topics = {cfg.names(s): s for s in SUBJECTS}
        self.dead = DeadLetterSink(connection, serde, cfg.names("dead-letters"), CONSUMER_NAME)

    def _batch(self, batch_id: str) -> OpenBatch:
        batch = self.open.get(batch_id)
        if batch is None:
            batch = self.open[batch_id] = OpenBatch(batch_id)
        batch.last_record_s = self.clock()
        return batch

    def handle(self, msg: Message) -> None:
        """Decode, check and file one consumed record (a bad one is dead-lettered)."""
        self.stats.records += 1
        self.metrics.consumed(str(msg.topic()))
        subject = self.topics[str(msg.topic())]
        try:
            value = self.serde.decode(
                subject, msg.value(), topic=msg.topic(), partition=msg.partition(), offset=msg.offset()
            )
            self._file(subject, value)
        except BanditLPError as exc:
            self.dead.send(msg, exc)
            self.stats.dead_letters += 1
            self.metrics.dead_lettered(str(msg.topic()), type(exc).__name__)
            self.metrics.produced(self.cfg.names("dead-letters"))

    def _file(self, subject: str, value: dict[str, Any]) -> None:
        if subject == "feedback":
            record = FeedbackRecord.from_avro(value)
            if record.batch_id in self.closed:
                self.pending_feedback.append((record, 0))  # late: counted with the next batch closed
            else:
                self._batch(record.batch_id).feedback.append(record)
            return
        batch_id = value["batch_id"]
        if batch_id in self.closed:
            return  # a replayed record of a closed batch (at-least-once upstream)
        if subject == "decisions":
            check_decision(value)
            self._batch(batch_id).decisions[value["user_id"]] = value
        elif subject == "decision-contexts":
            check_context(value)
            self._batch(batch_id).contexts[value["user_id"]] = value
            self.contexts.add(value)
        else:
            if int(value["n_users"]) < 0:
                raise ValidationError(f"allocation report n_users {value['n_users']} is negative")
            self._batch(batch_id).report = value
            if batch_id not in self.report_seen_s:
                self.report_seen_s[batch_id] = self.clock()
                self.report_order.append(batch_id)

    def _take_feedback(self, record: FeedbackRecord) -> bool:
        means = self.contexts.take(record.batch_id, record.decision_id, record.item_id)
        if means is None:
            return False
        for (name, attr, _), mean in zip(OUTCOME_FIELDS, means):
            if mean is not None:
                predicted, observed = self.outcomes[name]
                predicted.append(float(mean))
                observed.append(float(getattr(record, attr)))
        self.n_outcomes += 1
        return True

    def close_ready(self, producer: Producer | None) -> list[dict[str, Any]]:
        """Close every batch that is ready, in report order; returns the records made."""
        made = []
        now = self.clock()
        while self.report_order:
            batch_id = self.report_order[0]
            batch = self.open.get(batch_id)
            if batch is None:
                self.report_order.pop(0)
                continue
            if not batch.complete:
                if now - self.report_seen_s[batch_id] > self.cfg.incomplete_timeout_s:
                    log.warning(
                        "health: batch %s dropped: %d decisions and %d contexts of its report's %s users after %.0f s",
                        batch_id,
                        len(batch.decisions),
                        len(batch.contexts),
                        batch.report and batch.report["n_users"],
                        self.cfg.incomplete_timeout_s,
                    )
                    self._forget(batch_id)
                    self.stats.dropped_batches += 1
                    continue
                break
            if now - batch.last_record_s < self.cfg.quiet_s:
                break
            made.append(self._close(batch, producer))
        return made

    def _close(self, batch: OpenBatch, producer: Producer | None) -> dict[str, Any]:
        still = []
        for record in batch.feedback:
            if not self._take_feedback(record):
                still.append((record, 0))
        for record, closings in self.pending_feedback:
            if not self._take_feedback(record):
                if closings + 1 < _PENDING_CLOSINGS:
                    still.append((record, closings + 1))
                else:
                    self.stats.unmatched_feedback += 1
        self.pending_feedback = still
        in_reference = self.sequence < self.cfg.monitor.reference_batches
        obs, counts = observation(batch, self.sequence, self.users, self.items, self.outcomes)
        health = self.monitor.observe(obs)
        versions = sorted({int(d["model_version"]) for d in batch.decisions.values()})
        value = health_value(
            batch.batch_id,
            self.sequence,
            in_reference,
            counts,
            self.n_outcomes,
            versions,
            health,
            int(time.time() * 1000),
        )
        if batch.batch_id in self.already_published:
            self.stats.replayed += 1
        elif producer is not None:
            clients.produce(
                producer, self.cfg.names("health"), self.serde.encode("health", value), batch.batch_id.encode()
            )
            producer.poll(0)
            self.stats.published += 1
            self.metrics.produced(self.cfg.names("health"))
            self.metrics.health_published(health.values, [a.name for a in health.alarms])
            for a in health.alarms:
                log.warning(
                    "health alarm %s: batch %s (#%d) %.4g crossed %.4g",
                    a.name,
                    batch.batch_id,
                    self.sequence,
                    a.value,
                    a.threshold,
                )
            self.stats.alarms += len(health.alarms)
        self.outcomes = {name: ([], []) for name, _, _ in OUTCOME_FIELDS}
        self.n_outcomes = 0
        self.sequence += 1
        self._forget(batch.batch_id)
        return value

    def _forget(self, batch_id: str) -> None:
        self.open.pop(batch_id, None)
        self.report_seen_s.pop(batch_id, None)
        if batch_id in self.report_order:
            self.report_order.remove(batch_id)
        self.closed.add(batch_id)

    def _published_batches(self) -> set[str]:
        topic = self.cfg.names("health")
        out = set()
        for msg in read_to_end(self.connection, topic, group_id=f"{topic}-probe", timeout_s=30.0):
            key = msg.key()
            if key is not None:
                out.add(key.decode("utf-8", "replace"))
        return out

    def run(self, max_seconds: float | None = None, max_batches: int | None = None) -> HealthStats:
        """Consume until stopped (SIGTERM, ``stop_event``), ``max_seconds`` or ``max_batches`` published."""
        self.already_published = self._published_batches()
        consumer: Consumer = clients.consumer(
            self.connection,
            {
                "group.id": f"{self.cfg.names.prefix}banditlp-health",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
        assignment = []
        for topic in self.topics:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)]
        consumer.assign(assignment)
        producer = clients.producer(self.connection, {"enable.idempotence": True, "linger.ms": 5})
        started = last_stats = last_lag = self.clock()
        log.info("health worker: %d batches already on %s", len(self.already_published), self.cfg.names("health"))
        try:
            while not self.stop_event.is_set():
                if max_seconds is not None and self.clock() - started > max_seconds:
                    break
                for msg in consumer.consume(1000, timeout=0.5):
                    if msg.error():
                        continue
                    self.handle(msg)
                self.close_ready(producer)
                self.dead.poll()
                if self.clock() - last_lag >= self.metrics.lag_interval_s:
                    self.metrics.set_lag(confluent_lag(consumer))  # no offsets kept: against the position
                    last_lag = self.clock()
                if max_batches is not None and self.stats.published >= max_batches:
                    break
                if self.clock() - last_stats >= self.cfg.stats_every_s:
                    log.info("health: %s", self.stats)
                    last_stats = self.clock()
        finally:
            producer.flush(30)
            self.dead.flush()
            consumer.close()
        log.info("health worker stopped: %s", self.stats)
        return self.stats


def run_health_worker(
    cfg: HealthWorkerConfig, connection: ConnectionConfig, serde: AvroSerde, metrics: MetricsConfig | None = None
) -> HealthStats:
    """Run until SIGTERM/SIGINT; ``metrics.port`` set: its instruments are served there.

    Raises:
        ConfigError: the metrics port cannot be bound.
    """
    worker = HealthWorker(cfg, connection, serde, metrics=start_worker_metrics(metrics))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop_event.set())
    log.info("health worker on %s", connection.redacted())
    return worker.run()
