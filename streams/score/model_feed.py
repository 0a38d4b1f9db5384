"""Keeps the newest model snapshot of one model name in memory, from the compacted topic.

Every scorer needs the same global model, so each worker reads ``model-snapshots`` in full
(its own consumer, no group, from the beginning) in a background thread and swaps the
model in with one assignment when a newer version arrives: scorers pick up a retrained
model without restarting. At start the feed reads the topic up to its end offset before it
reports itself caught up, so a scorer that waits for that scores with the newest snapshot
rather than with the prior. Until a snapshot exists, scoring uses the untrained prior, whose
input width is ``feature_dim`` when configured, else the width of the first record scored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from banditlp.errors import BanditLPError
from streams.avro.serde import AvroSerde
from streams.errors import ValidationError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.score.model import ScoringModel

log = logging.getLogger("banditlp.model_feed")


class ModelFeed:
    """The current ``ScoringModel`` of ``model_name``, refreshed from ``topic``."""

    def __init__(
        self,
        connection: ConnectionConfig,
        serde: AvroSerde,
        topic: str,
        model_name: str,
        feature_dim: int | None = None,
    ) -> None:
        self.connection = connection
        self.serde = serde
        self.topic = topic
        self.model_name = model_name
        self.feature_dim = feature_dim
        self.caught_up = threading.Event()
        self._model: ScoringModel | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rejected = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-feed", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        """Wait (without blocking the event loop) until the snapshots topic has been read to
        the end offset it had at start, at most ``timeout_s``; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.caught_up.is_set():
            log.warning("model feed not caught up after %.0f s; scoring with what it has", timeout_s)
        return self.caught_up.is_set()

    def model_for(self, feature_dim: int) -> ScoringModel:
        """The newest snapshot, or the untrained prior (of ``self.feature_dim`` inputs when
        configured, else ``feature_dim``).

        Raises:
            ValidationError: ``feature_dim`` is not the model's input width.
        """
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = ScoringModel.prior(self.model_name, self.feature_dim or feature_dim)
                model = self._model
        if model.feature_dim != feature_dim:
            raise ValidationError(
                f"{feature_dim} features, but model {model.name} v{model.version} expects {model.feature_dim}"
            )
        return model

    @property
    def version(self) -> int:
        return -1 if self._model is None else self._model.version

    def offer(self, value: dict) -> bool:
        """Swap in a decoded ``model-snapshots`` value if it is a newer version of our model."""
        if value["name"] != self.model_name or value["version"] <= self.version:
            return False
        model = ScoringModel.from_snapshot(value["name"], int(value["version"]), value["payload"])
        with self._lock:
            if self._model is None or model.version > self._model.version:
                self._model = model
        log.info("model %s v%d loaded", model.name, model.version)
        return True

    def _run(self) -> None:
        serde = self.serde
        consumer = clients.consumer(
            self.connection,
            {"group.id": "banditlp-model-feed", "enable.auto.commit": False, "isolation.level": "read_committed"},
        )
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        try:
            try:
                _, end = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)
            except Exception as exc:  # the broker not answering yet: do not hold the scorer back
                log.warning("model feed: no end offset for %s (%s)", self.topic, exc)
                end = 0
            if end <= 0:
                self.caught_up.set()
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    # compaction or transaction markers may leave no record at end - 1
                    if (
                        not self.caught_up.is_set()
                        and consumer.position([TopicPartition(self.topic, 0)])[0].offset >= end
                    ):
                        self.caught_up.set()
                    continue
                topic, partition, offset = clients.position(msg)
                try:
                    self.offer(
                        serde.decode("model-snapshots", msg.value(), topic=topic, partition=partition, offset=offset)
                    )
                except BanditLPError as exc:  # a bad snapshot is skipped; the current model stays
                    self.rejected += 1
                    log.warning("skipped model snapshot at offset %d: %s", offset, exc)
                if offset + 1 >= end:
                    self.caught_up.set()
        finally:
            consumer.close()
