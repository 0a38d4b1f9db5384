"""The faust agents, thin: decode -> a pure call (``score.batch``, ``learn.update``) -> encode -> table write.

Both agents take raw bytes from Kafka and decode them with the project's serde, so a bad record
becomes a dead letter instead of a crash loop (faust's own decoder would restart the agent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from banditlp.errors import BanditLPError
from streams.avro.serde import AvroSerde
from streams.dead_letters import dead_letter
from streams.errors import DecodeError, DeliveryError, ValidationError
from streams.learn.context_slots import ContextIndex
from streams.learn.policy_update import learn_policy
from streams.learn.state_codec import unpack_meta
from streams.learn.update import DecisionContext, FeedbackMetrics, learn
from streams.learn.user_state import UserState
from streams.metrics import WorkerMetrics
from streams.processors.config import ProcessorConfig
from streams.processors.recovery import bind_event
from streams.records import CandidatesRecord, FeedbackRecord
from streams.score.batch import score_records
from streams.score.model import ScoreArrays
from streams.score.model_feed import ModelFeed
from streams.score.parameter_feed import DEFAULT_VERSION, ParameterFeed, ServedArms, parse_parameter_version
from streams.score.policy_serving import BANDITLP, PolicyMix, PolicyStates, serve_policies
from streams.score.publisher import ScorePublisher

log = logging.getLogger("banditlp.processors")

Agent = Callable[[Any], Coroutine[Any, Any, None]]


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


@dataclass
class Processors:
    """What both agents share: the app's tables and topics, the serde, the model feed and the stats.

    ``users`` and ``contexts`` are faust tables (dict-like, reads and writes go to the store and
    changelog of the current event's partition); so is ``policy_table``, the registered policies'
    snapshots (None, with ``policy_states``, when the worker serves ``banditlp`` alone).
    """

    cfg: ProcessorConfig
    app: Any
    serde: AvroSerde
    feed: ModelFeed
    publisher: ScorePublisher
    users: Any
    contexts: Any
    topics: dict[str, Any]
    context_index: ContextIndex
    noise_var: float
    rng: np.random.Generator
    stats: ProcessorStats = field(default_factory=ProcessorStats)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    parameters: ParameterFeed | None = None
    policy_table: Any = None
    policy_states: PolicyStates | None = None

    def __post_init__(self) -> None:
        self.mix = PolicyMix(self.cfg.policies)

    def policy(self, event: Any, name: str, dim: int) -> Any:
        """The live policy ``name`` of ``event``'s partition (restored from its store when not
        cached); binds ``event``."""
        assert self.policy_states is not None
        bind_event(event)
        key = name.encode()
        return self.policy_states.get(event.message.partition, name, dim, lambda: self.policy_table.get(key))

    def served(self, user_ids: list[str]) -> ServedArms:
        """Each user's tuner arm in the newest distribution of the worker's experiment (its τ and
        parameter version); every user at the configured τ under "default" when there is none."""
        held = self.parameters.distribution(self.cfg.experiment) if self.parameters is not None else None
        if held is None:
            return ServedArms.default(len(user_ids), self.cfg.tau)
        return held.serve(user_ids, self.cfg.tau)

    async def reject(self, event: Any, exc: BaseException, consumer: str) -> None:
        """Send ``event``'s record to dead-letters with ``exc`` as the reason."""
        msg = event.message
        self.stats.dead_letters += 1
        self.metrics.dead_lettered(msg.topic, type(exc).__name__)
        self.metrics.produced(self.cfg.names("dead-letters"))
        await self.topics["dead-letters"].send(
            key=msg.topic.encode(),
            value=dead_letter(
                self.serde,
                source_topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                key=msg.key,
                value=msg.value,
                error=exc,
                consumer=consumer,
            ),
        )

    def user_state(self, user_id: str, k: int) -> UserState:
        """The user's head; the user's event must be bound (a read goes to its partition's store)."""
        data = self.users.get(user_id.encode())
        if data is None:
            return UserState.prior(k, self.cfg.random_effect_prior_precision)
        return UserState.decode(data)


