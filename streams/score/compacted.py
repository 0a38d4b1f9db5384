"""A small compacted topic read in full, in a background thread, by every processors worker.

The scorer's inputs besides ``candidates`` are small compacted topics every worker needs whole
(``model-snapshots``, ``parameter-distribution``): each worker reads its topic from the beginning
with its own consumer (no group, no commits), then follows it. ``CompactedFeed`` does the
reading; a subclass says what a decoded value means (``handle``). A record that does not decode,
or that ``handle`` rejects with a ``ValidationError``, goes to dead-letters with its reason (when
the feed has a ``DeadLetterSink``) and the feed goes on. Every worker reads the whole topic at
each start, so a bad record still on the topic is dead-lettered again by each start of each
worker, with the same ``(source_topic, partition, offset)`` (README: count distinct ones).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streams.avro.serde import AvroSerde
from streams.dead_letters import DeadLetterSink
from streams.errors import DecodeError, ValidationError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig

log = logging.getLogger("banditlp.feeds")


class CompactedFeed(ABC):
    """Reads ``topic`` (subject ``subject``) from its beginning and hands each value to ``handle``.

    Attributes:
        caught_up: set once the records up to the end offset the topic had at start are handled.
        rejected: records dead-lettered (or, without a sink, skipped) so far.
    """

    name = "feed"

    def __init__(
        self,
        connection: ConnectionConfig,
        serde: AvroSerde,
        topic: str,
        subject: str,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        self.connection = connection
        self.serde = serde
        self.topic = topic
        self.subject = subject
        self.dead_letters = dead_letters
        self.caught_up = threading.Event()
        self.rejected = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def handle(self, value: dict[str, Any]) -> None:
        """Use one decoded value.

        Raises:
            ValidationError: the record is unusable (it is dead-lettered).
        """

    async def wait_caught_up(self, timeout_s: float) -> bool:
        """Wait (without blocking the event loop) until the topic has been read to the end offset it
        had at start, at most ``timeout_s``; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.caught_up.is_set():
            log.warning("%s not caught up after %.0f s; going on with what it has", self.name, timeout_s)
        return self.caught_up.is_set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def on_message(self, msg: Message) -> None:
        """Decode and handle one consumed record; dead-letter it when it is unusable."""
        topic, partition, offset = clients.position(msg)
        try:
            self.handle(self.serde.decode(self.subject, msg.value(), topic=topic, partition=partition, offset=offset))
        except (DecodeError, ValidationError) as exc:
            self.rejected += 1
            log.warning("%s: rejected %s[%d]@%d: %s", self.name, topic, partition, offset, exc)
            if self.dead_letters is not None:
                self.dead_letters.send(msg, exc)

    def _consumer(self) -> tuple[Consumer, int]:
        consumer = clients.consumer(
            self.connection,
            {"group.id": f"banditlp-{self.name}", "enable.auto.commit": False, "isolation.level": "read_committed"},
        )
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        try:
            _, end = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)
        except Exception as exc:  # the broker not answering yet: do not hold the scorer back
            log.warning("%s: no end offset for %s (%s)", self.name, self.topic, exc)
            end = 0
        return consumer, end

    def _run(self) -> None:
        consumer, end = self._consumer()
        if end <= 0:
            self.caught_up.set()
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    # compaction or transaction markers may leave no record at end - 1
                    if (
                        not self.caught_up.is_set()
                        and consumer.position([TopicPartition(self.topic, 0)])[0].offset >= end
                    ):
                        self.caught_up.set()
                    if self.dead_letters is not None:
                        self.dead_letters.poll()
                    continue
                self.on_message(msg)
                if clients.position(msg)[2] + 1 >= end:
                    self.caught_up.set()
        finally:
            consumer.close()
            if self.dead_letters is not None:
                self.dead_letters.flush(10)
