"""Kafka I/O of ``bench/bench_pipeline.py`` outside the pipeline under test.

Reading the bench's topics back by offset (high watermarks, a range of messages, their
CreateTime: the timeline of a measured batch comes from these timestamps, read after the batch
so that reading does not load the pipeline while it runs), and the raw confluent-kafka baseline
the pipeline is compared with (the simulator's own ``candidates`` bytes and producer settings).
Split from bench_pipeline.py to keep each module short; the functions are unchanged.
"""

from __future__ import annotations

import time

from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, KafkaException, TopicPartition
from rich.progress import Progress

from banditlp.errors import BanditLPError
from evaluation.email_world import EmailWorld
from streams.avro.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig

# The simulator's own producer, so the baseline produces with exactly the pipeline's settings.
from streams.simulate.feed import _producer, candidates_values


class BenchError(BanditLPError):
    """The benchmark could not run (a worker died, a phase timed out)."""


# -- reading topics back ----------------------------------------------------------------------


def _consumer(connection: ConnectionConfig, group: str) -> Consumer:
    return clients.consumer(
        connection,
        {
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
            "enable.partition.eof": False,
        },
    )


def end_offsets(connection: ConnectionConfig, topic: str, partitions: int, timeout_s: float = 30.0) -> list[int]:
    """The high watermark of every partition of ``topic`` (retried while a new topic's
    partitions are not known to the broker yet)."""
    c = _consumer(connection, "bench-offsets")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


def read_range(
    connection: ConnectionConfig,
    topic: str,
    start: list[int],
    timeout_s: float,
    stop_at: list[int] | None = None,
    only_first: bool = False,
):
    """Messages of ``topic`` from ``start[p]`` up to the current end (or ``stop_at``) of each
    partition (``only_first``: one message per non-empty partition)."""
    stop = stop_at or end_offsets(connection, topic, len(start))
    want = {p: s for p, s in enumerate(start) if stop[p] > s}
    if not want:
        return []
    c = _consumer(connection, "bench-reader")
    c.assign([TopicPartition(topic, p, o) for p, o in want.items()])
    out, done = [], set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(done) < len(want) and time.monotonic() < deadline:
            for msg in c.consume(5000, timeout=0.5):
                if msg.error():
                    continue
                p = msg.partition()
                if p in done:
                    continue
                out.append(msg)
                if only_first or msg.offset() >= stop[p] - 1:
                    done.add(p)
    finally:
        c.close()
    if len(done) < len(want):
        raise BenchError(f"reading {topic} back timed out after {timeout_s:.0f} s")
    return out


def create_time_s(msg) -> float:  # noqa: ANN001 - confluent_kafka.Message
    kind, ms = msg.timestamp()
    if kind != TIMESTAMP_CREATE_TIME:
        raise BenchError(f"{msg.topic()} carries no CreateTime (timestamp type {kind})")
    return ms / 1000.0


# -- baseline: raw confluent-kafka ------------------------------------------------------------


def candidates_records(world: EmailWorld, serde: AvroSerde, batch_index: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of every user's ``candidates`` record of one batch, encoded as the
    simulator encodes them (``streams.simulate.feed.candidates_values``)."""
    batch = world.candidates(batch_index)
    values = candidates_values(world, batch, world.constraints(batch), int(time.time() * 1000))
    return [(key, serde.encode("candidates", value)) for key, value in values]


def raw_kafka_round(
    connection: ConnectionConfig,
    topic: str,
    partitions: int,
    records: list[tuple[bytes, bytes]],
    progress: Progress,
    label: str,
    timeout_s: float,
) -> dict[str, float]:
    """Produce every record (simulator producer settings), then consume them all back."""
    start = end_offsets(connection, topic, partitions)
    producer = _producer(connection)
    task = progress.add_task(f"{label}: produce", total=len(records))
    t0 = time.perf_counter()
    for i, (key, value) in enumerate(records):
        clients.produce(producer, topic, value, key, timeout_s=timeout_s)
        if i % 1000 == 999:
            producer.poll(0)
            progress.update(task, completed=i + 1)
    left = producer.flush(timeout_s)
    produce_s = time.perf_counter() - t0
    progress.update(task, completed=len(records))
    if left:
        raise BenchError(f"{left} baseline records not delivered in {timeout_s:.0f} s")

    consumer = _consumer(connection, f"{topic}-reader")
    task = progress.add_task(f"{label}: consume", total=len(records))
    n = 0
    t0 = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, o) for p, o in enumerate(start)])
    deadline = time.monotonic() + timeout_s
    try:
        while n < len(records) and time.monotonic() < deadline:
            # ask for no more than are missing: consume() returns once it has them all
            n += sum(1 for m in consumer.consume(min(10_000, len(records) - n), timeout=0.5) if not m.error())
            progress.update(task, completed=n)
        consume_s = time.perf_counter() - t0
    finally:
        consumer.close()
    if n < len(records):
        raise BenchError(f"consumed {n} of {len(records)} baseline records in {timeout_s:.0f} s")
    size = sum(len(v) for _, v in records)
    return {
        "records": len(records),
        "bytes": size,
        "produce_s": produce_s,
        "consume_s": consume_s,
        "produce_records_per_s": len(records) / produce_s,
        "consume_records_per_s": len(records) / consume_s,
    }
