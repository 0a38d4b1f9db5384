"""What the allocator has read and not yet decided: each input record decoded, checked, put in its
batch's window and held, or dead-lettered (no Kafka client here: the worker hands records in).

Three inputs: ``batch-control`` (OPENED, CLOSED), ``scores`` (one user's scored candidates) and
``candidates``, of which only the ids are read (``AvroSerde.decode_listing``): the window then
knows every user of its batch before any is scored, and what each could be sent, which is what
the fallback decides users with when their scores never arrive. The candidates records are held
like the others (their offsets are committed in the transaction that decides their batch), so a
restarted worker reads them again for every undecided batch.

Records of a decided batch: scores of a user it decided by its LP are a scorer's replay and are
skipped; other scores are late and go to dead-letters (a user decided by the fallback included:
its decision stands). Candidates of a decided batch are skipped: the allocator may decide a batch
(every user scored) before it has read all of its candidates, and a user the batch never knew of
is scored by the scorer, whose late scores reach dead-letters.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from streams.avro.serde import AvroSerde
from streams.dead_letters import dead_letter
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.contexts import ScoresContext, ScoresContexts
from streams.decide.listing import CandidateListing
from streams.decide.window import TP, BatchWindow, OffsetTracker, RawRecord
from streams.errors import DecodeError, ValidationError
from streams.records import BatchControlRecord, ScoresRecord

log = logging.getLogger("banditlp.allocator")

CONSUMER_NAME = "allocator"
# Decided batches whose user sets are kept to tell a scorer's replay from a late record
# (~60 B per user: 32 batches of 10,000 users take ~20 MB).
DECIDED_USERS_KEPT = 32


@dataclass
class WorkerStats:
    """Counters logged periodically (and returned by ``AllocatorWorker.run``)."""

    records: int = 0
    batches_decided: int = 0
    batches_rejected: int = 0
    decisions: int = 0
    fallback_decisions: int = 0
    dead_letters: int = 0
    skipped_duplicates: int = 0
    skipped_replayed: int = 0
    skipped_candidates: int = 0
    transactions: int = 0
    aborts: int = 0


@dataclass
class Pending:
    """What the next transaction carries besides decisions: dead letters ``(key, value)``, and
    each one's ``(source topic, error type)`` for the metrics, counted once it is committed."""

    dead_letters: list[tuple[bytes, bytes]] = field(default_factory=list)
    reasons: list[tuple[str, str]] = field(default_factory=list)
    since: float | None = None


