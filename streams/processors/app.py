"""The faust app: the scorer (candidates -> scores) and the learner (feedback -> posteriors).

Both agents run in one app so they share its RocksDB tables, which are co-partitioned with
``candidates`` and ``feedback`` (both keyed by user_id):

- ``users``: user_id -> the user's random-effect posterior (``A``, ``b``) and digests of the
  feedback ids it has already absorbed (bounded; ``streams.learn.user_state``), so a redelivered
  feedback record updates the posterior once (faust runs at-least-once; see DESIGN.md).
- ``contexts``: "<user_id>/<slot>" -> the decision context the scorer saw for one batch
  (features, item features, the global model's mean conversion per item), in a ring of
  ``context_slots`` slots per user (``streams.learn.context_slots``): the table keeps exactly each
  user's last ``context_slots`` batches, with one write per scored user. Feedback whose
  context was overwritten or never stored is "late/unknown".

The agents themselves are in ``streams.processors.agents``; the rebalance workarounds in
``streams.processors.recovery``; the group membership in ``streams.processors.membership``.
Besides the agents' topics the worker follows two small compacted ones in background threads:
``model-snapshots`` (the scorer's model) and ``parameter-distribution`` (the tuner's arms: each
user is scored at the τ of the arm its hash falls in, ``streams.score.parameter_feed``),
dead-lettering their malformed records (``streams.score.compacted``).

With ``--policy`` naming registered policies, a third table, ``policies``, holds each policy's
snapshot per partition, keyed by the policy's name (``streams.score.policy_serving``): the
learner writes it after a take's feedback, the scorer reads it, a restart restores it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from models.random_effects import RandomEffectConfig
from streams.avro.serde import AvroSerde
from streams.dead_letters import DeadLetterSink
from streams.kafka.connection import ConnectionConfig
from streams.kafka.faust_commits import install_commit_whole_runs
from streams.kafka.topics import ensure_changelog_topics
from streams.learn.context_slots import ContextIndex
from streams.metrics import MetricsConfig, WorkerMetrics, committed_lag, start_worker_metrics
from streams.processors.agents import Processors, learn_agent, score_agent
from streams.processors.config import ProcessorConfig
from streams.processors.membership import Worker
from streams.processors.recovery import StallWatch, reseek_after_rebalance
from streams.score.model_feed import ModelFeed
from streams.score.parameter_feed import ParameterFeed
from streams.score.publisher import ScorePublisher

log = logging.getLogger("banditlp.processors")

# The faust tables: per-user posterior heads, and the decision contexts feedback joins with.
TABLES: tuple[str, ...] = ("users", "contexts")
#: The table of the registered policies' snapshots (only when the worker serves one).
POLICY_TABLE = "policies"


def tables_of(cfg: ProcessorConfig) -> tuple[str, ...]:
    """The worker's tables: ``TABLES``, and ``POLICY_TABLE`` when a registered policy serves users."""
    return TABLES if cfg.policies == ("banditlp",) else (*TABLES, POLICY_TABLE)