def score_agent(p: Processors) -> Agent:
    """candidates -> scores (published by ``p.publisher``) and a decision context per user."""
    cfg = p.cfg
    scores_topic = cfg.names("scores")

    async def score(stream: Any) -> None:
        await p.feed.wait_caught_up(cfg.model_wait_s)
        if p.parameters is not None:  # the newest distribution, not the first one read, serves the first take
            await p.parameters.wait_caught_up(cfg.model_wait_s)
        events: list[Any]
        async for events in stream.take_events(cfg.take, within=cfg.within_s):
            started = time.perf_counter()
            if events:
                p.metrics.consumed(events[0].message.topic, len(events))
            records: list[tuple[Any, CandidatesRecord]] = []
            model = None  # one model per take: a snapshot swapped in meanwhile serves the next one
            for event in events:
                msg = event.message
                try:
                    rec = CandidatesRecord.from_avro(
                        p.serde.decode(
                            "candidates", msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset
                        ),
                        cfg.max_candidates,
                    )
                    width = rec.features.shape[1]
                    if model is None:
                        model = p.feed.model_for(width)  # raises when the width is not the model's
                    elif width != model.feature_dim:
                        raise ValidationError(
                            f"{width} features, but model {model.name} v{model.version} expects {model.feature_dim}"
                        )
                except (DecodeError, ValidationError, BanditLPError) as exc:
                    await p.reject(event, exc, "scorer")
                    continue
                records.append((event, rec))
            if not records or model is None:
                continue

            # Both callbacks take the record's position: two records of one user in one take may
            # come from different partitions, and each must read and claim in its own.
            def bound_user_state(i: int, k: int, records: list[tuple[Any, CandidatesRecord]] = records) -> UserState:
                event, rec = records[i]
                bind_event(event)
                return p.user_state(rec.user_id, k)

            def claim_slot(i: int, records: list[tuple[Any, CandidatesRecord]] = records) -> tuple[bytes, int]:
                event, rec = records[i]
                bind_event(event)
                return p.context_index.claim(event.message.partition, rec.user_id, rec.batch_id)

            served = p.served([r.user_id for _, r in records])  # one distribution per take, as the model
            scored = score_records(
                [r for _, r in records],
                bound_user_state,
                model,
                served.taus,
                p.rng,
                claim_slot,
                n_draws=cfg.n_draws,
                parameter_versions=served.parameter_versions,
                serve=_policy_serve(p, records),
            )
            for (event, rec), value, (key, context) in zip(records, scored.values, scored.contexts):
                bind_event(event)  # the write goes to this event's changelog partition
                p.contexts[key] = context
                p.publisher.publish(rec.batch_id.encode(), p.serde.encode("scores", value))
            # faust acks the take's events after this body: their scores must be on the topic first
            try:
                await p.publisher.flushed()
            except DeliveryError as exc:  # stop with the take unacked: a restart re-scores it
                log.critical("%s; stopping the worker", exc)
                await p.app.crash(exc)
                return
            p.stats.scored_users += len(records)
            p.stats.scored_pairs += scored.n_pairs
            p.metrics.produced(scores_topic, len(records))
            p.metrics.scored(time.perf_counter() - started, scored.n_pairs)

    return score