class Intake:
    """The allocator's undecided state: windows, held offsets, pending dead letters.

    Args:
        config: the worker's settings (topic names, timeouts).
        serde: the process's serde.
        clock: monotonic seconds (the windows' timeouts).
        stats: the worker's counters, updated here.
    """

    def __init__(
        self, config: AllocatorWorkerConfig, serde: AvroSerde, clock: Callable[[], float], stats: WorkerStats
    ) -> None:
        self.cfg, self.serde, self.clock, self.stats = config, serde, clock, stats
        t = config.topics
        self.control_topic, self.scores_topic, self.candidates_topic = t("batch-control"), t("scores"), t("candidates")
        self.decided: set[str] = set()
        # batch_id -> the users its LP decided, for this process's last DECIDED_USERS_KEPT batches
        self.decided_users: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.windows: dict[str, BatchWindow] = {}
        self.contexts = ScoresContexts()  # each window's scores τ and features, for its decision contexts
        self.tracker = OffsetTracker()
        self.horizon: dict[TP, int] = {}  # replay horizon: the committed position of each partition
        self.pending = Pending()

    @property
    def topics(self) -> tuple[str, str, str]:
        """The input topics: batch-control, scores, candidates."""
        return self.control_topic, self.scores_topic, self.candidates_topic

    def reset(self) -> None:
        """Forget every undecided batch (after an abort: the committed offsets are read again)."""
        self.windows.clear()
        self.contexts.clear()
        self.tracker = OffsetTracker()
        self.pending = Pending()

    def decided_batch(self, window: BatchWindow) -> None:
        """``window``'s batch was committed: drop its window, remember its LP's users."""
        self.decided.add(window.batch_id)
        self.decided_users[window.batch_id] = frozenset(window.scores)
        while len(self.decided_users) > DECIDED_USERS_KEPT:
            self.decided_users.popitem(last=False)
        self.windows.pop(window.batch_id, None)
        self.contexts.drop(window.batch_id)

    def ready(self, now: float) -> list[BatchWindow]:
        """The windows to decide now (``BatchWindow.is_ready``)."""
        return [w for w in self.windows.values() if w.is_ready(now, self.cfg.open_timeout_s)]

    # -- records -----------------------------------------------------------------------------

    def on_record(self, raw: RawRecord) -> None:
        """Decode, check and file one consumed record (or queue its dead letter)."""
        self.stats.records += 1
        topic, partition, offset, value = raw.topic, raw.partition, raw.offset, raw.value
        try:
            if topic == self.control_topic:
                control = BatchControlRecord.from_avro(
                    self.serde.decode("batch-control", value, topic=topic, partition=partition, offset=offset)
                )
                self._on_control(control, raw)
            elif topic == self.candidates_topic:
                listing = self.serde.decode_listing(value, topic=topic, partition=partition, offset=offset)
                self.on_candidates(CandidateListing.from_avro(listing), raw)
            else:
                decoded = self.serde.decode("scores", value, topic=topic, partition=partition, offset=offset)
                self.on_scores(ScoresRecord.from_avro(decoded), raw, ScoresContext.from_avro(decoded))
        except (DecodeError, ValidationError) as exc:
            self.dead_letter(raw, exc)
        except (KeyError, TypeError, ValueError) as exc:  # a decoded dict that breaks a record invariant
            self.dead_letter(raw, ValidationError(f"malformed record: {type(exc).__name__}: {exc}"))
        self.tracker.seen((topic, partition), offset)

    def _window(self, batch_id: str) -> BatchWindow:
        return self.windows.get(batch_id) or self.windows.setdefault(batch_id, BatchWindow(batch_id, self.clock()))

    def _on_control(self, control: BatchControlRecord, raw: RawRecord) -> None:
        bid = control.batch_id
        if bid in self.decided:
            self.dead_letter(raw, ValidationError(f"{control.event} for decided batch {bid}"))
            return
        window = self._window(bid)
        if control.event == "OPENED":
            applied, rejected = window.open(control, self.clock())
            for rraw, reason in rejected:
                self.dead_letter(rraw, ValidationError(reason))
        else:
            applied = window.close(control, self.clock(), raw)
        if applied:
            self.tracker.hold(bid, (raw.topic, raw.partition), raw.offset)
        else:
            self.stats.skipped_duplicates += 1

    def on_scores(self, scores: ScoresRecord, raw: RawRecord, context: ScoresContext | None = None) -> None:
        bid = scores.batch_id
        if bid in self.decided:
            users = self.decided_users.get(bid)
            if users is not None and scores.user_id in users:  # a scorer's replay of a decided user
                self.stats.skipped_duplicates += 1
                return
            late = "" if users is None else f"; user {scores.user_id} was not scored before it was decided"
            self.dead_letter(raw, ValidationError(f"scores for decided batch {bid}{late}"))
            return
        window = self._window(bid)
        outcome = window.add(scores, raw)
        if outcome == "added":
            self.tracker.hold(bid, (raw.topic, raw.partition), raw.offset)
            if context is not None:
                self.contexts.add(bid, scores.user_id, context)
        elif outcome == "duplicate":
            self.stats.skipped_duplicates += 1
        else:
            self.dead_letter(raw, ValidationError(outcome))

    def on_candidates(self, listing: CandidateListing, raw: RawRecord) -> None:
        bid = listing.batch_id
        if bid in self.decided:  # read after its batch was decided (module docstring)
            self.stats.skipped_candidates += 1
            return
        if self._window(bid).list_user(listing, raw) == "added":
            self.tracker.hold(bid, (raw.topic, raw.partition), raw.offset)
        else:
            self.stats.skipped_duplicates += 1

    def expire_unknown(self, now: float) -> None:
        """Dead-letter the records of batches that never opened within the limit."""
        limit = self.cfg.unknown_batch_timeout_s
        for bid in [b for b, w in self.windows.items() if w.is_unknown_expired(now, limit)]:
            window = self.windows.pop(bid)
            self.contexts.drop(bid)
            for raw in window.unopened_raw.values():
                self.dead_letter(
                    raw, ValidationError(f"unknown batch {bid}: no OPENED within {limit:g} s"), replay_aware=False
                )
            self.tracker.release(bid)

    def dead_letter(self, raw: RawRecord, exc: BaseException, replay_aware: bool = True) -> None:
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
        self.pending.reasons.append((raw.topic, type(exc).__name__))
        if self.pending.since is None:
            self.pending.since = time.monotonic()
        log.debug("dead letter %s[%d]@%d: %s", raw.topic, raw.partition, raw.offset, exc)
