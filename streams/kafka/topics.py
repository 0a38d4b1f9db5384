"""The topics of DESIGN.md, their partitioning and cleanup policies, and idempotent creation.

Every topic is created with its partition count before any worker starts (faust refuses a
table whose changelog's partition count differs from its source's, and a topic auto-created
by a producer gets one partition).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic, TopicMetadata

from streams.errors import BrokerError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its base name (the Avro subject), partitions and retention.

    Attributes:
        base: the name in DESIGN.md and the schema subject (``schemas/<base>.avsc``).
        partitions: partition count; keyed topics that are joined share one count.
        compacted: ``cleanup.policy=compact`` (latest value per key kept forever).
        retention_ms: ``retention.ms`` for delete-policy topics.
    """

    base: str
    partitions: int
    compacted: bool = False
    retention_ms: int = 7 * DAY_MS

    def config(self) -> dict[str, str]:
        if self.compacted:
            return {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}


BASE_TOPICS: tuple[str, ...] = (
    "candidates",
    "batch-control",
    "scores",
    "decisions",
    "decision-contexts",
    "allocation-reports",
    "feedback",
    "training-rows",
    "model-snapshots",
    "parameter-distribution",
    "metrics",
    "dead-letters",
    "health",
)


def topic_specs(partitions: int = 4) -> tuple[TopicSpec, ...]:
    """DESIGN.md's table. candidates, feedback and decisions are keyed by user and share
    ``partitions`` so per-user state is co-partitioned; batch-control and the compacted
    topics are small and get one partition so that order is total.

    ``decision-contexts`` (key user_id, partitioned like decisions) holds what each decision was
    made from (every candidate's features, propensity, x and calibrated means), written in the
    allocator's transaction beside it, for replaying the decisions (``streams.replay``). It is
    kept 30 days, as long as batch-control (the batches' constraints): a replay reaches back 30
    days; decisions and feedback outlive it, but a decision without its context cannot be replayed.

    ``health`` (key batch_id, one partition: batches in order) holds one record per closed batch
    from the health worker (``streams.health``): its exploration and model health and alarms.
    """
    return (
        TopicSpec("candidates", partitions, retention_ms=2 * DAY_MS),
        TopicSpec("batch-control", 1, retention_ms=30 * DAY_MS),
        TopicSpec("scores", partitions, retention_ms=2 * DAY_MS),
        TopicSpec("decisions", partitions, retention_ms=90 * DAY_MS),
        TopicSpec("decision-contexts", partitions, retention_ms=30 * DAY_MS),
        TopicSpec("allocation-reports", 1, retention_ms=90 * DAY_MS),
        TopicSpec("feedback", partitions, retention_ms=90 * DAY_MS),
        TopicSpec("training-rows", partitions, retention_ms=30 * DAY_MS),
        TopicSpec("model-snapshots", 1, compacted=True),
        TopicSpec("parameter-distribution", 1, compacted=True),
        TopicSpec("metrics", 1, retention_ms=30 * DAY_MS),
        TopicSpec("dead-letters", 1, retention_ms=30 * DAY_MS),
        TopicSpec("health", 1, retention_ms=90 * DAY_MS),
    )


@dataclass(frozen=True)
class TopicNames:
    """Real topic names: the base name behind an optional prefix (one namespace per run or test)."""

    prefix: str = ""

    def __call__(self, base: str) -> str:
        return f"{self.prefix}{base}"


def _listed_topics(admin: AdminClient, connection: ConnectionConfig, timeout_s: float) -> dict[str, TopicMetadata]:
    """The broker's topics by name; an unreachable broker is a ``BrokerError``."""
    try:
        return admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {connection.bootstrap_servers}: {exc}") from exc


def create_topics(
    connection: ConnectionConfig, names: TopicNames, specs: tuple[TopicSpec, ...], timeout_s: float = 30.0
) -> dict[str, str]:
    """Create every topic that does not exist yet; returns ``{topic: "created" | "exists"}``.

    An existing topic with fewer partitions than asked is an error, not silently accepted.
    """
    admin = clients.admin(connection)
    existing = _listed_topics(admin, connection, timeout_s)
    outcome: dict[str, str] = {}
    new = []
    for spec in specs:
        name = names(spec.base)
        if name in existing:
            have = len(existing[name].partitions)
            if have != spec.partitions:
                raise BrokerError(f"topic {name} exists with {have} partitions, expected {spec.partitions}")
            outcome[name] = "exists"
        else:
            new.append(NewTopic(name, num_partitions=spec.partitions, replication_factor=1, config=spec.config()))
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout=timeout_s)
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    outcome[name] = "exists"
                else:
                    raise BrokerError(f"cannot create topic {name}: {exc}") from exc
    return outcome


def delete_topics(connection: ConnectionConfig, prefix: str, timeout_s: float = 60.0) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (the run's own and faust's changelogs).

    Returns the deleted names, sorted. An empty prefix is refused: it would name every topic,
    the broker's internal ones included. A broker keeps every partition of every topic it ever
    created, and one with thousands of them takes minutes to restart, so test and demo
    namespaces are meant to be deleted when done.

    Raises:
        BrokerError: the prefix is empty, the broker does not answer, or a deletion failed.
    """
    if not prefix:
        raise BrokerError("refusing to delete topics with an empty prefix")
    admin = clients.admin(connection)
    names = sorted(t for t in _listed_topics(admin, connection, timeout_s) if t.startswith(prefix))
    if not names:
        return []
    failed = []
    for name, fut in admin.delete_topics(names, operation_timeout=timeout_s).items():
        try:
            fut.result(timeout=timeout_s)
        except KafkaException as exc:
            if not (exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                failed.append(f"{name}: {exc}")
    if failed:
        raise BrokerError("cannot delete topics:\n" + "\n".join(failed))
    return names


def ensure_changelog_topics(
    connection: ConnectionConfig, app_id: str, tables: tuple[str, ...], partitions: int, timeout_s: float = 60.0
) -> None:
    """Create a faust app's table changelogs (``<app_id>-<table>-changelog``, compacted, with
    the source topics' ``partitions``) unless they exist, and wait until the broker lists them.

    Why: faust creates them itself at start-up, but its metadata can still show the new topic
    with 0 partitions when the first table write checks it; the agent then crashes with
    PartitionsMismatch and, restarted, stays stuck while the worker looks alive. Made up
    front, the topics are in the first metadata faust reads.

    Raises:
        BrokerError: the broker does not answer, a changelog exists with another partition
            count, or the topics are not listed within ``timeout_s``.
    """
    specs = tuple(TopicSpec(f"{app_id}-{table}-changelog", partitions, compacted=True) for table in tables)
    create_topics(connection, TopicNames(), specs, timeout_s=timeout_s)
    admin = clients.admin(connection)
    deadline = time.monotonic() + timeout_s
    while True:
        listed = _listed_topics(admin, connection, timeout_s)
        if all(s.base in listed and len(listed[s.base].partitions) == partitions for s in specs):
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"changelog topics not listed with {partitions} partitions within {timeout_s:.0f} s: "
                + ", ".join(s.base for s in specs)
            )
        time.sleep(0.2)