def learn_agent(p: Processors) -> Agent:
    """feedback -> the user's head (``users``), training-rows and metrics (one record per tuner arm
    the take's feedback was served under, keyed by arm id)."""
    cfg = p.cfg

    async def learn_from(stream: Any) -> None:
        events: list[Any]
        async for events in stream.take_events(cfg.take, within=cfg.within_s):
            if events:
                p.metrics.consumed(events[0].message.topic, len(events))
            per_arm: dict[str, FeedbackMetrics] = {}
            n_rows = 0
            last_event: dict[int, Any] = {}  # per partition: the event a policy snapshot's write binds
            for event in events:
                msg = event.message
                bind_event(event)  # table reads and writes below go to this event's partition
                try:
                    fb = FeedbackRecord.from_avro(
                        p.serde.decode(
                            "feedback", msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset
                        )
                    )
                except (DecodeError, ValidationError) as exc:
                    await p.reject(event, exc, "learner")
                    continue
                context, arm, policy = _context_of(p, msg.partition, fb)
                if context is None:
                    p.stats.feedback_unknown += 1
                    await p.reject(
                        event,
                        ValidationError(
                            f"no decision context for {fb.feedback_id} (unknown decision id; or late: "
                            f"older than the last {cfg.context_slots} batches of this user; or feedback "
                            f"keyed or partitioned unlike candidates: key by user_id, murmur2 partitioner)"
                        ),
                        "learner",
                    )
                    continue
                # The policy first: it dedupes on its own digests (a take's snapshot may be lost
                # in a crash after the user's head, written per record, was stored).
                if policy != BANDITLP and policy in p.mix.names and p.policy_states is not None:
                    live = p.policy(event, policy, context.features.shape[1])
                    if p.policy_states.first_time(msg.partition, policy, fb.feedback_id):
                        learn_policy(live, fb, context, p.policy_states.catalogue)
                        p.policy_states.mark(msg.partition, policy, fb.feedback_id)
                        last_event[msg.partition] = event
                state = p.user_state(fb.user_id, context.item_features.shape[1])
                learned = learn(fb, context, state, p.noise_var, cfg.seen_limit)
                if learned is None:
                    p.stats.feedback_duplicate += 1
                    continue
                p.users[fb.user_id.encode()] = learned.state.encode()
                p.stats.feedback_applied += 1
                per_arm.setdefault(arm, FeedbackMetrics(arm_id=arm)).add(fb)
                await p.topics["training-rows"].send(
                    key=fb.user_id.encode(), value=p.serde.encode("training-rows", learned.training_row)
                )
                n_rows += 1
            p.metrics.produced(cfg.names("training-rows"), n_rows)
            if p.policy_states is not None:  # one snapshot per policy and partition per take
                for partition, name, snapshot in p.policy_states.dirty():
                    bind_event(last_event[partition])
                    p.policy_table[name.encode()] = snapshot
            now_ms = int(time.time() * 1000)
            for metrics in per_arm.values():
                await p.topics["metrics"].send(
                    key=metrics.arm_id.encode(), value=p.serde.encode("metrics", metrics.value(now_ms))
                )
                p.metrics.produced(cfg.names("metrics"))

    return learn_from


def _policy_serve(
    p: Processors, records: list[tuple[Any, CandidatesRecord]]
) -> Callable[[ScoreArrays, np.ndarray], list[str]] | None:
    """``score_records``' hook that puts the registered policies' scores into their users' pairs
    (``streams.score.policy_serving``), each user scored with its partition's state; None when
    the worker serves ``banditlp`` alone."""
    states = p.policy_states
    if states is None:
        return None
    names = p.mix.assign([r.user_id for _, r in records])
    cands = [r for _, r in records]

    def policy_of(u: int, name: str) -> Any:
        event, rec = records[u]
        return p.policy(event, name, rec.features.shape[1])

    def serve(out: ScoreArrays, offsets: np.ndarray) -> list[str]:
        serve_policies(out, cands, names, offsets, policy_of, states.catalogue, p.cfg.seed, p.cfg.n_draws)
        return names

    return serve


def _context_of(p: Processors, partition: int, fb: FeedbackRecord) -> tuple[DecisionContext | None, str, str]:
    """The stored context of ``fb``'s decision (None when it is unknown, late or another batch's),
    the tuner arm it was scored under (``"default"`` when none, or for a context stored before arms)
    and the policy that scored it (``"banditlp"`` for a context stored before policies)."""
    key = p.context_index.find(partition, fb.user_id, fb.batch_id)
    data = p.contexts.get(key) if key is not None else None
    if data is None:
        return None, DEFAULT_VERSION, BANDITLP
    context = DecisionContext.decode(data)
    if not context.holds(fb):
        return None, DEFAULT_VERSION, BANDITLP
    meta = unpack_meta(data)
    parsed = parse_parameter_version(str(meta.get("parameter_version", DEFAULT_VERSION)))
    return context, parsed[2] if parsed is not None else DEFAULT_VERSION, str(meta.get("policy", BANDITLP))
