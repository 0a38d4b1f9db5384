"""Reading a topic namespace's logs from Kafka for a replay: bounded, read_committed, decoded at the edge.

The four topics a replay joins (batch-control, decision-contexts, decisions, feedback) are each
read from the beginning to the end offsets they have when the read starts
(``streams.kafka.reading.read_to_end``: committed records only, so an open or aborted allocator
transaction is never seen). Every record is decoded with the process's serde into a typed value;
one that cannot be decoded or validated is dead-lettered (consumer ``replay``) and counted, and
the read goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from streams.avro.serde import AvroSerde
from streams.dead_letters import dead_letter
from streams.errors import DecodeError, DeliveryError, ValidationError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.reading import read_to_end
from streams.kafka.topics import TopicNames
from streams.records import BatchControlRecord, FeedbackRecord
from streams.replay.log import MissingFeedback, ReplayLog, join_logs
from streams.replay.records import ContextRecord, DecisionRecord

log = logging.getLogger("banditlp.replay")

CONSUMER_NAME = "replay"
#: The topics a replay reads, and the typed value each record becomes.
READERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "batch-control": BatchControlRecord.from_avro,
    "decision-contexts": ContextRecord.from_avro,
    "decisions": DecisionRecord.from_avro,
    "feedback": FeedbackRecord.from_avro,
}


@dataclass
class LoggedRecords:
    """The typed records of each topic, and the ones that could not be used.

    Attributes:
        records: base topic name -> its typed values, in read order.
        invalid: base topic name -> how many records were dead-lettered.
        examples: the first few reasons.
    """

    records: dict[str, list[Any]] = field(default_factory=lambda: {t: [] for t in READERS})
    invalid: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def read_logged_records(
    connection: ConnectionConfig,
    serde: AvroSerde,
    names: TopicNames,
    *,
    timeout_s: float = 300.0,
    dead_letters: bool = True,
) -> LoggedRecords:
    """Read and decode the four topics of namespace ``names`` (module docstring).

    Args:
        connection: the cluster.
        serde: the process's serde.
        names: the namespace (its prefix) whose topics are read.
        timeout_s: the longest each topic's read may take.
        dead_letters: dead-letter the records that cannot be used (to the namespace's
            ``dead-letters``), besides counting them.

    Raises:
        BrokerError: a topic does not exist or was not read to its end within ``timeout_s``.
        DeliveryError: the dead letters were not acknowledged.
    """
    out = LoggedRecords()
    producer: Producer | None = None
    for base, make in READERS.items():
        topic = names(base)
        for msg in read_to_end(connection, topic, timeout_s=timeout_s):
            _, partition, offset = clients.position(msg)
            try:
                out.records[base].append(
                    make(serde.decode(base, msg.value(), topic=topic, partition=partition, offset=offset))
                )
            except (DecodeError, ValidationError, KeyError, TypeError, ValueError) as exc:
                error = exc if isinstance(exc, DecodeError | ValidationError) else ValidationError(f"malformed: {exc}")
                out.invalid[base] = out.invalid.get(base, 0) + 1
                if len(out.examples) < 5:
                    out.examples.append(f"{topic}[{partition}]@{offset}: {error}")
                if dead_letters:
                    if producer is None:
                        producer = clients.producer(connection, {"enable.idempotence": True, "linger.ms": 5})
                    value = dead_letter(
                        serde,
                        source_topic=topic,
                        partition=partition,
                        offset=offset,
                        key=msg.key(),
                        value=msg.value(),
                        error=error,
                        consumer=CONSUMER_NAME,
                    )
                    clients.produce(producer, names("dead-letters"), value, topic.encode())
        log.info("read %s: %d records", topic, len(out.records[base]))
    if producer is not None and producer.flush(timeout_s) > 0:
        raise DeliveryError(f"dead letters of the replay were not acknowledged within {timeout_s:g} s")
    return out


def read_log(
    connection: ConnectionConfig,
    serde: AvroSerde,
    names: TopicNames,
    *,
    timeout_s: float = 300.0,
    missing_feedback: MissingFeedback = "exclude",
    dead_letters: bool = True,
) -> ReplayLog:
    """The joined log of namespace ``names`` (``read_logged_records`` then ``streams.replay.log.join_logs``).

    Raises:
        BrokerError, DeliveryError: as :func:`read_logged_records`.
        ReplayInputError: no decision could be joined.
    """
    read = read_logged_records(connection, serde, names, timeout_s=timeout_s, dead_letters=dead_letters)
    r = read.records
    return join_logs(
        r["batch-control"],
        r["decision-contexts"],
        r["decisions"],
        r["feedback"],
        missing_feedback=missing_feedback,
        invalid_records=read.invalid,
        examples=read.examples,
    )
