"""The allocator worker's record handling without a broker (it connects only in run())."""

from __future__ import annotations

from streams.decide.config import AllocatorWorkerConfig
from streams.decide.worker import AllocatorWorker
from streams.kafka.connection import ConnectionConfig
from streams.settings import Settings
from tests.factories import raw_record as raw
from tests.factories import scores_record as scores


def test_scores_for_a_decided_batch_are_a_replay_if_the_user_was_decided_else_late() -> None:
    """A scorer re-scores after its rebalance (at-least-once): a decided user's second scores
    record is skipped; a user the batch never saw is late and goes to dead-letters."""
    worker = AllocatorWorker(
        AllocatorWorkerConfig.for_prefix("t-"), ConnectionConfig("127.0.0.1:1"), Settings().serde()
    )
    intake = worker.intake
    intake.decided.add("b1")
    intake.decided_users["b1"] = frozenset({"u1", "u2"})
    intake.on_scores(scores("u1"), raw(10))
    assert worker.stats.skipped_duplicates == 1 and intake.pending.dead_letters == []
    intake.on_scores(scores("u3"), raw(11))
    assert len(intake.pending.dead_letters) == 1
    letter = worker.serde.decode("dead-letters", intake.pending.dead_letters[0][1])
    assert letter["offset"] == 11 and "user u3 was not scored before it was decided" in letter["reason"]
    intake.decided.add("b0")  # decided before this process started: no user set, so late
    intake.on_scores(scores("u1", batch="b0"), raw(12))
    assert len(intake.pending.dead_letters) == 2 and worker.stats.skipped_duplicates == 1
