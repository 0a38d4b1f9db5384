"""Every librdkafka client of the project, built from one ``ConnectionConfig``, and a bounded produce.

Callers pass only what their role needs (``transactional.id``, ``group.id``, ``linger.ms``...);
the connection and security settings always come from the config, never from a hand-built dict,
and every consumer gets the project's group timeouts (``connection.GROUP_TIMEOUTS``) unless the
caller names its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient

from streams.errors import DeliveryError
from streams.kafka.connection import GROUP_TIMEOUTS, ConnectionConfig


def _conf(connection: ConnectionConfig, options: Mapping[str, Any] | None) -> dict[str, Any]:
    conf: dict[str, Any] = dict(options or {})
    conf.update(connection.librdkafka())
    return conf


def producer(connection: ConnectionConfig, options: Mapping[str, Any] | None = None) -> Producer:
    """A librdkafka producer; ``options`` are librdkafka's dotted names (``{"linger.ms": 5}``)."""
    return Producer(_conf(connection, options))


def consumer_config(connection: ConnectionConfig, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A consumer's librdkafka configuration: the group timeouts of ``GROUP_TIMEOUTS``, then
    ``options`` (which win), then the connection (which always wins)."""
    return _conf(connection, {**GROUP_TIMEOUTS.librdkafka(), **(options or {})})


def consumer(connection: ConnectionConfig, options: Mapping[str, Any] | None = None) -> Consumer:
    """A librdkafka consumer of ``consumer_config(connection, options)``; ``options`` must name its ``group.id``."""
    return Consumer(consumer_config(connection, options))


def admin(connection: ConnectionConfig, options: Mapping[str, Any] | None = None) -> AdminClient:
    """A librdkafka admin client."""
    return AdminClient(_conf(connection, options))


def produce(
    client: Producer, topic: str, value: bytes | None, key: bytes | None = None, timeout_s: float = 60.0, **kwargs: Any
) -> None:
    """``client.produce``, waiting while librdkafka's local queue is full, at most ``timeout_s``.

    Raises:
        DeliveryError: the queue stayed full for ``timeout_s`` (the broker is not taking records).
    """
    deadline: float | None = None
    while True:
        try:
            client.produce(topic, value=value, key=key, **kwargs)
            return
        except BufferError:
            now = time.monotonic()
            deadline = now + timeout_s if deadline is None else deadline
            if now >= deadline:
                raise DeliveryError(
                    f"producer queue for {topic} stayed full for {timeout_s:g} s; the broker is not taking records"
                ) from None
            client.poll(0.05)


def position(msg: Message) -> tuple[str, int, int]:
    """``(topic, partition, offset)`` of a consumed record (librdkafka types them optional: they
    are absent only on error events, which callers handle first)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None, "an error event, not a record"
    return topic, partition, offset
