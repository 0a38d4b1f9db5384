"""10,000 Avro records per topic through the real broker, consumed back byte-exactly."""

from __future__ import annotations

import random

import fastavro.utils
import pytest
from confluent_kafka import TopicPartition

from streams.kafka import clients
from streams.kafka.topics import BASE_TOPICS, topic_specs
from streams.settings import Settings

pytestmark = pytest.mark.integration
N_RECORDS = 10_000


def test_every_topic_round_trips_10k_records_byte_exactly(kafka_connection, project_topics) -> None:
    names = project_topics(partitions=4)
    serde = Settings().serde()
    registry = serde.registry
    rng = random.Random(7)
    producer = clients.producer(
        kafka_connection, {"linger.ms": 5, "compression.type": "lz4", "enable.idempotence": True}
    )
    sent: dict[str, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]] = {}
    for base in BASE_TOPICS:
        _, schema = registry.current(base)
        records = list(fastavro.utils.generate_many(schema, 200))  # reused: 200 shapes x 50
        rows = []
        for i in range(N_RECORDS):
            value = serde.encode(base, records[i % len(records)])
            key = f"key-{i % 997}-{rng.random()}".encode()
            headers = [("seq", str(i).encode()), ("trace", rng.randbytes(8))]
            producer.produce(names(base), value=value, key=key, headers=headers)
            rows.append((key, value, headers))
            if i % 5000 == 0:
                producer.poll(0)
        sent[base] = rows
    assert producer.flush(60) == 0

    partitions = {s.base: s.partitions for s in topic_specs(4)}
    for base in BASE_TOPICS:
        consumer = clients.consumer(
            kafka_connection,
            {
                "group.id": f"rt-{names.prefix}{base}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
        consumer.assign([TopicPartition(names(base), p, 0) for p in range(partitions[base])])
        got = []
        idle = 0
        while len(got) < N_RECORDS and idle < 20:
            batch = consumer.consume(5000, timeout=1.0)
            idle = idle + 1 if not batch else 0
            for msg in batch:
                assert msg.error() is None, msg.error()
                got.append((msg.key(), msg.value(), msg.headers()))
        consumer.close()
        assert len(got) == N_RECORDS, base
        by_seq = {int(dict(h)["seq"]): (k, v, h) for k, v, h in got}
        assert len(by_seq) == N_RECORDS
        for i, (key, value, headers) in enumerate(sent[base]):
            k, v, h = by_seq[i]
            assert k == key and v == value and h == headers, (base, i)
        # and every value decodes with the current schema
        for _, v, _ in got[:500]:
            serde.decode(base, v)
