"""The allocator worker: batch windows -> one LP per batch -> decisions, exactly once.

Consumes ``batch-control`` and ``scores`` (read_committed), decides each batch whose window is
ready (``streams.decide.decision``) and publishes its decisions, their contexts
(``streams.decide.contexts``), its report, the pending dead letters and the consumer offsets in
one transaction. Why that is exactly once across crashes is
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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import FrameType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.avro.serde import AvroSerde
from streams.dead_letters import dead_letter
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.contexts import ScoresContext, ScoresContexts
from streams.decide.decision import decide_batch
from streams.decide.solve import DualMemory
from streams.decide.window import TP, BatchWindow, OffsetTracker, RawRecord
from streams.errors import DecodeError, ValidationError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.reading import read_to_end
from streams.records import BatchControlRecord, ScoresRecord

log = logging.getLogger("banditlp.allocator")

CONSUMER_NAME = "allocator"
# Decided batches whose user sets are kept to tell a scorer's replay from a late record
# (~60 B per user: 32 batches of 10,000 users take ~20 MB).
DECIDED_USERS_KEPT = 32
_POS_PREFIX = "pos="
# commit_transaction attempts on a retriable error before the transaction is aborted
COMMIT_ATTEMPTS = 5


@dataclass
class WorkerStats:
    """Counters logged periodically (and returned by ``run``)."""

    records: int = 0
    batches_decided: int = 0
    batches_rejected: int = 0
    decisions: int = 0
    dead_letters: int = 0
    skipped_duplicates: int = 0
    skipped_replayed: int = 0
    transactions: int = 0
    aborts: int = 0


@dataclass
class _Pending:
    """What the next transaction carries besides decisions: dead letters ``(key, value)``."""

    dead_letters: list[tuple[bytes, bytes]] = field(default_factory=list)
    since: float | None = None


class AllocatorWorker:
    """Consumes batch-control + scores, decides batches, publishes transactionally.

    Use ``run(stop_event=..., max_seconds=...)``; it returns the stats when stopped.

    Args:
        config: the worker's settings.
        connection: the cluster; every client of the worker is built from it.
        serde: the process's serde (its schema ids are the scorer's when both use one registry).
        clock: monotonic seconds (a seam for the window tests).
    """

    def __init__(
        self,
        config: AllocatorWorkerConfig,
        connection: ConnectionConfig,
        serde: AvroSerde,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = config
        self.connection = connection
        self.clock = clock
        self.serde = serde
        self.stats = WorkerStats()
        t = config.topics
        self.control_topic, self.scores_topic = t("batch-control"), t("scores")
        self.decisions_topic, self.reports_topic = t("decisions"), t("allocation-reports")
        self.contexts_topic = t("decision-contexts")
        self.dead_topic = t("dead-letters")
        self.decided: set[str] = set()
        # batch_id -> the users it decided, for this process's last DECIDED_USERS_KEPT batches
        self.decided_users: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.windows: dict[str, BatchWindow] = {}
        self.contexts = ScoresContexts()  # each window's scores τ and features, for its decision contexts
        self.tracker = OffsetTracker()
        self.duals = DualMemory()  # warm start of the next batch's dual solve
        self.horizon: dict[TP, int] = {}  # replay horizon: the committed position of each partition
        self.committed: dict[TP, int] = {}
        self.pending = _Pending()
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None

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
        self.producer.init_transactions(cfg.transaction_timeout_s)
        self.decided = self._load_decided()
        log.info("allocator worker: %d batches already decided", len(self.decided))
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

        Manual assignment (not a group subscription): one worker must see every scores
        partition and the batch-control partition, and a second instance is fenced by the
        shared transactional.id, so there is nothing to rebalance.
        """
        assert self.consumer is not None
        tps = [TopicPartition(t, p) for t in (self.control_topic, self.scores_topic) for p in self._partitions(t)]
        committed = self.consumer.committed(tps, timeout=self.cfg.transaction_timeout_s)
        self.horizon.clear()
        self.committed.clear()
        assign = []
        for tp in committed:
            key = (tp.topic, tp.partition)
            if tp.offset >= 0:
                self.committed[key] = tp.offset
                meta = tp.metadata or ""
                self.horizon[key] = int(meta[len(_POS_PREFIX) :]) if meta.startswith(_POS_PREFIX) else tp.offset
                assign.append(TopicPartition(tp.topic, tp.partition, tp.offset))
            else:
                assign.append(TopicPartition(tp.topic, tp.partition, -2))  # OFFSET_BEGINNING
        self.consumer.assign(assign)
        log.info("assigned %s", {f"{t.topic}[{t.partition}]": t.offset for t in assign})

    def _load_decided(self) -> set[str]:
        """batch_ids of every committed allocation report (read from the beginning to the end).

        Raises:
            BrokerError: the reports topic could not be read to its end.
        """
        decided: set[str] = set()
        for msg in read_to_end(
            self.connection, self.reports_topic, group_id=f"{self.cfg.group_id}-loader", timeout_s=120.0
        ):
            try:
                decided.add(
                    self.serde.decode(
                        "allocation-reports",
                        msg.value(),
                        topic=msg.topic(),
                        partition=msg.partition(),
                        offset=msg.offset(),
                    )["batch_id"]
                )
            except DecodeError as exc:
                log.warning("unreadable allocation report ignored: %s", exc)
        return decided

    def close(self) -> None:
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
        self._start()
        assert self.consumer is not None
        last_stats = last_commit = time.monotonic()
        try:
            while not stop_event.is_set():
                if max_seconds is not None and time.monotonic() - start >= max_seconds:
                    break
                for msg in self.consumer.consume(1000, self.cfg.poll_timeout_s):
                    self._on_message(msg)
                now = self.clock()
                self._expire_unknown(now)
                ready = [w for w in self.windows.values() if w.is_ready(now, self.cfg.open_timeout_s)]
                for window in ready:  # one batch per transaction: bounded transaction size
                    if stop_event.is_set():  # undecided windows are re-read by the next start
                        break
                    ok = self._transact([window])
                    last_commit = time.monotonic()
                    if not ok:  # aborted and rewound: the other ready windows are gone too
                        break
                flush_due = time.monotonic() - last_commit >= self.cfg.dead_letter_flush_s
                if not ready and flush_due and (self.pending.dead_letters or self._offsets_advanced()):
                    self._transact([])
                    last_commit = time.monotonic()
                if time.monotonic() - last_stats >= self.cfg.stats_interval_s:
                    self._log_stats()
                    last_stats = time.monotonic()
        finally:
            self._log_stats()
            self.close()
        return self.stats

    def _log_stats(self) -> None:
        log.info("allocator stats: %s; open windows %d", asdict(self.stats), len(self.windows))

    def _offsets_advanced(self) -> bool:
        return any(self.committed.get(tp, -1) < off for tp, (off, _) in self.tracker.committable().items())

    # -- records -----------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error: %s", err)
            return
        self.stats.records += 1
        topic, partition, offset = clients.position(msg)
        value = msg.value()
        tp = (topic, partition)
        raw = RawRecord(topic, partition, offset, msg.key(), value)
        try:
            if topic == self.control_topic:
                control = BatchControlRecord.from_avro(
                    self.serde.decode("batch-control", value, topic=topic, partition=partition, offset=offset)
                )
                self._on_control(control, raw)
            else:
                decoded = self.serde.decode("scores", value, topic=topic, partition=partition, offset=offset)
                self._on_scores(ScoresRecord.from_avro(decoded), raw, ScoresContext.from_avro(decoded))
        except (DecodeError, ValidationError) as exc:
            self._dead_letter(raw, exc)
        except (KeyError, TypeError, ValueError) as exc:  # a decoded dict that breaks a record invariant
            self._dead_letter(raw, ValidationError(f"malformed record: {type(exc).__name__}: {exc}"))
        self.tracker.seen(tp, offset)

    def _on_control(self, control: BatchControlRecord, raw: RawRecord) -> None:
        bid = control.batch_id
        if bid in self.decided:
            self._dead_letter(raw, ValidationError(f"{control.event} for decided batch {bid}"))
            return
        window = self.windows.get(bid) or self.windows.setdefault(bid, BatchWindow(bid, self.clock()))
        if control.event == "OPENED":
            applied, rejected = window.open(control, self.clock())
            for rraw, reason in rejected:
                self._dead_letter(rraw, ValidationError(reason))
        else:
            applied = window.close(control, self.clock(), raw)
        if applied:
            self.tracker.hold(bid, (raw.topic, raw.partition), raw.offset)
        else:
            self.stats.skipped_duplicates += 1

    def _on_scores(self, scores: ScoresRecord, raw: RawRecord, context: ScoresContext | None = None) -> None:
        bid = scores.batch_id
        if bid in self.decided:
            users = self.decided_users.get(bid)
            if users is not None and scores.user_id in users:  # a scorer's replay of a decided user
                self.stats.skipped_duplicates += 1
                return
            late = "" if users is None else f"; user {scores.user_id} was not scored before it was decided"
            self._dead_letter(raw, ValidationError(f"scores for decided batch {bid}{late}"))
            return
        window = self.windows.get(bid) or self.windows.setdefault(bid, BatchWindow(bid, self.clock()))
        outcome = window.add(scores, raw)
        if outcome == "added":
            self.tracker.hold(bid, (raw.topic, raw.partition), raw.offset)
            if context is not None:
                self.contexts.add(bid, scores.user_id, context)
        elif outcome == "duplicate":
            self.stats.skipped_duplicates += 1
        else:
            self._dead_letter(raw, ValidationError(outcome))

    def _expire_unknown(self, now: float) -> None:
        """Dead-letter the records of batches that never opened within the limit."""
        for bid in [b for b, w in self.windows.items() if w.is_unknown_expired(now, self.cfg.unknown_batch_timeout_s)]:
            window = self.windows.pop(bid)
            self.contexts.drop(bid)
            for raw in window.unopened_raw.values():
                self._dead_letter(
                    raw,
                    ValidationError(f"unknown batch {bid}: no OPENED within {self.cfg.unknown_batch_timeout_s:g} s"),
                    replay_aware=False,
                )
            self.tracker.release(bid)

    def _dead_letter(self, raw: RawRecord, exc: BaseException, replay_aware: bool = True) -> None:
        """Queue a dead letter for the next transaction.

        A record below its partition's replay horizon was consumed before the last committed
        transaction, which carried every dead letter queued up to then: it is skipped
        (``skipped_replayed``), not dead-lettered twice. Dead letters queued later than the
        record's consumption (unknown-batch expiry) pass ``replay_aware=False``.
        """
        if replay_aware and raw.offset < self.horizon.get((raw.topic, raw.partition), 0):
            self.stats.skipped_replayed += 1
            return
        value = dead_letter(
            self.serde,
            source_topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=raw.key,
            value=raw.value,
            error=exc,
            consumer=CONSUMER_NAME,
        )
        self.pending.dead_letters.append((raw.topic.encode(), value))  # key: the source topic
        if self.pending.since is None:
            self.pending.since = time.monotonic()
        log.debug("dead letter %s[%d]@%d: %s", raw.topic, raw.partition, raw.offset, exc)

    # -- publishing ---------------------------------------------------------------------------

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        assert self.producer is not None
        clients.produce(self.producer, topic, value, key, timeout_s=self.cfg.transaction_timeout_s)

    def _transact(self, windows: list[BatchWindow]) -> bool:
        """Publish ``windows``' decisions and reports, pending dead letters and offsets in one
        transaction. Returns True when committed; on an abortable or retriable error the
        transaction is aborted and the worker rewinds to its committed offsets."""
        assert self.producer is not None and self.consumer is not None
        p = self.producer
        outcomes = []
        try:
            p.begin_transaction()
            for w in windows:
                decided = decide_batch(w, self.cfg, self.serde, self.duals, self.clock, self.contexts.of(w.batch_id))
                records, report, n, status = decided.records, decided.report, len(decided.records), decided.status
                for key, value in records:
                    self._produce(self.decisions_topic, key, value)
                for key, value in decided.contexts:
                    self._produce(self.contexts_topic, key, value)
                self._produce(self.reports_topic, w.batch_id.encode(), report)
                outcomes.append((w, n, status))
            for key, value in self.pending.dead_letters:
                self._produce(self.dead_topic, key, value)
            for w in windows:
                self.tracker.release(w.batch_id)
            offsets = self.tracker.committable()
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
        self.stats.dead_letters += len(self.pending.dead_letters)
        self.pending = _Pending()
        for w, n, status in outcomes:
            self.decided.add(w.batch_id)
            self.decided_users[w.batch_id] = frozenset(w.scores)
            while len(self.decided_users) > DECIDED_USERS_KEPT:
                self.decided_users.popitem(last=False)
            self.windows.pop(w.batch_id, None)
            self.contexts.drop(w.batch_id)
            self.stats.decisions += n
            if status == "rejected":
                self.stats.batches_rejected += 1
            else:
                self.stats.batches_decided += 1
            log.info("batch %s decided: %d decisions (%s)", w.batch_id, n, status)
        self.committed.update({tp: off for tp, (off, _) in offsets.items()})
        return True

    def _commit(self, p: Producer) -> None:
        """commit_transaction, retried while the error is retriable (confluent-kafka's recipe), at
        most ``COMMIT_ATTEMPTS`` times; the last error is raised, and ``_transact`` aborts on it."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
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
            self.producer.abort_transaction(self.cfg.transaction_timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise
            log.warning("abort_transaction: %s", exc)
        self.stats.aborts += 1
        self.windows.clear()
        self.contexts.clear()
        self.tracker = OffsetTracker()
        self.pending = _Pending()
        self._assign_committed()


def run_allocator(
    config: AllocatorWorkerConfig, connection: ConnectionConfig, serde: AvroSerde, max_seconds: float | None = None
) -> int:
    """Run the worker until SIGTERM/SIGINT (the current transaction is finished first) or
    ``max_seconds``; returns the process exit code (2 on a fatal Kafka error)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current transaction and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("allocator worker on %s", connection.redacted())
    try:
        AllocatorWorker(config, connection, serde).run(stop_event=stop, max_seconds=max_seconds)
    except KafkaException as exc:
        log.error("fatal Kafka error: %s", exc)
        return 2
    return 0
