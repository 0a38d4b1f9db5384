"""The allocator worker: batch windows -> one LP per batch -> decisions, exactly once.

Consumes ``batch-control``, ``scores`` and ``candidates`` (read_committed; what is read is kept
by ``streams.decide.intake``), decides each batch whose window is ready
(``streams.decide.decision``: the LP, and the fallback for the users it left) and publishes its
decisions, their contexts (``streams.decide.contexts``), its report, the pending dead letters
and the consumer offsets in one transaction. Why that is exactly once across crashes is
in the package's docstring (``streams/decide/__init__.py``). The entry point
(``banditlp worker allocator``) builds the config, connection and serde from the process's
settings and calls ``run_allocator``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from types import FrameType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.avro.serde import AvroSerde
from streams.decide.arm_knobs import ArmKnobFeed
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.decision import DecidedBatch, decide_batch
from streams.decide.estimates import FallbackMemory
from streams.decide.intake import CONSUMER_NAME, DECIDED_USERS_KEPT, Intake, Pending, WorkerStats
from streams.decide.solve import DualMemory
from streams.decide.watchdog import Watchdog
from streams.decide.window import TP, BatchWindow, RawRecord
from streams.errors import DecodeError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.reading import read_to_end
from streams.kafka.retry import retry_transient
from streams.metrics import MetricsConfig, WorkerMetrics, confluent_lag, start_worker_metrics
from streams.metrics.batch import BatchObservation

__all__ = ["CONSUMER_NAME", "DECIDED_USERS_KEPT", "AllocatorWorker", "WorkerStats", "run_allocator"]

log = logging.getLogger("banditlp.allocator")

_POS_PREFIX = "pos="
# commit_transaction attempts on a retriable error before the transaction is aborted
COMMIT_ATTEMPTS = 5


class AllocatorWorker:
    """Consumes batch-control, scores and candidates, decides batches, publishes transactionally.

    Use ``run(stop_event=..., max_seconds=...)``; it returns the stats when stopped.

    Args:
        config: the worker's settings.
        connection: the cluster; every client of the worker is built from it.
        serde: the process's serde (its schema ids are the scorer's when both use one registry).
        clock: monotonic seconds (a seam for the window tests).
        metrics: the instruments it records into (``streams.metrics``); its own when None.
    """

    def __init__(
        self,
        config: AllocatorWorkerConfig,
        connection: ConnectionConfig,
        serde: AvroSerde,
        clock: Callable[[], float] = time.monotonic,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.cfg = config
        self.connection = connection
        self.clock = clock
        self.serde = serde
        self.stats = WorkerStats()
        t = config.topics
        self.decisions_topic, self.reports_topic = t("decisions"), t("allocation-reports")
        self.contexts_topic = t("decision-contexts")
        self.dead_topic = t("dead-letters")
        self.intake = Intake(config, serde, clock, self.stats)  # windows, held offsets, dead letters
        self.duals = DualMemory()  # warm start of the next batch's dual solve
        self.memory = FallbackMemory()  # the fallback's duals and item estimates of past batches
        self.committed: dict[TP, int] = {}
        self.watchdog = Watchdog(config.stuck_call_s)  # ends the process if librdkafka blocks for good
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self.arm_knobs = ArmKnobFeed(connection, serde, t("parameter-distribution"))  # the arms' LP knobs

    # -- lifecycle ---------------------------------------------------------------------------

    def _start(self) -> None:
        cfg = self.cfg
        self.producer = clients.producer(
            self.connection,
            {
                "transactional.id": cfg.transactional_id,
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                "transaction.timeout.ms": 120_000,
            },
        )
        # Fences a zombie with our transactional.id and aborts its open transaction, so the
        # reports read next and the offsets fetched after are final.
        producer = self.producer

        def init() -> None:
            with self.watchdog.guard("init_transactions"):
                producer.init_transactions(cfg.transaction_timeout_s)

        retry_transient("init_transactions", init, cfg.transaction_timeout_s)
        self.arm_knobs.start()
        if not self.arm_knobs.caught_up.wait(cfg.transaction_timeout_s):
            log.warning("parameter distributions not read to their end; deciding with the arms' knobs read so far")
        self.intake.decided = self._load_decided()
        log.info("allocator worker: %d batches already decided", len(self.intake.decided))
        self.consumer = clients.consumer(
            self.connection,
            {
                "group.id": cfg.group_id,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            },
        )
        self._assign_committed()

    def _partitions(self, topic: str) -> list[int]:
        client = self.consumer if self.consumer is not None else self.producer
        assert client is not None
        md = client.list_topics(topic, timeout=30)
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"topic {topic} not found"))
        return sorted(meta.partitions)

    def _assign_committed(self) -> None:
        """(Re)assign every input partition at its committed offset; read the replay horizons.

        Manual assignment (not a group subscription): one worker must see every scores and
        candidates partition and the batch-control partition, and a second instance is fenced by
        the shared transactional.id, so there is nothing to rebalance.
        """
        assert self.consumer is not None
        tps = [TopicPartition(t, p) for t in self.intake.topics for p in self._partitions(t)]
        consumer, timeout = self.consumer, self.cfg.transaction_timeout_s

        def fetch() -> list[TopicPartition]:
            with self.watchdog.guard("committed offsets"):
                return consumer.committed(tps, timeout=timeout)

        committed = retry_transient("committed offsets", fetch, timeout)
        horizon = self.intake.horizon
        horizon.clear()
        self.committed.clear()
        assign = []
        for tp in committed:
            key = (tp.topic, tp.partition)
            if tp.offset >= 0:
                self.committed[key] = tp.offset
                meta = tp.metadata or ""
                horizon[key] = int(meta[len(_POS_PREFIX) :]) if meta.startswith(_POS_PREFIX) else tp.offset
                assign.append(TopicPartition(tp.topic, tp.partition, tp.offset))
            else:
                assign.append(TopicPartition(tp.topic, tp.partition, -2))  # OFFSET_BEGINNING
        self.consumer.assign(assign)
        log.info("assigned %s", {f"{t.topic}[{t.partition}]": t.offset for t in assign})

    def _load_decided(self) -> set[str]:
        """batch_ids of every committed allocation report (read from the beginning to the end);
        each report is folded into the fallback's memory, in order.

        Raises:
            BrokerError: the reports topic could not be read to its end.
        """
        decided: set[str] = set()
        for msg in read_to_end(
            self.connection, self.reports_topic, group_id=f"{self.cfg.group_id}-loader", timeout_s=120.0
        ):
            try:
                report = self.serde.decode(
                    "allocation-reports", msg.value(), topic=msg.topic(), partition=msg.partition(), offset=msg.offset()
                )
                decided.add(report["batch_id"])
                self.memory.learn(report)
            except DecodeError as exc:
                log.warning("unreadable allocation report ignored: %s", exc)
        return decided

    def close(self) -> None:
        self.arm_knobs.stop()
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self.producer is not None:
            self.producer.flush(10)
            self.producer = None

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop_event: threading.Event | None = None, max_seconds: float | None = None) -> WorkerStats:
        """Consume, decide and publish until ``stop_event`` is set or ``max_seconds`` pass.

        Transactions are synchronous, so a stop request is honoured between them: the current
        one is committed (or aborted on error) before returning.
        """
        stop_event = stop_event or threading.Event()
        start = time.monotonic()
        self.watchdog.start()
        try:
            self._start()
            assert self.consumer is not None
            last_stats = last_commit = last_lag = time.monotonic()
            while not stop_event.is_set():
                if max_seconds is not None and time.monotonic() - start >= max_seconds:
                    break
                messages = self.consumer.consume(1000, self.cfg.poll_timeout_s)
                for msg in messages:
                    self._on_message(msg)
                self._count_consumed(messages)
                now = self.clock()
                self.intake.expire_unknown(now)
                ready = self.intake.ready(now)
                for window in ready:  # one batch per transaction: bounded transaction size
                    if stop_event.is_set():  # undecided windows are re-read by the next start
                        break
                    ok = self._transact([window])
                    last_commit = time.monotonic()
                    if not ok:  # aborted and rewound: the other ready windows are gone too
                        break
                flush_due = time.monotonic() - last_commit >= self.cfg.dead_letter_flush_s
                if not ready and flush_due and (self.intake.pending.dead_letters or self._offsets_advanced()):
                    self._transact([])
                    last_commit = time.monotonic()
                if time.monotonic() - last_stats >= self.cfg.stats_interval_s:
                    self._log_stats()
                    last_stats = time.monotonic()
                if time.monotonic() - last_lag >= self.metrics.lag_interval_s:
                    self.metrics.set_lag(confluent_lag(self.consumer, self.committed))
                    last_lag = time.monotonic()
        finally:
            self._log_stats()
            self.close()
            self.watchdog.stop()
        return self.stats

    def _log_stats(self) -> None:
        log.info("allocator stats: %s; open windows %d", asdict(self.stats), len(self.intake.windows))

    def _offsets_advanced(self) -> bool:
        committable = self.intake.tracker.committable()
        return any(self.committed.get(tp, -1) < off for tp, (off, _) in committable.items())

    # -- records -----------------------------------------------------------------------------

    def _count_consumed(self, messages: list[Message]) -> None:
        for topic, n in Counter(m.topic() for m in messages if m.error() is None).items():
            self.metrics.consumed(str(topic), n)

    def _on_message(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error: %s", err)
            return
        topic, partition, offset = clients.position(msg)
        self.intake.on_record(RawRecord(topic, partition, offset, msg.key(), msg.value()))

    # -- publishing ---------------------------------------------------------------------------

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        assert self.producer is not None
        clients.produce(self.producer, topic, value, key, timeout_s=self.cfg.transaction_timeout_s)

    def _transact(self, windows: list[BatchWindow]) -> bool:
        """Publish ``windows``' decisions and reports, pending dead letters and offsets in one
        transaction. Returns True when committed; on an abortable or retriable error the
        transaction is aborted and the worker rewinds to its committed offsets."""
        assert self.producer is not None and self.consumer is not None
        p, intake = self.producer, self.intake
        outcomes = []
        try:
            p.begin_transaction()
            for w in windows:
                contexts = intake.contexts.of(w.batch_id)
                decided = decide_batch(
                    w, self.cfg, self.serde, self.duals, self.clock, contexts, self.memory, self.arm_knobs.table
                )
                for key, value in decided.records:
                    self._produce(self.decisions_topic, key, value)
                for key, value in decided.contexts:
                    self._produce(self.contexts_topic, key, value)
                self._produce(self.reports_topic, w.batch_id.encode(), decided.report)
                outcomes.append((w, decided))
            for key, value in intake.pending.dead_letters:
                self._produce(self.dead_topic, key, value)
            for w in windows:
                intake.tracker.release(w.batch_id)
            offsets = intake.tracker.committable()
            with self.watchdog.guard("send_offsets_to_transaction"):
                p.send_offsets_to_transaction(
                    [TopicPartition(t, part, off, f"{_POS_PREFIX}{pos}") for (t, part), (off, pos) in offsets.items()],
                    self.consumer.consumer_group_metadata(),
                    self.cfg.transaction_timeout_s,
                )
            if self.cfg.debug_sleep_before_commit_s > 0:
                log.warning(
                    "debug: transaction open (%d batches), sleeping %.1f s before commit",
                    len(windows),
                    self.cfg.debug_sleep_before_commit_s,
                )
                sys.stderr.flush()
                time.sleep(self.cfg.debug_sleep_before_commit_s)
            # Delivered before the commit: an abort after a failed commit then purges nothing (a
            # purge leaves a sequence gap, and the next transaction aborts on it again).
            with self.watchdog.guard("flush"):
                p.flush(self.cfg.transaction_timeout_s)
            self._commit(p)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise  # fenced by a newer instance, or the producer is unusable: stop
            log.warning("transaction failed (%s); aborting and rewinding to committed offsets", exc)
            self._abort_and_rewind()
            return False
        except BaseException:
            # A bug (not a bad record: those never reach here). Leave nothing half-open.
            log.exception("unexpected error inside a transaction; aborting")
            self._abort_and_rewind()
            raise
        # Committed: make it visible to the in-memory state.
        self.stats.transactions += 1
        self.stats.dead_letters += len(intake.pending.dead_letters)
        self._count_published(outcomes, intake.pending)
        intake.pending = Pending()
        for w, decided in outcomes:
            intake.decided_batch(w)
            # the memory learns what a restarted worker would read back: the committed report
            report = self.serde.decode("allocation-reports", decided.report)
            self.memory.learn(report)
            self._observe_batch(w, decided, report)
            n = len(decided.records)
            self.stats.decisions += n
            self.stats.fallback_decisions += decided.fallback_users
            if decided.status == "rejected":
                self.stats.batches_rejected += 1
            else:
                self.stats.batches_decided += 1
            log.info(
                "batch %s decided: %d decisions (%s); fallback: %d decisions, %d sends; unscored: %d of %d users",
                w.batch_id,
                n,
                decided.status,
                decided.fallback_users,
                decided.fallback_sends,
                w.n_missing,
                w.expected_users,
            )
        self.committed.update({tp: off for tp, (off, _) in offsets.items()})
        return True

    def _count_published(self, outcomes: list[tuple[BatchWindow, DecidedBatch]], pending: Pending) -> None:
        """Count what a committed transaction published (nothing of an aborted one counts)."""
        m = self.metrics
        m.produced(self.decisions_topic, sum(len(d.records) for _, d in outcomes))
        m.produced(self.contexts_topic, sum(len(d.contexts) for _, d in outcomes))
        m.produced(self.reports_topic, len(outcomes))
        m.produced(self.dead_topic, len(pending.dead_letters))
        for (topic, reason), n in Counter(pending.reasons).items():
            m.dead_lettered(topic, reason, n)

    def _observe_batch(self, w: BatchWindow, decided: DecidedBatch, report: dict) -> None:
        now = self.clock()
        opened, closed = w.opened_at, w.closed_at
        self.metrics.batch_decided(
            BatchObservation(
                report=report,
                solve_seconds=decided.solve_seconds,
                open_to_close_s=closed - opened if opened is not None and closed is not None else None,
                close_to_decision_s=now - closed if closed is not None else None,
                n_decisions=len(decided.records),
                n_fallback=decided.fallback_users,
                versions=decided.versions,
            )
        )

    def _commit(self, p: Producer) -> None:
        """commit_transaction, retried while the error is retriable (confluent-kafka's recipe), at
        most ``COMMIT_ATTEMPTS`` times; the last error is raised, and ``_transact`` aborts on it."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                with self.watchdog.guard("commit_transaction"):
                    p.commit_transaction(self.cfg.transaction_timeout_s)
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                retriable = isinstance(err, KafkaError) and err.retriable() and not err.txn_requires_abort()
                if not retriable or attempt == COMMIT_ATTEMPTS:
                    raise
                log.warning(
                    "commit_transaction retriable error (attempt %d of %d), retrying: %s", attempt, COMMIT_ATTEMPTS, err
                )
                time.sleep(0.1 * attempt)

    def _abort_and_rewind(self) -> None:
        """Abort the open transaction, drop every in-memory batch and re-read from the
        committed offsets (the same state as a fresh restart)."""
        assert self.producer is not None
        try:
            with self.watchdog.guard("abort_transaction"):
                self.producer.abort_transaction(self.cfg.transaction_timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise
            log.warning("abort_transaction: %s", exc)
        self.stats.aborts += 1
        self.intake.reset()
        self._assign_committed()


def run_allocator(
    config: AllocatorWorkerConfig,
    connection: ConnectionConfig,
    serde: AvroSerde,
    max_seconds: float | None = None,
    metrics: MetricsConfig | None = None,
) -> int:
    """Run the worker until SIGTERM/SIGINT (the current transaction is finished first) or
    ``max_seconds``; returns the process exit code (2 on a fatal Kafka error). A Kafka call that
    blocks past ``config.stuck_call_s`` ends the process with code 3 (``streams.decide.watchdog``).
    ``metrics.port`` set: its instruments are served there (``streams.metrics``).

    Raises:
        ConfigError: the metrics port cannot be bound.
    """
    instruments = start_worker_metrics(metrics)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current transaction and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("allocator worker on %s", connection.redacted())
    try:
        AllocatorWorker(config, connection, serde, metrics=instruments).run(stop_event=stop, max_seconds=max_seconds)
    except KafkaException as exc:
        log.error("fatal Kafka error: %s", exc)
        return 2
    return 0
