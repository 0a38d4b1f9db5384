"""The scorer's producer reports undelivered records as a DeliveryError instead of dropping them."""

from __future__ import annotations

import asyncio

import pytest

from streams.errors import DeliveryError
from streams.kafka.connection import ConnectionConfig
from streams.score.publisher import ScorePublisher


def test_records_kafka_never_acknowledges_raise_delivery_error() -> None:
    # nothing listens on port 1: librdkafka retries until message.timeout.ms, then fails each record
    publisher = ScorePublisher(
        ConnectionConfig("127.0.0.1:1"),
        "scores",
        {"message.timeout.ms": 300, "enable.idempotence": False, "log_level": 0},
    )
    for i in range(3):
        publisher.publish(b"batch", f"record {i}".encode())
    with pytest.raises(DeliveryError, match="3 scores records failed"):
        asyncio.run(publisher.flushed(timeout_s=10))
    asyncio.run(publisher.flushed(timeout_s=1))  # the errors were reported once; nothing is left queued


def test_records_still_queued_at_the_timeout_raise_delivery_error() -> None:
    publisher = ScorePublisher(ConnectionConfig("127.0.0.1:1"), "scores", {"message.timeout.ms": 2_000, "log_level": 0})
    publisher.publish(b"batch", b"record")
    with pytest.raises(DeliveryError, match="1 scores records not delivered"):
        asyncio.run(publisher.flushed(timeout_s=0.5))
    publisher.close(timeout_s=5)  # the record times out: no producer left retrying after the test
