"""Dead-letter records: the original bytes of a rejected record, where it came from, and why."""

from __future__ import annotations

import time

from streams.avro.serde import AvroSerde


def dead_letter(
    serde: AvroSerde,
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: BaseException,
    consumer: str,
) -> bytes:
    """Encode one ``dead-letters`` value (key it by ``source_topic`` when producing)."""
    return serde.encode(
        "dead-letters",
        {
            "source_topic": source_topic,
            "partition": int(partition),
            "offset": int(offset),
            "key": key,
            "value": value,
            "error_type": type(error).__name__,
            "reason": str(error)[:2000],
            "consumer": consumer,
            "failed_at_ms": int(time.time() * 1000),
        },
    )
