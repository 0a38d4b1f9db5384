"""Dead-letter records: the original bytes of a rejected record, where it came from, and why.

A dead letter must always fit on the dead-letters topic, or writing it fails where it is needed
most: a record at the broker's size limit (``message.max.bytes``, 1 MiB by default) plus the
dead letter's own fields is over it, and the worker that rejected it then crashes or, inside the
allocator's transaction, aborts and re-reads the same record forever. So the original key and
value are kept whole up to ``MAX_DEAD_LETTER_BYTES`` together; beyond that the value keeps its
first bytes, and the reason says how many it had and their SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import time

from confluent_kafka import Message, Producer

from streams.avro.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig

log = logging.getLogger("banditlp.dead_letters")

#: The most original key and value bytes one dead letter carries (the rest of a larger value is cut).
MAX_DEAD_LETTER_BYTES = 512 * 1024
REASON_CHARS = 2_000


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
    """Encode one ``dead-letters`` value (key it by ``source_topic`` when producing).

    ``key`` and ``value`` are kept whole when together at most ``MAX_DEAD_LETTER_BYTES``;
    otherwise (the key is cut first, then the value) the reason ends with what was cut.
    """
    reason = str(error)[:REASON_CHARS]
    key_kept = key if key is None or len(key) <= MAX_DEAD_LETTER_BYTES // 4 else key[: MAX_DEAD_LETTER_BYTES // 4]
    room = MAX_DEAD_LETTER_BYTES - (len(key_kept) if key_kept is not None else 0)
    value_kept = value if value is None or len(value) <= room else value[:room]
    for original, kept, what in ((key, key_kept, "key"), (value, value_kept, "value")):
        if original is not None and kept is not None and len(kept) < len(original):
            reason += (
                f" ({what} cut to its first {len(kept)} of {len(original)} bytes; "
                f"sha256 of all of them {hashlib.sha256(original).hexdigest()})"
            )
    return serde.encode(
        "dead-letters",
        {
            "source_topic": source_topic,
            "partition": int(partition),
            "offset": int(offset),
            "key": key_kept,
            "value": value_kept,
            "error_type": type(error).__name__,
            "reason": reason,
            "consumer": consumer,
            "failed_at_ms": int(time.time() * 1000),
        },
    )


class DeadLetterSink:
    """Dead letters from code outside faust's event loop and outside a transaction (the
    processors' topic feeds): one idempotent librdkafka producer, made at the first dead
    letter, delivered at ``flush``.

    Args:
        connection: the cluster.
        serde: the process's serde.
        topic: the dead-letters topic (its real name).
        consumer: who rejects the records (``dead-letters.consumer``).
    """

    def __init__(self, connection: ConnectionConfig, serde: AvroSerde, topic: str, consumer: str) -> None:
        self.connection, self.serde, self.topic, self.consumer = connection, serde, topic, consumer
        self._producer: Producer | None = None
        self.sent = 0

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = clients.producer(self.connection, {"enable.idempotence": True, "linger.ms": 5})
        return self._producer

    def poll(self) -> None:
        """Serve delivery callbacks of what is queued (none before the first dead letter)."""
        if self._producer is not None:
            self._producer.poll(0)

    def send(self, msg: Message, error: BaseException) -> None:
        """Queue the dead letter of consumed record ``msg``."""
        topic, partition, offset = clients.position(msg)
        value = dead_letter(
            self.serde,
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=msg.key(),
            value=msg.value(),
            error=error,
            consumer=self.consumer,
        )
        clients.produce(self.producer, self.topic, value, topic.encode())
        self.producer.poll(0)
        self.sent += 1
        log.debug("dead letter %s[%d]@%d: %s", topic, partition, offset, error)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Deliver what is queued; returns how many are still undelivered."""
        return 0 if self._producer is None else self._producer.flush(timeout_s)
