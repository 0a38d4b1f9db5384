"""Pure bookkeeping of the allocator: batch windows and committable offsets (no Kafka, clock passed in)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from streams.decide.listing import CandidateListing
from streams.records import BatchControlRecord, ScoresRecord

TP = tuple[str, int]
"""A (topic, partition) pair."""


@dataclass(frozen=True)
class RawRecord:
    """Where a record came from and its original bytes (kept only while it may be dead-lettered)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class BatchWindow:
    """What one undecided batch has received so far; pure, the clock is passed in.

    A window is ready when its batch is OPENED and CLOSED and either every expected user is
    scored or ``timeout_ms`` has passed since CLOSED was seen; or when it was OPENED and never
    CLOSED for ``open_timeout_s`` (a producer that died mid-batch must not pin the allocator's
    offsets forever: the users scored so far are decided). Scores may arrive before OPENED
    (other topic, other partitions); their raw bytes are kept until OPENED so they can be
    dead-lettered if the batch never opens.

    The batch's users are the ones it was told of: each user's candidates listing (read from
    ``candidates``, ``list_user``), the ``user_ids`` of CLOSED or OPENED, and every scored user.
    ``unscored()`` are those with no scores when the window is decided: the fallback's users.
    """

    def __init__(self, batch_id: str, first_seen: float) -> None:
        self.batch_id = batch_id
        self.first_seen = first_seen
        self.opened: BatchControlRecord | None = None
        self.closed: BatchControlRecord | None = None
        self.closed_at: float | None = None
        self.opened_at: float | None = None
        self.scores: dict[str, ScoresRecord] = {}  # user_id -> first scores record
        self.listings: dict[str, CandidateListing] = {}  # user_id -> first candidates listing
        # user_id (scores), "#CLOSED" or "#candidates/<user_id>" -> raw, before OPENED
        self.unopened_raw: dict[str, RawRecord] = {}
        self._required: tuple[str, ...] = ()  # required_outcomes(), fixed by OPENED

    # -- events ------------------------------------------------------------------------------

    def open(self, record: BatchControlRecord, now: float | None = None) -> tuple[bool, list[tuple[RawRecord, str]]]:
        """Apply OPENED (seen at ``now``, the start of the open timeout).

        Returns ``(applied, rejected)``: applied is False for a repeated OPENED (the first one
        wins); rejected lists buffered scores lacking an outcome the batch needs, removed from the
        window, with the reason."""
        if self.opened is not None:
            return False, []
        self.opened, self.opened_at = record, now
        self._required = (record.reward_outcome,) + tuple(b.outcome for b in record.budgets)
        rejected: list[tuple[RawRecord, str]] = []
        for user_id in list(self.scores):
            reason = self.missing_outcomes(self.scores[user_id])
            if reason:
                del self.scores[user_id]
                raw = self.unopened_raw.get(user_id)
                if raw is not None:
                    rejected.append((raw, reason))
        self.unopened_raw.clear()  # only needed to dead-letter an unknown batch
        return True, rejected

    def close(self, record: BatchControlRecord, now: float, raw: RawRecord | None = None) -> bool:
        """Apply CLOSED at time ``now``; False for a repeated CLOSED (the first one wins)."""
        if self.closed is not None:
            return False
        self.closed, self.closed_at = record, now
        if self.opened is None and raw is not None:
            self.unopened_raw["#CLOSED"] = raw
        return True

    def add(self, record: ScoresRecord, raw: RawRecord | None = None) -> str:
        """Add one user's scores. Returns ``"added"``, ``"duplicate"`` (a (batch, user) already
        scored: the first record is kept) or a rejection reason (an outcome the batch needs
        is missing from the samples)."""
        if record.user_id in self.scores:
            return "duplicate"
        if self.opened is not None:
            reason = self.missing_outcomes(record)
            if reason:
                return reason
        elif raw is not None:
            self.unopened_raw[record.user_id] = raw
        self.scores[record.user_id] = record
        return "added"

    def list_user(self, listing: CandidateListing, raw: RawRecord | None = None) -> str:
        """Add one user's candidates listing: ``"added"``, or ``"duplicate"`` (the first is kept)."""
        if listing.user_id in self.listings:
            return "duplicate"
        if self.opened is None and raw is not None:
            self.unopened_raw[f"#candidates/{listing.user_id}"] = raw
        self.listings[listing.user_id] = listing
        return "added"

    # -- queries -----------------------------------------------------------------------------

    def named_users(self) -> tuple[str, ...]:
        """The ``user_ids`` of CLOSED (else OPENED); empty when the producer gave a count only."""
        for rec in (self.closed, self.opened):
            if rec is not None and rec.user_ids is not None:
                return rec.user_ids
        return ()

    def unscored(self) -> list[str]:
        """The users the batch was told of (listed or named) that have no scores, sorted."""
        known = set(self.listings).union(self.named_users())
        return sorted(known.difference(self.scores))

    def required_outcomes(self) -> tuple[str, ...]:
        """The sampled outcomes the LP reads: the reward and every budget's cost (none before OPENED)."""
        return self._required

    def missing_outcomes(self, record: ScoresRecord) -> str:
        """A rejection reason when ``record`` lacks an outcome the batch needs, else ``""``."""
        samples = record.samples
        for o in self._required:
            if o not in samples:
                missing = [o for o in self._required if o not in samples]
                return f"scores lack outcome(s) {missing} that batch {self.batch_id} needs"
        return ""

    @property
    def expected_users(self) -> int:
        """CLOSED's count when seen (written after the last candidate, so final), else OPENED's."""
        rec = self.closed or self.opened
        return rec.expected_users if rec is not None else 0

    @property
    def n_missing(self) -> int:
        return max(0, self.expected_users - len(self.scores))

    def missing_users(self, limit: int = 1_000) -> list[str]:
        """Ids of listed users (``user_ids`` of CLOSED, else OPENED) with no scores, sorted,
        at most ``limit``; empty when the producer gave a count only."""
        rec = self.closed if self.closed is not None and self.closed.user_ids is not None else self.opened
        if rec is None or rec.user_ids is None:
            return []
        return sorted(set(rec.user_ids) - set(self.scores))[:limit]

    def is_ready(self, now: float, open_timeout_s: float = math.inf) -> bool:
        """Opened and closed, and all expected users in or the timeout since CLOSED passed;
        or opened, never closed, for ``open_timeout_s``."""
        if self.opened is None:
            return False
        if self.closed_at is None:
            return self.opened_at is not None and now - self.opened_at >= open_timeout_s
        if len(self.scores) >= self.expected_users:
            return True
        return now - self.closed_at >= self.opened.timeout_ms / 1000.0

    def is_unknown_expired(self, now: float, limit_s: float) -> bool:
        """Never opened, and the first record was seen more than ``limit_s`` ago."""
        return self.opened is None and now - self.first_seen >= limit_s