def build_app(
    cfg: ProcessorConfig, connection: ConnectionConfig, serde: AvroSerde, metrics: WorkerMetrics | None = None
) -> Any:
    """Build the faust app with its topics, tables, agents and the model feed; the agents record
    into ``metrics`` (its own when None)."""
    metrics = metrics if metrics is not None else WorkerMetrics()
    import faust

    datadir = cfg.state_dir / cfg.app_id
    datadir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        cfg.app_id,
        **connection.faust_options(),
        store="rocksdb://",
        # One directory per app id: faust names its RocksDB files by table and partition only, so
        # two namespaces sharing a state directory would read each other's tables (and faust
        # refuses a table whose stored changelog offset its topic does not have).
        datadir=str(datadir),
        web_enabled=cfg.web_port is not None,
        web_port=cfg.web_port or 6066,
        topic_partitions=cfg.partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        # The changelogs carry a ~2 KB context per scored user: batch them (aiokafka's defaults
        # send a request per few records) but leave them uncompressed, since compressing runs on
        # this event loop, the scorer's bottleneck (bench/bench_pipeline.py).
        producer_linger=0.005,
        producer_max_batch_size=1024 * 1024,
        producer_max_request_size=8 * 1024 * 1024,
        consumer_max_fetch_size=4 * 1024 * 1024,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        # Fast failover (streams.kafka.connection.GroupTimeouts, streams.processors.membership).
        consumer_group_instance_id=cfg.group_instance_id,
        **cfg.group.faust_options(),
        # An agent that raises (not a bad record: those are dead-lettered) stops the worker.
        # faust's default restarts the agent in place, with its take's records unacked, and the
        # worker then looks alive while its partitions stall; a worker that exits is restarted
        # by its supervisor and replays from the committed offsets.
        agent_supervisor="mode.CrashingSupervisor",
    )
    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    names = cfg.names
    keyed = {base: app.topic(names(base), partitions=cfg.partitions, **raw) for base in ("candidates", "feedback")}
    topics = {base: app.topic(names(base), **raw) for base in ("training-rows", "metrics", "dead-letters")}
    # Tables take their serializers from the app defaults (raw bytes, set above).
    users, contexts = (app.Table(name, partitions=cfg.partitions, key_type=bytes, value_type=bytes) for name in TABLES)
    # Reads of a user's slots go to the store of the event bound at the time; the index is
    # keyed by that event's partition and the user.
    context_index = ContextIndex(cfg.context_slots, contexts.get, max_users=cfg.context_index_users)
    policy_table = policy_states = None
    if POLICY_TABLE in tables_of(cfg):
        from streams.score.policy_round import Catalogue
        from streams.score.policy_serving import PolicyStates

        policy_table = app.Table(POLICY_TABLE, partitions=cfg.partitions, key_type=bytes, value_type=bytes)
        policy_states = PolicyStates(Catalogue(cfg.policy_actions), seed=cfg.seed)
    parameters = ParameterFeed(
        connection,
        serde,
        names("parameter-distribution"),
        DeadLetterSink(connection, serde, names("dead-letters"), "parameter-feed"),
    )
    p = Processors(
        cfg=cfg,
        app=app,
        serde=serde,
        feed=ModelFeed(
            connection,
            serde,
            names("model-snapshots"),
            cfg.model_name,
            feature_dim=cfg.feature_dim,
            dead_letters=DeadLetterSink(connection, serde, names("dead-letters"), "model-feed"),
        ),
        publisher=ScorePublisher(connection, names("scores")),
        users=users,
        contexts=contexts,
        topics=topics,
        context_index=context_index,
        noise_var=RandomEffectConfig(1).noise_var,
        rng=np.random.default_rng(cfg.seed),
        metrics=metrics,
        parameters=parameters,
        policy_table=policy_table,
        policy_states=policy_states,
    )

    async def forget_context_index(sender: Any, /, *_: Any, signal: Any = None, **__: Any) -> None:
        context_index.clear()
        if policy_states is not None:  # the table is the truth once partitions move
            policy_states.clear()

    app.on_partitions_revoked.connect(forget_context_index)
    app.agent(keyed["candidates"], name="score")(score_agent(p))
    app.agent(keyed["feedback"], name="learn")(learn_agent(p))

    @app.timer(interval=10.0)
    async def report() -> None:
        log.info("stats %s; model %s v%d", p.stats, p.feed.model_name, p.feed.version)

    @app.timer(interval=metrics.lag_interval_s)
    async def refresh_gauges() -> None:
        if p.feed.version >= 0:
            metrics.set_model_version(p.feed.model_name, p.feed.version)
        metrics.set_lag(faust_lag(app))

    @app.task
    async def start_feeds() -> None:
        p.feed.start()
        parameters.start()

    reseek_after_rebalance(app)
    install_commit_whole_runs(app)
    stall_watch = StallWatch(app, {names("candidates"), names("feedback")})
    app.timer(interval=cfg.stall_check_s)(stall_watch.check)
    app.banditlp_stats = p.stats  # type: ignore[attr-defined]  # for tests and debuggers
    app.banditlp_parameters = parameters  # type: ignore[attr-defined]  # for tests and debuggers
    return app


def faust_lag(app: Any) -> dict[tuple[str, int], int]:
    """Lag of this worker's assigned partitions of the agents' input topics: the consumer's cached
    high watermark (aiokafka's, from its fetches) minus the offset faust last committed for it
    (``Consumer._committed_offset``, faust's own bookkeeping: a private attribute, read defensively;
    a partition not yet committed by this worker is left out). Changelog partitions (standby or
    recovery reads) are not the agents' input and are left out too."""
    consumer = getattr(app, "_consumer", None)  # not built before the worker starts
    if consumer is None:
        return {}
    try:
        assigned = [tp for tp in consumer.assignment() if not tp.topic.endswith("-changelog")]
        high = {(tp.topic, tp.partition): consumer.highwater(tp) for tp in assigned}
    except Exception:  # a consumer between rebalances, or not started: no reading this time
        return {}
    done = getattr(consumer, "_committed_offset", {})
    return committed_lag(high, {(tp.topic, tp.partition): done.get(tp) for tp in assigned})


def run_worker(
    cfg: ProcessorConfig,
    connection: ConnectionConfig,
    serde: AvroSerde,
    loglevel: str = "info",
    metrics: MetricsConfig | None = None,
) -> None:
    """Run the faust worker until SIGTERM/SIGINT (on which it commits and leaves its group);
    ``metrics.port`` set: its instruments are served there (``streams.metrics``).

    Raises:
        ConfigError: the metrics port cannot be bound.
        BrokerError: the changelog topics could not be made.
    """
    instruments = start_worker_metrics(metrics)
    # One thread: scoring's matrix products are small, and on a machine shared with the broker
    # and the allocator a second torch thread costs more CPU than it saves time.
    torch.set_num_threads(cfg.torch_threads)
    ensure_changelog_topics(connection, cfg.app_id, tables_of(cfg), cfg.partitions)
    if cfg.policies != ("banditlp",):
        log.info("policies %s share the users; %d arms per round", ", ".join(cfg.policies), cfg.policy_actions)
    log.info(
        "processors worker on %s; group %s, %s",
        connection.redacted(),
        cfg.app_id,
        f"static member {cfg.group_instance_id}" if cfg.group_instance_id else "dynamic member",
    )
    app = build_app(cfg, connection, serde, instruments)
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
