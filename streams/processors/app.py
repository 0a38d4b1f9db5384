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

Records are taken from Kafka as raw bytes and decoded with our serde, so a bad record
becomes a dead letter instead of a crash loop (faust's own decoder would restart the agent).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from banditlp.errors import BanditLPError
from models import random_effects
from models.random_effects import RandomEffectConfig
from streams.avro.columns import ScoredItems
from streams.learn.context_slots import ContextIndex
from streams.dead_letters import dead_letter
from streams.errors import DecodeError, DeliveryError, ValidationError
from streams.score.model_feed import ModelFeed
from streams.records import CandidatesRecord, FeedbackRecord
from streams.score.publisher import ScorePublisher
from streams.score.model import ScoringModel
from streams.avro.serde import AvroSerde
from streams.learn.state_codec import pack, unpack
from streams.kafka.topics import TopicNames, ensure_changelog_topics
from streams.learn.user_state import UserState

log = logging.getLogger("banditlp.processors")

# The faust tables: per-user posterior heads, and the decision contexts feedback joins with.
TABLES: tuple[str, ...] = ("users", "contexts")


@dataclass(frozen=True)
class ProcessorConfig:
    """Settings of one scorer/learner worker.

    Attributes:
        app_id: faust app id (consumer group and changelog prefix).
        tau: Thompson temperature (posterior covariance scale) for users with no tuner arm.
        take: how many records an agent scores or learns from at once (vectorised).
        within_s: how long an agent waits to fill ``take``.
        context_slots: recent batches per user whose decision context is kept (the retention
            bound of the decision contexts; feedback older than that is dead-lettered as late).
        context_index_users: users whose slot index is cached in memory (LRU); a user not in
            it costs ``context_slots`` table reads when next scored or learned from.
        seen_limit: feedback ids per user remembered for deduplication.
        feature_dim: width of the pair features when no model snapshot exists yet (the cold-start
            prior's input); None takes the width of the first candidates record scored.
        model_wait_s: at start, how long the scorer waits for the model feed to read the
            snapshots topic to its end, so it scores with the newest model, not the prior.
        torch_threads: intra-op threads of the scoring model (``torch.set_num_threads``).
        stall_check_s: how often ``StallWatch`` looks for an input partition nobody reads.
    """

    bootstrap: str
    names: TopicNames
    state_dir: Path
    partitions: int = 4
    app_id: str = "banditlp-processors"
    tau: float = 1.0
    model_name: str = "email"
    take: int = 500
    within_s: float = 0.05
    context_slots: int = 8
    context_index_users: int = 100_000
    seen_limit: int = 256
    max_candidates: int = 1_000
    random_effect_prior_precision: float = 25.0
    seed: int = 0
    web_port: int | None = None
    feature_dim: int | None = None
    model_wait_s: float = 30.0
    torch_threads: int = 1
    stall_check_s: float = 15.0


@dataclass
class ProcessorStats:
    """Counters, logged periodically."""

    scored_users: int = 0
    scored_pairs: int = 0
    feedback_applied: int = 0
    feedback_duplicate: int = 0
    feedback_unknown: int = 0
    dead_letters: int = 0
    started: float = field(default_factory=time.monotonic)


def build_app(cfg: ProcessorConfig):
    """Build the faust app with its topics, tables, agents and the model feed."""
    import faust

    app = faust.App(
        cfg.app_id,
        broker=f"kafka://{cfg.bootstrap}",
        store="rocksdb://",
        datadir=str(cfg.state_dir),
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
        # An agent that raises (not a bad record: those are dead-lettered) stops the worker.
        # faust's default restarts the agent in place, with its take's records unacked, and the
        # worker then looks alive while its partitions stall; a worker that exits is restarted
        # by its supervisor and replays from the committed offsets.
        agent_supervisor="mode.CrashingSupervisor",
    )
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    names = cfg.names
    candidates_topic = app.topic(names("candidates"), partitions=cfg.partitions, **raw)
    feedback_topic = app.topic(names("feedback"), partitions=cfg.partitions, **raw)
    publisher = ScorePublisher(cfg.bootstrap, names("scores"))
    training_topic = app.topic(names("training-rows"), **raw)
    metrics_topic = app.topic(names("metrics"), **raw)
    dead_topic = app.topic(names("dead-letters"), **raw)
    # Tables take their serializers from the app defaults (raw bytes, set above).
    users, contexts = (app.Table(name, partitions=cfg.partitions, key_type=bytes, value_type=bytes)
                       for name in TABLES)

    serde = AvroSerde()
    feed = ModelFeed(cfg.bootstrap, names("model-snapshots"), cfg.model_name, feature_dim=cfg.feature_dim)
    stats = ProcessorStats()
    rng = np.random.default_rng(cfg.seed)

    async def reject(event: Any, exc: BaseException, consumer: str) -> None:
        msg = event.message
        stats.dead_letters += 1
        await dead_topic.send(key=msg.topic.encode(), value=dead_letter(
            serde, source_topic=msg.topic, partition=msg.partition, offset=msg.offset,
            key=msg.key, value=msg.value, error=exc, consumer=consumer))

    noise_var = RandomEffectConfig(1).noise_var
    # Reads of a user's slots go to the store of the event bound at the time; the index is
    # keyed by that event's partition and the user.
    context_index = ContextIndex(cfg.context_slots, contexts.get, max_users=cfg.context_index_users)

    async def forget_context_index(sender: Any = None, *_: Any, **__: Any) -> None:
        context_index.clear()

    app.on_partitions_revoked.connect(forget_context_index)

    def user_state(user_id: str, k: int) -> UserState:
        """The user's head; the user's event must be bound (a read goes to its partition's store)."""
        data = users.get(user_id.encode())
        if data is None:
            return UserState.prior(k, cfg.random_effect_prior_precision)
        return UserState.decode(data)

    @app.agent(candidates_topic)
    async def score(stream):  # noqa: ANN001 - faust's stream type
        await feed.wait_caught_up(cfg.model_wait_s)
        async for events in stream.take_events(cfg.take, within=cfg.within_s):
            records: list[tuple[Any, CandidatesRecord]] = []
            model = None  # one model per take: a snapshot swapped in meanwhile serves the next one
            for event in events:
                msg = event.message
                try:
                    value = serde.decode("candidates", msg.value, topic=msg.topic,
                                         partition=msg.partition, offset=msg.offset)
                    rec = CandidatesRecord.from_avro(value, cfg.max_candidates)
                    width = rec.features.shape[1]
                    if model is None:
                        model = feed.model_for(width)  # raises when the width is not the model's
                    elif width != model.feature_dim:
                        raise ValidationError(f"{width} features, but model {model.name} "
                                              f"v{model.version} expects {model.feature_dim}")
                except (DecodeError, ValidationError, BanditLPError) as exc:
                    await reject(event, exc, "scorer")
                    continue
                records.append((event, rec))
            if not records:
                continue
            def bound_user_state(i: int, k: int) -> UserState:
                event, rec = records[i]
                _bind_event(event)
                return user_state(rec.user_id, k)

            def claim_slot(i: int) -> tuple[bytes, int]:
                event, rec = records[i]
                _bind_event(event)
                return context_index.claim(event.message.partition, rec.user_id, rec.batch_id)

            scored = score_records([r for _, r in records], bound_user_state, model, cfg.tau, rng, claim_slot)
            for (event, rec), value, (key, context) in zip(records, scored.values, scored.contexts):
                _bind_event(event)  # the write goes to this event's changelog partition
                contexts[key] = context
                publisher.publish(rec.batch_id.encode(), serde.encode("scores", value))
            # faust acks the take's events after this body: their scores must be on the topic first
            try:
                await publisher.flushed()
            except DeliveryError as exc:  # stop with the take unacked: a restart re-scores it
                log.critical("%s; stopping the worker", exc)
                await app.crash(exc)
                return
            stats.scored_users += len(records)
            stats.scored_pairs += scored.n_pairs

    @app.agent(feedback_topic)
    async def learn(stream):  # noqa: ANN001
        async for events in stream.take_events(cfg.take, within=cfg.within_s):
            metric = {"n": 0, "conv": 0, "unsub": 0, "value": 0.0}
            for event in events:
                msg = event.message
                _bind_event(event)  # table reads and writes below go to this event's partition
                try:
                    fb = FeedbackRecord.from_avro(serde.decode("feedback", msg.value, topic=msg.topic,
                                                               partition=msg.partition, offset=msg.offset))
                except (DecodeError, ValidationError) as exc:
                    await reject(event, exc, "learner")
                    continue
                key = context_index.find(msg.partition, fb.user_id, fb.batch_id)
                ctx_bytes = contexts.get(key) if key is not None else None
                ctx = unpack(ctx_bytes) if ctx_bytes is not None else None
                if ctx is None or ctx[1]["batch_id"] != fb.batch_id or fb.item_id not in ctx[1]["items"]:
                    stats.feedback_unknown += 1
                    await reject(event, ValidationError(
                        f"no decision context for {fb.feedback_id} (unknown decision id; or late: "
                        f"older than the last {cfg.context_slots} batches of this user; or feedback "
                        f"keyed or partitioned unlike candidates: key by user_id, murmur2 partitioner)"),
                        "learner")
                    continue
                arrays, meta = ctx
                j = meta["items"].index(fb.item_id)
                k = arrays["item_features"].shape[1]
                state = user_state(fb.user_id, k)
                if state.has_seen(fb.feedback_id):
                    stats.feedback_duplicate += 1
                    continue
                A, b = state.A, state.b
                if k:
                    residual = float(fb.converted) - float(arrays["p_conversion"][j])
                    A, b = random_effects.update(A, b, arrays["item_features"][j:j + 1].astype(np.float64),
                                                 np.array([residual]), noise_var)
                users[fb.user_id.encode()] = state.absorbed(A, b, fb.feedback_id, cfg.seen_limit).encode()
                stats.feedback_applied += 1
                metric["n"] += 1
                metric["conv"] += int(fb.converted)
                metric["unsub"] += int(fb.unsubscribed)
                metric["value"] += fb.value
                await training_topic.send(key=fb.user_id.encode(), value=serde.encode("training-rows", {
                    "decision_id": fb.decision_id, "batch_id": fb.batch_id, "user_id": fb.user_id,
                    "item_id": fb.item_id, "features": arrays["features"][j].tolist(),
                    "converted": fb.converted, "unsubscribed": fb.unsubscribed, "value": fb.value,
                    "model_version": int(meta["model_version"]), "observed_at_ms": fb.observed_at_ms,
                }))
            if metric["n"]:
                now = int(time.time() * 1000)
                await metrics_topic.send(key=b"default", value=serde.encode("metrics", {
                    "arm_id": "default", "window_start_ms": now, "window_end_ms": now,
                    "n_feedback": metric["n"], "conversions": metric["conv"],
                    "unsubscriptions": metric["unsub"], "value_sum": metric["value"]}))

    @app.timer(interval=10.0)
    async def report() -> None:
        log.info("stats %s; model %s v%d", stats, feed.model_name, feed.version)

    @app.task
    async def start_feed() -> None:
        feed.start()

    _reseek_after_rebalance(app)
    stall_watch = StallWatch(app, {names("candidates"), names("feedback")})
    app.timer(interval=cfg.stall_check_s)(stall_watch.check)
    app.banditlp_stats = stats  # type: ignore[attr-defined]
    return app


def _reseek_after_rebalance(app: Any, settle_s: float = 0.5, timeout_s: float = 120.0) -> None:
    """Once each rebalance is over, seek the input partitions to their committed offsets again.

    Why: faust resumes the stream partitions, seeks them to the committed offsets and only
    then reopens its flow control. Records its fetcher already holds from before the seek are
    still delivered in that gap: the stream skips them (flow closed), but their offsets have
    become the consumer's read offsets, so the same records fetched again after the seek are
    dropped as already read. A restarted worker with records waiting on its partitions then
    never scores them (seen here in about one start in five; faust-streaming issues #216 and
    #596 describe the race). A second seek, with the flow open, re-reads from the committed
    offsets: at worst a few records are processed twice, which every consumer downstream
    tolerates (the allocator keeps the first scores record of a (batch, user), the learner
    drops a feedback id it has seen).
    """
    async def reseek() -> None:
        deadline = time.monotonic() + timeout_s
        while app.rebalancing or not app.flow_control.is_active():
            if time.monotonic() > deadline:
                log.warning("rebalance did not end within %.0f s; input partitions not re-seeked", timeout_s)
                return
            await asyncio.sleep(0.1)
        await asyncio.sleep(settle_s)
        if not app.rebalancing:
            await app.consumer.perform_seek()
            log.info("input partitions re-seeked to their committed offsets after the rebalance")

    async def on_rebalance_complete(sender: Any = None, **_: Any) -> None:
        asyncio.ensure_future(reseek())

    app.on_rebalance_complete.connect(on_rebalance_complete)


class StallWatch:
    """Seeks the input partitions back to their committed offsets when one is stuck: it has
    records past its committed offset (highwater > committed) and its committed offset did
    not move between two checks, with no rebalance in between.

    Why: the race ``_reseek_after_rebalance`` answers may strike at any rebalance, including
    one that starts while records are in flight. Records it skips are not committed, so they
    are not lost, but they would sit unread until the next rebalance. (It has not fired in our
    runs: what left users unscored or feedback unlearned when a worker joined mid-batch was the
    context index's cache key and faust's changelog creation, both fixed; see the README.)
    A partition that progresses commits every ``broker_commit_interval`` (1 s), so a whole
    check interval without a commit while behind means nothing is reading it.
    """

    def __init__(self, app: Any, topics: set[str]) -> None:
        self.app, self.topics = app, topics
        self._last: dict[Any, int] = {}  # tp -> committed offset at the last check, if behind
        self.seeks = 0

    async def check(self) -> None:
        app = self.app
        if app.rebalancing or not app.flow_control.is_active():
            self._last = {}
            return
        consumer = app.consumer
        behind: dict[Any, int] = {}
        for tp in consumer.assignment():
            if tp.topic not in self.topics:
                continue
            committed, high = consumer._committed_offset.get(tp), consumer.highwater(tp)
            if committed is not None and high is not None and high > committed:
                behind[tp] = committed
        stuck = sorted(f"{tp.topic}[{tp.partition}]@{off}" for tp, off in behind.items() if self._last.get(tp) == off)
        self._last = behind
        if stuck:
            log.warning("input partitions stuck behind their highwater: %s; seeking to committed offsets",
                        ", ".join(stuck))
            self.seeks += 1
            self._last = {}
            await consumer.perform_seek()


def _bind_event(event: Any) -> None:
    """Make ``event`` the current event of this agent's task, for the table write that follows.

    A table write needs a current event to pick its changelog partition (the event's own),
    and take_events() leaves none. Only the task-local context variable is set: setting the
    stream's ``current_event`` attribute instead races with take_events' buffer filler, which
    reads it, and makes it buffer a stale event in place of a new one.
    """
    import faust.streams

    faust.streams._current_event.set(weakref.ref(event))


@dataclass(frozen=True)
class ScoredBatch:
    """Scores values (Avro dicts), per user the (table key, context bytes) to store, and the
    pair count."""

    values: list[dict[str, Any]]
    contexts: list[tuple[bytes, bytes]]
    n_pairs: int


def score_records(records: list[CandidatesRecord], user_state: Callable[[int, int], UserState],
                  model: ScoringModel, tau: float, rng: np.random.Generator,
                  claim_slot: Callable[[int], tuple[bytes, int]]) -> ScoredBatch:
    """Score many users at once: one vectorised pass of the global model over all pairs,
    one batched draw of every user's random effect, calibration, then per-user records.
    Every record's feature width is ``model.feature_dim`` (the agent checked it).
    ``user_state(i, k)`` is the head of ``records[i]``'s user; ``claim_slot(i) -> (key, seq)``
    says where ``records[i]``'s context goes (``ContextIndex.claim``). Both take the record's
    position, not its user id: two records of one user in one take may come from different
    partitions, and each must read and claim in its own.

    The ``scores`` values are Avro dicts whose ``items`` is a ``ScoredItems`` (columns that
    read as the list of item dicts the schema describes); no per-pair Python object is built.
    """
    sizes = np.fromiter((len(r.item_ids) for r in records), dtype=np.int64, count=len(records))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    X = np.concatenate([r.features for r in records])

    effect = None
    k = records[0].item_features.shape[1]
    if k and all(r.item_features.shape[1] == k for r in records):
        states = [user_state(i, k) for i in range(len(records))]
        A = np.stack([s.A for s in states])
        b = np.stack([s.b for s in states])
        w = random_effects.sample_effects(A, b, tau, rng)                         # (n_users, k)
        w_mean = random_effects.posterior_mean(A, b)
        Z = np.concatenate([r.item_features for r in records]).astype(np.float64)  # (n_pairs, k)
        owner = np.repeat(np.arange(len(records)), sizes)
        effect = (np.einsum("pk,pk->p", Z, w[owner]), np.einsum("pk,pk->p", Z, w_mean[owner]))
    out = model.score(X, tau, rng, conversion_effect=effect)  # calibrated, (n_pairs,) per outcome

    # The scored items as columns: their fixed-layout part (three maps of doubles) is encoded
    # here for all pairs at once; the serde then only adds each item's two id strings.
    items = ScoredItems.split([r.item_ids for r in records], [r.provider_ids for r in records],
                              out.samples, out.means, out.stds, offsets)
    now = int(time.time() * 1000)
    values = [{"batch_id": rec.batch_id, "user_id": rec.user_id, "user_cap": rec.user_cap, "scored_at_ms": now,
               "model_name": model.name, "model_version": model.version, "parameter_version": "default",
               "tau": float(tau), "items": scored}
              for rec, scored in zip(records, items)]
    bounds = offsets.tolist()
    contexts = []
    for u, rec in enumerate(records):
        key, seq = claim_slot(u)
        contexts.append((key, pack({"features": rec.features, "item_features": rec.item_features,
                                    "p_conversion": out.fixed_conversion_mean[bounds[u]:bounds[u + 1]]},
                                   {"batch_id": rec.batch_id, "seq": seq, "items": list(rec.item_ids),
                                    "model_version": model.version})))
    return ScoredBatch(values, contexts, bounds[-1])


def run_worker(cfg: ProcessorConfig, loglevel: str = "info") -> None:
    """Run the faust worker until SIGTERM/SIGINT."""
    import faust

    # One thread: scoring's matrix products are small, and on a machine shared with the broker
    # and the allocator a second torch thread costs more CPU than it saves time.
    torch.set_num_threads(cfg.torch_threads)
    ensure_changelog_topics(cfg.bootstrap, cfg.app_id, TABLES, cfg.partitions)
    app = build_app(cfg)
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
