"""Retrying client calls through a coordinator that is still loading (streams.kafka.retry)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.kafka.retry import is_transient, retry_transient


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
