"""Retrying a client call through the errors a broker gives while it starts or moves a coordinator.

A seconds-old or just restarted broker answers ``NOT_COORDINATOR`` and its kin while it loads the
offsets and transaction state; librdkafka does not always flag them retriable, but waiting clears
them. Fatal errors and those that require a transaction abort are never retried here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

log = logging.getLogger("banditlp.kafka")

T = TypeVar("T")

_COORDINATOR_CODES = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def is_transient(exc: KafkaException) -> bool:
    """Whether ``exc`` is worth retrying as is: retriable, or a coordinator still loading, and
    neither fatal nor requiring a transaction abort."""
    err = exc.args[0] if exc.args else None
    if not isinstance(err, KafkaError) or err.fatal() or err.txn_requires_abort():
        return False
    return bool(err.retriable()) or err.code() in _COORDINATOR_CODES


def retry_transient(
    what: str,
    call: Callable[[], T],
    deadline_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``call()``, retried with backoff (0.5 s doubling to 5 s) while it raises a transient
    :class:`KafkaException` (:func:`is_transient`) and ``deadline_s`` has not passed; the last
    error, or any other, is raised."""
    end = clock() + deadline_s
    wait = 0.5
    while True:
        try:
            return call()
        except KafkaException as exc:
            if not is_transient(exc) or clock() + wait > end:
                raise
            log.warning("%s: %s; retrying in %.1f s", what, exc, wait)
            sleep(wait)
            wait = min(wait * 2, 5.0)
