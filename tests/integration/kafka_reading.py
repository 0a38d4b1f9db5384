"""Reading a topic back in integration tests: every committed record, decoded, in partition order."""

from __future__ import annotations

import time
import uuid
from typing import Callable, Optional

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.settings import Settings


def read_raw(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[tuple[int, int, Optional[bytes], bytes]]:
    """``(partition, offset, key, value)`` of every committed record of ``topic``, from the
    beginning to the end offsets at the time of the call (read_committed), partition by partition
    in offset order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        assert md.error is None, f"{topic}: {md.error}"
        parts = sorted(md.partitions)
        c.assign([TopicPartition(topic, p, -2) for p in parts])
        todo, out, deadline = set(parts), [], time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(m.partition())
                    continue
                out.append((m.partition(), m.offset(), m.key(), m.value()))
        assert not todo, f"did not reach the end of {topic}"
    finally:
        c.close()
    out.sort(key=lambda r: (r[0], r[1]))
    return out


def read_all(bootstrap: str, topic: str, subject: str, timeout_s: float = 60.0) -> list[tuple[bytes, dict]]:
    """``(key, decoded value)`` of every committed record of ``topic`` (see :func:`read_raw`)."""
    serde = Settings().serde()
    return [(key, serde.decode(subject, value)) for _, _, key, value in read_raw(bootstrap, topic, timeout_s)]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str,
               alive: Optional[Callable[[], None]] = None, every_s: float = 0.5) -> None:
    """Poll ``condition`` until it holds; ``alive`` may raise when a process under test died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if alive is not None:
            alive()
        time.sleep(every_s)
    raise AssertionError(f"not reached within {timeout_s:.0f} s: {what}")