class OffsetTracker:
    """Per partition: the consumer position and the smallest offset held per undecided batch.

    ``committable()`` never passes a held record: committing it there means a crash re-reads,
    rather than loses, every record still needed.
    """

    def __init__(self) -> None:
        self._position: dict[TP, int] = {}
        self._held: dict[TP, dict[str, int]] = {}

    def seen(self, tp: TP, offset: int) -> None:
        """A record at ``offset`` was consumed (held, used or rejected)."""
        if offset + 1 > self._position.get(tp, -1):
            self._position[tp] = offset + 1

    def hold(self, batch_id: str, tp: TP, offset: int) -> None:
        """``batch_id`` needs the record at ``offset`` until it is decided."""
        held = self._held.setdefault(tp, {})
        if offset < held.get(batch_id, offset + 1):
            held[batch_id] = offset
        self.seen(tp, offset)

    def release(self, batch_id: str) -> None:
        """``batch_id`` is decided (or dropped): its records are no longer needed."""
        for held in self._held.values():
            held.pop(batch_id, None)

    def position(self, tp: TP) -> int | None:
        return self._position.get(tp)

    def committable(self) -> dict[TP, tuple[int, int]]:
        """``{tp: (offset to commit, position)}`` for every partition consumed from."""
        out: dict[TP, tuple[int, int]] = {}
        for tp, pos in self._position.items():
            held = self._held.get(tp)
            low = min(held.values()) if held else pos
            out[tp] = (min(low, pos), pos)
        return out
