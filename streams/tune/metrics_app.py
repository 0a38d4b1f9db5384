"""The tune-metrics faust app (``banditlp worker tune-metrics``): per-arm metrics in tumbling windows.

Two agents, three RocksDB tables (``streams.tune.windows`` says what each window sums):

- ``feedback`` on ``metrics`` (one partition) -> the windowed ``arm-feedback`` table (one partition);
- ``sent`` on ``decisions`` (keyed by user) -> the per-user ``last-sent`` table (the user's previous
  decision id, arm and top-K items, co-partitioned with ``decisions``) and the windowed ``arm-batches``
  table (as many partitions as ``decisions``: faust keeps an event's table update in that event's
  partition, so each partition holds the sums of its own users; the reader adds them up).

Windows are tumbling, ``window_s`` long, by each record's Kafka timestamp (when the learner or the
allocator produced it), and expire after ``windows_kept`` windows. The tuner job reads the windowed
tables' changelogs (``streams.tune.windows.WindowReader``), not this app's stores, so it needs no
RocksDB and survives this app's restarts. Run one worker: the tables are tiny (arms x windows).

faust reads ``decisions`` read_uncommitted (its consumer is read_committed only under its
exactly-once guarantee, which the project does not use; DESIGN.md), so a decision of an aborted
allocator transaction is read too: the user's table skips the committed copy of the same decision id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from streams.avro.serde import AvroSerde
from streams.errors import ConfigError, DecodeError
from streams.kafka.connection import ConnectionConfig, GroupTimeouts
from streams.kafka.faust_commits import install_commit_whole_runs
from streams.kafka.topics import TopicNames, ensure_changelog_topics
from streams.tune.windows import (
    BATCH_TABLE,
    FEEDBACK_TABLE,
    USERS_TABLE,
    add_to_window,
    already_counted,
    decision_increment,
    feedback_increment,
)

log = logging.getLogger("banditlp.tune")


@dataclass(frozen=True)
class TuneMetricsConfig:
    """The tune-metrics app's settings.

    Attributes:
        names: topic names (prefix). app_id: the faust app id (group and changelog prefix).
        state_dir: RocksDB directory (one folder per app id below it).
        partitions: the keyed topics' partitions (``decisions``).
        window_s: tumbling window length. windows_kept: windows a table keeps before they expire.
        overlap_k: K of overlap@K.
        web_port: faust's web server (None: off).
    """

    names: TopicNames
    app_id: str
    state_dir: Path
    partitions: int = 4
    window_s: float = 300.0
    windows_kept: int = 48
    overlap_k: int = 1
    web_port: int | None = None
    group: GroupTimeouts = GroupTimeouts()

    def __post_init__(self) -> None:
        if not (self.window_s >= 1.0 and self.windows_kept >= 1 and self.overlap_k >= 1 and self.partitions >= 1):
            raise ConfigError("window_s must be >= 1 s, windows_kept, overlap_k and partitions >= 1")

    @property
    def changelogs(self) -> tuple[str, str]:
        """The windowed tables' changelog topics, read by the tuner job."""
        return (f"{self.app_id}-{FEEDBACK_TABLE}-changelog", f"{self.app_id}-{BATCH_TABLE}-changelog")


def build_app(cfg: TuneMetricsConfig, connection: ConnectionConfig, serde: AvroSerde) -> Any:
    """The faust app with its two agents and three tables."""
    import faust

    datadir = cfg.state_dir / cfg.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        cfg.app_id,
        **connection.faust_options(),
        store="rocksdb://",
        datadir=str(datadir),
        web_enabled=cfg.web_port is not None,
        web_port=cfg.web_port or 6067,
        topic_replication_factor=1,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        table_cleanup_interval=min(30.0, cfg.window_s),
        # the tables' keys and values are JSON (faust keeps a windowed key as (key, (start, end)), which raw
        # bytes cannot be); the input topics are raw bytes, decoded by our serde
        key_serializer="json",
        value_serializer="json",
        producer_acks=-1,
        agent_supervisor="mode.CrashingSupervisor",  # as the processors: an agent that raises stops the worker
        **cfg.group.faust_options(),
    )
    install_commit_whole_runs(app)
    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    metrics_topic = app.topic(cfg.names("metrics"), partitions=1, **raw)
    decisions_topic = app.topic(cfg.names("decisions"), partitions=cfg.partitions, **raw)
    expires = timedelta(seconds=cfg.window_s * cfg.windows_kept)

    def windowed(name: str, partitions: int) -> Any:
        table = app.Table(name, default=dict, partitions=partitions)
        return table.tumbling(cfg.window_s, expires=expires).relative_to_stream()

    feedback_windows = windowed(FEEDBACK_TABLE, 1)
    batch_windows = windowed(BATCH_TABLE, cfg.partitions)
    last_sent = app.Table(USERS_TABLE, partitions=cfg.partitions)
    stats = {"feedback": 0, "decisions": 0, "skipped": 0, "undecodable": 0}

    @app.agent(metrics_topic, name="feedback")
    async def feedback(stream: Any) -> None:
        async for event in stream.events():
            try:
                value = serde.decode("metrics", event.value)
            except DecodeError as exc:
                stats["undecodable"] += 1
                log.warning("skipped metrics@%d: %s", event.message.offset, exc)
                continue
            arm = str(value["arm_id"])
            window = feedback_windows[arm].value()
            if already_counted(window, event.message.offset):
                stats["skipped"] += 1
                continue
            feedback_windows[arm] = add_to_window(window, feedback_increment(value), event.message.offset)
            stats["feedback"] += 1

    @app.agent(decisions_topic, name="sent")
    async def sent(stream: Any) -> None:
        async for event in stream.events():
            try:
                value = serde.decode("decisions", event.value)
            except DecodeError as exc:
                stats["undecodable"] += 1
                log.warning("skipped decisions[%d]@%d: %s", event.message.partition, event.message.offset, exc)
                continue
            user = str(value["user_id"])
            step = decision_increment(value, last_sent.get(user), cfg.overlap_k)
            if step is None:
                continue
            window = batch_windows[step.arm_id].value()
            if already_counted(window, event.message.offset):
                stats["skipped"] += 1
                continue
            batch_windows[step.arm_id] = add_to_window(window, step.increment, event.message.offset)
            last_sent[user] = step.state
            stats["decisions"] += 1

    @app.timer(interval=30.0)
    async def report() -> None:
        log.info("tune-metrics stats %s", stats)

    app.banditlp_stats = stats  # type: ignore[attr-defined]  # for tests and debuggers
    return app


def run_worker(cfg: TuneMetricsConfig, connection: ConnectionConfig, serde: AvroSerde, loglevel: str = "info") -> None:
    """Run the app until SIGTERM/SIGINT.

    Raises:
        BrokerError: the changelog topics could not be made.
    """
    from streams.processors.membership import Worker

    # made up front with their partition counts (DESIGN.md: faust's own creation races its first write)
    ensure_changelog_topics(connection, cfg.app_id, (FEEDBACK_TABLE,), 1)
    ensure_changelog_topics(connection, cfg.app_id, (BATCH_TABLE, USERS_TABLE), cfg.partitions)
    log.info("tune-metrics worker on %s; group %s, windows of %g s", connection.redacted(), cfg.app_id, cfg.window_s)
    app = build_app(cfg, connection, serde)
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
