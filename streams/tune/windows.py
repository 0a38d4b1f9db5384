"""Per-arm metrics in tumbling windows: what one record adds to its arm's window, and the windows read back.

The tune-metrics app (``streams.tune.metrics_app``) keeps two windowed faust tables keyed by arm id:

- ``arm-feedback`` (from ``metrics``, the learners' per-take feedback counts per arm): ``records``,
  ``n_feedback``, ``conversions``, ``unsubscriptions``, ``value_sum``.
- ``arm-batches`` (from ``decisions``, the LP's decisions; the fallback's carry no arm's policy and are
  left out): ``decisions`` (users decided), ``sends`` (items chosen), ``pairs`` (candidates),
  ``variance_sum`` = sum over candidates of ``p (1 - p)`` (``p`` the logged propensity, else ``x``):
  the allocation variance of ``evaluation.health.metrics`` from propensities, per pair
  ``variance_sum / pairs``; and ``overlap_sum`` / ``overlap_users``: per-user overlap@K between a
  user's decision and its previous one when both were served the same arm (the health monitor's
  definition: ``|A ∩ B| / min(K, max(|A|, |B|))`` over the top-K items by propensity, positive ones,
  ties to the smaller item id), so ``overlap_sum / overlap_users`` is the arm's mean overlap@K.

Each window value also holds ``offset``: the highest source offset it has absorbed. A table's store is
per source partition (faust writes an event's table update to that event's partition), so within one
store a record at an offset at or below its window's ``offset`` was applied already (a redelivery
after a crash) and is skipped: each record counts once. Read back (``WindowReader``), the windows of
an arm are summed over partitions and tables.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.errors import BrokerError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.score.parameter_feed import DEFAULT_VERSION, parse_parameter_version

log = logging.getLogger("banditlp.tune")

FEEDBACK_FIELDS = ("records", "n_feedback", "conversions", "unsubscriptions", "value_sum")
BATCH_FIELDS = ("decisions", "sends", "pairs", "variance_sum", "overlap_sum", "overlap_users")
#: The tables' names (their changelogs are ``<app_id>-<table>-changelog``).
FEEDBACK_TABLE, BATCH_TABLE, USERS_TABLE = "arm-feedback", "arm-batches", "last-sent"


def arm_of(parameter_version: str) -> str:
    """The arm id of a ``parameter_version`` (``"default"`` for one served no tuner arm)."""
    parsed = parse_parameter_version(parameter_version)
    return parsed[2] if parsed is not None else DEFAULT_VERSION


def feedback_increment(value: Mapping[str, Any]) -> dict[str, float]:
    """What one decoded ``metrics`` value adds to its arm's window."""
    return {
        "records": 1.0,
        "n_feedback": float(value["n_feedback"]),
        "conversions": float(value["conversions"]),
        "unsubscriptions": float(value["unsubscriptions"]),
        "value_sum": float(value["value_sum"]),
    }


def top_k(allocation: Sequence[Mapping[str, Any]], k: int) -> list[str]:
    """The top-``k`` items of one decision by propensity (``x`` where none is logged), positive only,
    ties to the smaller item id."""
    scored = [(_propensity(a), str(a["item_id"])) for a in allocation]
    return [item for p, item in sorted((-p, item) for p, item in scored if p > 0)][:k] if scored else []


def _propensity(share: Mapping[str, Any]) -> float:
    p = share.get("propensity")
    return float(share["x"] if p is None else p)


def overlap(previous: Sequence[str], current: Sequence[str], k: int) -> float | None:
    """``|A ∩ B| / min(k, max(|A|, |B|))``; None when both sets are empty."""
    denominator = min(k, max(len(previous), len(current)))
    return len(set(previous) & set(current)) / denominator if denominator else None


@dataclass(frozen=True)
class DecisionStep:
    """What one LP decision adds to its arm's window, and the user's state after it."""

    arm_id: str
    increment: dict[str, float]
    state: dict[str, Any]


def decision_increment(decision: Mapping[str, Any], previous: Mapping[str, Any] | None, k: int) -> DecisionStep | None:
    """The window increment of one decoded ``decisions`` value, given the user's stored state (its
    previous decision's id, arm and top-K items); None for a decision already counted (the same
    decision id: an aborted transaction's copy is read before the committed one, since the app reads
    read_uncommitted) or one of the fallback (no arm's policy decided it)."""
    if decision.get("policy") == "fallback":
        return None
    if previous is not None and previous.get("decision_id") == decision["decision_id"]:
        return None
    arm = arm_of(decision["parameter_version"])
    allocation = decision["allocation"]
    top = top_k(allocation, k)
    shared = None
    if previous is not None and previous.get("arm_id") == arm:
        shared = overlap(previous.get("top", []), top, k)
    p = [_propensity(a) for a in allocation]
    increment = {
        "decisions": 1.0,
        "sends": float(len(decision["chosen"])),
        "pairs": float(len(allocation)),
        "variance_sum": float(sum(q * (1.0 - q) for q in p)),
        "overlap_sum": 0.0 if shared is None else float(shared),
        "overlap_users": 0.0 if shared is None else 1.0,
    }
    return DecisionStep(arm, increment, {"decision_id": decision["decision_id"], "arm_id": arm, "top": top})


