"""Consumer lag per partition: the high watermark minus what the worker has committed.

For a confluent-kafka consumer the high watermarks are librdkafka's cached ones
(``get_watermark_offsets(cached=True)``: from the last fetch response, no broker round trip;
for a read_committed consumer that is the last stable offset), and the committed offsets are the
caller's (the allocator commits in its transactions and knows them) or, where it has none, the
consumer's ``position`` (the next offset it will read: the trainer keeps no offsets). faust's
aiokafka consumer gives the same pair (``streams.processors.app``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TP = tuple[str, int]


def committed_lag(high: Mapping[TP, int], committed: Mapping[TP, int | None]) -> dict[TP, int]:
    """``high - committed`` per partition known on both sides (negative offsets mean unknown to
    librdkafka), at least 0: a watermark cached before the last commit can trail it."""
    out: dict[TP, int] = {}
    for tp, hi in high.items():
        done = committed.get(tp)
        if hi is None or hi < 0 or done is None or done < 0:
            continue
        out[tp] = max(0, int(hi) - int(done))
    return out


def confluent_lag(consumer: Any, committed: Mapping[TP, int] | None = None) -> dict[TP, int]:
    """Lag of every partition assigned to ``consumer`` (a ``confluent_kafka.Consumer``):
    against ``committed`` where it names the partition, else against the consumer's position."""
    assigned = consumer.assignment()
    if not assigned:
        return {}
    high = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, cached=True)[1] for tp in assigned}
    done: dict[TP, int | None] = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(assigned)}
    if committed:
        done.update({tp: off for tp, off in committed.items() if tp in done})
    return committed_lag(high, done)
