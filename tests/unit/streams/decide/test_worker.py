"""The allocator worker's record handling without a broker (it connects only in run())."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.decide.config import AllocatorWorkerConfig
from streams.decide.worker import AllocatorWorker, is_transient, retry_transient
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


def _kafka_exception(code: int, *, retriable: bool = False, fatal: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, "test", fatal=fatal, retriable=retriable))


def test_a_coordinator_still_loading_is_retried_with_backoff_until_the_deadline() -> None:
    """NOT_COORDINATOR at start-up on a fresh broker (not flagged retriable by librdkafka) is
    waited out; a fatal error, or one past the deadline, is raised at once."""
    calls, slept, now = [], [], [0.0]

    def flaky() -> str:
        calls.append(1)
        if len(calls) <= 3:
            raise _kafka_exception(KafkaError.NOT_COORDINATOR)
        return "offsets"

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    assert retry_transient("committed", flaky, 30.0, sleep=sleep, clock=lambda: now[0]) == "offsets"
    assert len(calls) == 4 and slept == [0.5, 1.0, 2.0]

    def fenced() -> None:
        raise _kafka_exception(KafkaError._FENCED, fatal=True)

    with pytest.raises(KafkaException):
        retry_transient("init", fenced, 30.0, sleep=sleep, clock=lambda: now[0])

    def loading() -> None:
        raise _kafka_exception(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)

    now[0], slept[:] = 0.0, []
    with pytest.raises(KafkaException):
        retry_transient("init", loading, 4.0, sleep=sleep, clock=lambda: now[0])
    assert slept == [0.5, 1.0, 2.0]  # the next wait (4 s) would pass the 4-s deadline
    assert is_transient(_kafka_exception(KafkaError._TRANSPORT, retriable=True))
    assert not is_transient(_kafka_exception(KafkaError.INVALID_CONFIG))
