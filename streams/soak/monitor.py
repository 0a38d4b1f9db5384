"""The soak's live watch: committed offsets of the decision path's consumer groups, the input
topics' end offsets, and the moment of the newest committed decision, sampled in a thread.

It feeds ``RecoveryTracker`` (``streams.soak.recovery``): the chaos driver calls ``fault`` at each
fault (which snapshots the end offsets), this thread samples every ``interval_s``. Its clients
are its own (no group membership: it only fetches committed offsets and reads decisions
read_committed from the end), so it cannot disturb the groups it watches. While the broker is
down its calls fail; a failed sample is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from confluent_kafka import OFFSET_END, KafkaException, TopicPartition

from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.soak.recovery import Position, RecoveryTracker

log = logging.getLogger("banditlp.soak")


class LagMonitor:
    """Samples the groups' committed offsets against the end offsets (see the module docstring).

    Args:
        groups: group id -> the topics it consumes (every partition of each).
        partitions: topic -> its partition count.
        decisions_topic: read from its end, read_committed; each record read moves
            ``last_decision_at``.
    """

    def __init__(
        self,
        connection: ConnectionConfig,
        groups: Mapping[str, tuple[str, ...]],
        partitions: Mapping[str, int],
        decisions_topic: str,
        tracker: RecoveryTracker,
        interval_s: float = 0.5,
    ) -> None:
        self.connection = connection
        self.positions: list[Position] = [
            (g, t, p) for g, topics in groups.items() for t in topics for p in range(partitions[t])
        ]
        self.tracker = tracker
        self.interval_s = interval_s
        self.last_decision_at: float | None = None
        self.decisions_read = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._offsets = {g: clients.consumer(connection, {"group.id": g, "enable.auto.commit": False}) for g in groups}
        self._ends = clients.consumer(connection, {"group.id": "banditlp-soak-ends", "enable.auto.commit": False})
        self._decisions = clients.consumer(
            connection,
            {"group.id": "banditlp-soak-watch", "enable.auto.commit": False, "isolation.level": "read_committed"},
        )
        self._decisions.assign(
            [TopicPartition(decisions_topic, p, OFFSET_END) for p in range(partitions[decisions_topic])]
        )
        self._thread = threading.Thread(target=self._run, name="soak-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def end_offsets(self, timeout_s: float = 5.0) -> dict[Position, int]:
        """The current end (high watermark) of every watched position's partition."""
        ends: dict[tuple[str, int], int] = {}
        out = {}
        for g, t, p in self.positions:
            if (t, p) not in ends:
                ends[(t, p)] = self._ends.get_watermark_offsets(TopicPartition(t, p), timeout=timeout_s)[1]
            out[(g, t, p)] = ends[(t, p)]
        return out

    def fault(self, label: str) -> None:
        """Register a fault now, with the end offsets at this moment (retried while the broker
        does not answer: a fault registered late only makes its recovery look shorter by that)."""
        at = time.monotonic()
        for _ in range(20):
            try:
                ends = self.end_offsets()
                break
            except KafkaException:
                time.sleep(0.5)
        else:
            ends = {}
        with self._lock:
            self.tracker.fault(label, at, ends)

    def committed(self, timeout_s: float = 5.0) -> dict[Position, int]:
        out: dict[Position, int] = {}
        for g, consumer in self._offsets.items():
            tps = [TopicPartition(t, p) for gg, t, p in self.positions if gg == g]
            for tp in consumer.committed(tps, timeout=timeout_s):
                if tp.error is None:
                    out[(g, tp.topic, tp.partition)] = tp.offset
        return out

    def _read_decisions(self) -> None:
        for msg in self._decisions.consume(1000, timeout=0.05):
            if msg.error() is None:
                self.decisions_read += 1
                self.last_decision_at = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self._read_decisions()
                committed = self.committed()
                with self._lock:
                    self.tracker.observe(time.monotonic(), committed, self.last_decision_at)
                    self.tracker.expire(time.monotonic())
            except KafkaException as exc:  # the broker is restarting: skip this sample
                log.debug("monitor sample failed: %s", exc)
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    def pending(self) -> int:
        with self._lock:
            return len(self.tracker.pending)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for c in (*self._offsets.values(), self._ends, self._decisions):
            try:
                c.close()
            except (KafkaException, RuntimeError):
                pass