def add_to_window(window: Mapping[str, float] | None, increment: Mapping[str, float], offset: int) -> dict[str, float]:
    """``window`` plus ``increment``, its ``offset`` raised to the record's; None: a new window."""
    out = dict(window or {})
    for name, v in increment.items():
        out[name] = out.get(name, 0.0) + v
    out["offset"] = float(max(offset, int(out.get("offset", -1))))
    return out


def already_counted(window: Mapping[str, float] | None, offset: int) -> bool:
    """True when ``window`` (of the record's own source partition) has absorbed ``offset`` already."""
    return window is not None and offset <= int(window.get("offset", -1))


# -- reading the windows back ---------------------------------------------------------------


@dataclass(frozen=True)
class ArmWindow:
    """One arm's sums over one window (all partitions and both tables).

    Attributes:
        start_s, end_s: the window's range (faust's: ``end = start + size - 0.1``), seconds.
        sums: ``FEEDBACK_FIELDS`` and ``BATCH_FIELDS`` (0 where nothing was counted).
    """

    arm_id: str
    start_s: float
    end_s: float
    sums: Mapping[str, float]

    @property
    def size_s(self) -> float:
        return round(self.end_s - self.start_s + 0.1, 6)


def combine(entries: Iterable[tuple[bytes, bytes | None]]) -> dict[str, list[ArmWindow]]:
    """Per arm, its windows in start order, from the newest changelog entry of each (partition, key):
    ``(key, value)`` of faust's windowed tables (key JSON ``[arm, [start, end]]``, value JSON sums;
    a tombstone, an expired window, is left out). Entries of one window from several partitions or
    tables are summed."""
    acc: dict[tuple[str, float, float], dict[str, float]] = {}
    for key, value in entries:
        if value is None:
            continue
        try:
            arm, (start, end) = json.loads(key)
            sums = json.loads(value)
        except (ValueError, TypeError) as exc:
            log.warning("skipped a window entry %r: %s", key[:80], exc)
            continue
        into = acc.setdefault((str(arm), float(start), float(end)), {f: 0.0 for f in FEEDBACK_FIELDS + BATCH_FIELDS})
        for name, v in sums.items():
            if name != "offset":
                into[name] = into.get(name, 0.0) + float(v)
    out: dict[str, list[ArmWindow]] = {}
    for (arm, start, end), sums in sorted(acc.items()):
        out.setdefault(arm, []).append(ArmWindow(arm, start, end, sums))
    return out


def recent(windows: Mapping[str, list[ArmWindow]], n_windows: int) -> dict[str, list[ArmWindow]]:
    """Each arm's windows among the newest ``n_windows`` window lengths: those starting at or after
    ``newest start - (n_windows - 1) * size``, the newest start over every arm. An arm served no one
    since (a changed world, or an arm no longer published) thereby ages out."""
    every = [w for ws in windows.values() for w in ws]
    if not every:
        return {}
    newest = max(w.start_s for w in every)
    size = max(w.size_s for w in every)
    horizon = newest - (n_windows - 1) * size - 1e-6
    kept = {arm: [w for w in ws if w.start_s >= horizon] for arm, ws in windows.items()}
    return {arm: ws for arm, ws in kept.items() if ws}


def summed(windows: Sequence[ArmWindow]) -> dict[str, float]:
    """The sums of several windows of one arm."""
    out = {f: 0.0 for f in FEEDBACK_FIELDS + BATCH_FIELDS}
    for w in windows:
        for name, v in w.sums.items():
            out[name] = out.get(name, 0.0) + v
    return out


@dataclass
class WindowReader:
    """Follows the windowed tables' changelog topics (every partition, from the beginning) and keeps
    the newest entry of each (topic, partition, key): the windows survive the app's restarts, and the
    tuner needs neither the app's RocksDB nor its group."""

    connection: ConnectionConfig
    topics: tuple[str, ...]
    latest: dict[tuple[str, int, bytes], bytes | None] = field(default_factory=dict)
    _consumer: Any = None

    def _assign(self) -> Any:
        consumer = clients.consumer(
            self.connection, {"group.id": "banditlp-tuner-windows", "enable.auto.commit": False}
        )
        parts = []
        for topic in self.topics:
            meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                consumer.close()
                raise BrokerError(f"no changelog topic {topic}: is banditlp worker tune-metrics running?")
            parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
        consumer.assign(parts)
        return consumer

    def read(self, for_s: float) -> int:
        """Entries read in ``for_s`` seconds.

        Raises:
            BrokerError: a changelog topic does not exist (yet).
        """
        if self._consumer is None:
            self._consumer = self._assign()
        deadline = time.monotonic() + for_s
        n = 0
        while (left := deadline - time.monotonic()) > 0:
            msg = self._consumer.poll(min(left, 0.5))
            if msg is None or msg.error() or msg.key() is None:
                continue
            self.latest[(msg.topic(), msg.partition(), msg.key())] = msg.value()
            n += 1
        return n

    def windows(self) -> dict[str, list[ArmWindow]]:
        return combine((key, value) for (_, _, key), value in self.latest.items())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
