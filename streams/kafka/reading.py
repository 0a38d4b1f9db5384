"""Reading a topic from the beginning to the end offsets it has now (committed records only)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition

from streams.errors import BrokerError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig


def read_to_end(
    connection: ConnectionConfig, topic: str, *, group_id: str | None = None, timeout_s: float = 60.0
) -> Iterator[Message]:
    """Every committed record of ``topic`` up to the end offsets at the call, partition by
    partition in offset order within each (partitions interleave).

    The end is judged by the consumer's position, not by the offset of the last record read:
    transaction markers and compaction leave offsets with no record.

    Raises:
        BrokerError: the topic does not exist, or its end was not reached within ``timeout_s``.
    """
    consumer = clients.consumer(
        connection,
        {
            "group.id": group_id or f"banditlp-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        },
    )
    try:
        meta = consumer.list_topics(topic, timeout=min(timeout_s, 30.0)).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise BrokerError(f"topic {topic} not found on {connection.bootstrap_servers}")
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=min(timeout_s, 30.0))[1]
            for p in sorted(meta.partitions)
        }
        todo = {p for p, end in ends.items() if end > 0}
        if not todo:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(todo)])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"could not read {topic} to its end within {timeout_s:g} s (partitions left: {sorted(todo)})"
                )
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition())
                    continue
                _, partition, offset = clients.position(msg)
                if offset < ends[partition]:
                    yield msg
                if offset + 1 >= ends[partition]:
                    todo.discard(partition)
    finally:
        consumer.close()
