"""The monitor's background consumer: ``allocation-reports``, and ``health`` once it exists, into the store.

It reads without a consumer group's offsets (manual assignment, nothing committed: a monitor is
an observer and a restart simply reads again): each partition from ``history`` records before its
end, so a restarted monitor shows the last batches at once. The ``health`` topic is written by a
separate worker that a deployment may not run: the feed looks for it at start and every
``topic_check_s``, and plots allocation reports alone until it appears. A record it cannot read
is logged and counted (``SeriesStore.skipped``), not dead-lettered: the monitor writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from banditlp.errors import BanditLPError
from streams.avro.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.monitor.config import MonitorConfig
from streams.monitor.store import SeriesStore

log = logging.getLogger("banditlp.monitor")


class MonitorFeed:
    """Fills ``store`` from the broker in a daemon thread (``start`` / ``stop``).

    Args:
        connection: the cluster.
        serde: the process's serde (``allocation-reports``; ``health`` when its schema is known).
        names: the topic namespace.
        store: where the rows go.
        config: history and the health-topic check period.
    """

    def __init__(
        self,
        connection: ConnectionConfig,
        serde: AvroSerde,
        names: TopicNames,
        store: SeriesStore,
        config: MonitorConfig,
    ) -> None:
        self.connection, self.serde, self.store, self.cfg = connection, serde, store, config
        self.reports_topic, self.health_topic = names("allocation-reports"), names("health")
        self.subjects = {self.reports_topic: "allocation-reports", self.health_topic: "health"}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.assigned: set[str] = set()
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="monitor-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            consumer = clients.consumer(
                self.connection,
                {
                    "group.id": f"banditlp-monitor-{uuid.uuid4().hex[:8]}",  # never joined: manual assignment
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": False,
                },
            )
        except Exception as exc:  # a bad connection config: the page says nothing arrives
            self.error = exc
            log.error("monitor feed cannot start: %s", exc)
            return
        try:
            next_check = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_check:
                    if self._missing():
                        try:
                            self._assign_new(consumer)
                        except KafkaException as exc:  # broker unreachable now: try again at the next check
                            log.warning("monitor feed: cannot list topics (%s); retrying", exc)
                    next_check = now + self.cfg.topic_check_s
                for msg in consumer.consume(500, 0.5):
                    if msg.error() is None:
                        self._on_record(msg)
        except Exception as exc:  # a bug or a fatal client error: logged, the page keeps its history
            self.error = exc
            log.error("monitor feed stopped: %s", exc)
        finally:
            consumer.close()

    def _missing(self) -> bool:
        return not {self.reports_topic, self.health_topic} <= self.assigned

    def _assign_new(self, consumer: Any) -> None:
        """Assign the followed topics that exist now and are not assigned yet, ``history`` back."""
        listed = consumer.list_topics(timeout=10).topics
        new, topics = [], []
        for topic in (self.reports_topic, self.health_topic):
            meta = listed.get(topic)
            if topic in self.assigned or meta is None or meta.error is not None:
                continue
            for p in sorted(meta.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                new.append(TopicPartition(topic, p, max(low, high - self.cfg.history)))
            topics.append(topic)
        if new:
            consumer.incremental_assign(new)
        for topic in topics:  # only once assigned: a failure above is retried whole at the next check
            self.assigned.add(topic)
            log.info("monitor follows %s", topic)

    def _on_record(self, msg: Any) -> None:
        topic = msg.topic()
        try:
            value = self.serde.decode(
                self.subjects[topic], msg.value(), topic=topic, partition=msg.partition(), offset=msg.offset()
            )
            if topic == self.reports_topic:
                self.store.add_report(value)
            else:
                self.store.add_health(value)
        except (BanditLPError, KeyError, TypeError, ValueError) as exc:
            self.store.skipped += 1
            log.warning("%s[%d]@%d skipped: %s", topic, msg.partition(), msg.offset(), exc)
