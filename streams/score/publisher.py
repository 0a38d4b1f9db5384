"""The scorer's output producer: librdkafka (confluent-kafka) beside faust's own producer.

Why not ``scores_topic.send``: a ``scores`` record is ~4 KB and the scorer writes one per
candidates record. faust's aiokafka producer builds, compresses and writes every batch on
the worker's event loop with one request in flight, and with it the scorer spent ~1.2 ms per
record waiting in ``send`` (bench/bench_pipeline.py, 10,000 users x 20 candidates); librdkafka
does that in its own threads, pipelined, and ``produce`` costs the loop a few µs.

Delivery is at least once, as with faust's sends: the scorer awaits :meth:`flushed` at the
end of every take, before faust acks (and may later commit) the take's candidates offsets,
so a candidates offset is committed only after its scores record is on the topic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.errors import DeliveryError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig


@dataclass
class ScorePublisher:
    """Queue scores records to one topic and wait for their delivery.

    Args:
        connection: the cluster.
        topic: the full ``scores`` topic name.
        config: librdkafka settings that replace the defaults below.
    """

    connection: ConnectionConfig
    topic: str
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Made at the first publish: a worker that has nothing to score yet (or an app built
        # only to be inspected) opens no connection.
        self._producer: Producer | None = None
        self._errors: list[str] = []

    def _open(self) -> Producer:
        self._producer = clients.producer(
            self.connection,
            {
                "enable.idempotence": True,  # retries neither duplicate nor reorder a partition's records
                "linger.ms": 5,
                "compression.type": "lz4",
                **self.config,
            },
        )
        return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()} [{msg.partition()}]: {err}")

    def publish(self, key: bytes, value: bytes) -> None:
        """Queue one record (blocks only while librdkafka's local queue is full).

        Raises:
            DeliveryError: the local queue stayed full (the broker is not taking records).
        """
        producer = self._producer or self._open()
        clients.produce(producer, self.topic, value, key, on_delivery=self._on_delivery)
        producer.poll(0)

    async def flushed(self, timeout_s: float = 300.0) -> None:
        """Wait, off the event loop, until every queued record is acknowledged.

        Raises:
            DeliveryError: a record failed or was still queued after ``timeout_s``.
        """
        if self._producer is None:
            return
        left = await asyncio.to_thread(self._producer.flush, timeout_s)
        if left:
            raise DeliveryError(f"{left} scores records not delivered to {self.topic} in {timeout_s:.0f} s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(f"{len(errors)} scores records failed: {errors[0]}")

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued (best effort) and drop the producer's connections."""
        if self._producer is not None:
            self._producer.flush(timeout_s)
            self._producer = None
