"""Plays the simulated email world (evaluation.email_world) against the pipeline through Kafka.

Per batch: publish batch-control OPENED (with the batch's budget and provider bounds),
every user's candidates, CLOSED; wait for the allocator's committed decisions; draw the
outcomes of what was sent from the true model; publish them as feedback. Returns the
world's per-batch evaluation record (true expected reward, oracle objective, usage, and
the exploration measures: the LP's selection entropy and the scorer's posterior std).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

from evaluation.email_world import EmailWorld, EmailWorldConfig
from evaluation.run_summary import BatchOutcome, mean_user_entropy
from streams.avro.scores import ScoredItems
from streams.avro.serde import AvroSerde
from streams.errors import DecodeError, StreamError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames


@dataclass(frozen=True)
class SimulatorConfig:
    """Settings of the simulated feed.

    Attributes:
        timeout_ms: the allocator's wait for missing users after CLOSED.
        decision_timeout_s: how long to wait for a batch's decisions before giving up.
        scores_grace_s: once a batch's decisions are all in, how much longer to wait for the
            scores records of its decided users (the posterior std is measured on them).
    """

    names: TopicNames
    world: EmailWorldConfig = field(default_factory=EmailWorldConfig)
    timeout_ms: int = 60_000
    decision_timeout_s: float = 180.0
    scores_grace_s: float = 10.0
    seed: int = 0


@dataclass(frozen=True, eq=False)
class BatchRun:
    """One batch as the pipeline decided it: the evaluation record and the LP's x.

    Attributes:
        undecided: users of the batch with no decision once its allocation report was read
            (the allocator's guarantee is that there are none).
        fallback: decisions of the batch made by the allocator's fallback (``policy`` "fallback").
    """

    outcome: BatchOutcome
    x_lp: np.ndarray  # (E,) published allocation
    chosen: np.ndarray  # (E,) 0/1 sent
    decided_s: float  # CLOSED produced -> last decision read
    undecided: int = 0
    fallback: int = 0


def _producer(connection: ConnectionConfig) -> Producer:
    return clients.producer(
        connection,
        {"linger.ms": 5, "compression.type": "lz4", "enable.idempotence": True, "partitioner": "murmur2_random"},
    )


def _conversion_stds(items: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``(n_items,)`` the ``conversion`` entry of each scored item's stds (nan where absent);
    ``items`` is the serde's columns or fastavro's list of dicts."""
    if isinstance(items, ScoredItems):
        return np.array(items.stds.get("conversion", np.full(len(items), np.nan)), dtype=np.float64)
    return np.array([it["stds"].get("conversion", np.nan) for it in items], dtype=np.float64)


def candidates_values(world: EmailWorld, batch: Any, cons: Any, now_ms: int) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """``(key, candidates value)`` of every user of ``batch`` (an ``EmailWorld`` batch, with its
    ``constraints``): pair features, and the item part of them as the user's effect features."""
    c = world.config
    item_slice = slice(c.user_dim, c.user_dim + c.item_dim)
    bounds = np.flatnonzero(np.diff(batch.pair_user)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [batch.n_pairs]])
    feats = batch.features
    for s, e in zip(starts.tolist(), ends.tolist()):
        u = int(batch.pair_user[s])
        yield (
            f"u{u}".encode(),
            {
                "batch_id": batch.batch_id,
                "user_id": f"u{u}",
                "created_at_ms": now_ms,
                "user_cap": int(cons.user_cap[u]),
                "candidates": [
                    {
                        "item_id": f"i{int(i)}",
                        "provider_id": f"p{int(p)}",
                        "features": feats[j].tolist(),
                        "item_features": feats[j, item_slice].tolist(),
                    }
                    for j, i, p in zip(range(s, e), batch.pair_item[s:e], batch.pair_provider[s:e])
                ],
            },
        )


def control_value(
    batch_id: str,
    batch: Any,
    cons: Any,
    *,
    event: str,
    timeout_ms: int,
    default_user_cap: int,
    created_at_ms: int,
) -> dict[str, Any]:
    """The ``batch-control`` value of one simulated batch: its constraints as the allocator reads
    them (finite budgets on unsubscription, provider rows ``p<index>``); a CLOSED value names the
    batch's users (:func:`closing`), so the allocator's report can name any it never saw scored."""
    value = {
        "batch_id": batch_id,
        "event": event,
        "expected_users": int(len(batch.user_ids)),
        "timeout_ms": timeout_ms,
        "created_at_ms": created_at_ms,
        "default_user_cap": default_user_cap,
        "budgets": [
            {"name": n, "outcome": "unsubscription", "limit": float(b)}
            for n, b in zip(cons.budget_names, cons.budget)
            if np.isfinite(b)
        ],
        "providers": [
            {"provider_id": f"p{p}", "min_exposure": float(lo), "max_exposure": None if np.isinf(hi) else float(hi)}
            for p, (lo, hi) in enumerate(zip(cons.provider_min, cons.provider_max))
        ],
        "reward_outcome": "reward",
        "user_ids": None,
    }
    return {**value, **closing(batch)} if event == "CLOSED" else value


def closing(batch: Any) -> dict[str, Any]:
    """The fields that turn a batch's OPENED control value into its CLOSED one (bar the time)."""
    return {"event": "CLOSED", "user_ids": [f"u{int(u)}" for u in np.unique(batch.pair_user)]}


class SimulatorFeed:
    """Drives batches of the email world through the pipeline's topics."""

    def __init__(self, cfg: SimulatorConfig, connection: ConnectionConfig, serde: AvroSerde) -> None:
        self.cfg = cfg
        self.world = EmailWorld(cfg.world)
        self.serde = serde
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.producer = _producer(connection)
        self.consumer = clients.consumer(
            connection,
            {
                "group.id": f"{cfg.names.prefix}simulator",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
        topic = cfg.names("decisions")
        md = self.consumer.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error:
            raise StreamError(f"topic {topic} does not exist; run `banditlp topics create` first")
        # From the beginning, filtered by batch id: decisions of batches published here only.
        # The allocation report says how many users were decided (missing users time out).
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.topics[topic].partitions]
            + [TopicPartition(cfg.names("allocation-reports"), 0, OFFSET_BEGINNING)]
        )
        # Scores from their current end (this feed's batches are all published after it), but
        # read only from the first await_decisions: a feed that only publishes (the bench)
        # should not fetch every scores record in the background.
        scores_topic = cfg.names("scores")
        scores_md = self.consumer.list_topics(scores_topic, timeout=10).topics[scores_topic]
        self._scores_from: list[TopicPartition] | None = [
            TopicPartition(
                scores_topic, p, self.consumer.get_watermark_offsets(TopicPartition(scores_topic, p), timeout=10)[1]
            )
            for p in scores_md.partitions
        ]
        self.reports: dict[str, dict] = {}
        # (batch id, user id) -> (n_items,) posterior std of conversion (logit scale), first record
        self.conversion_stds: dict[tuple[str, str], np.ndarray] = {}

    def publish_batch(self, batch_index: int):
        """Produce OPENED, candidates and CLOSED for one batch; returns (batch, constraints)."""
        names, w = self.cfg.names, self.world
        batch = w.candidates(batch_index)
        cons = w.constraints(batch)
        now = int(time.time() * 1000)
        control = control_value(
            batch.batch_id,
            batch,
            cons,
            event="OPENED",
            timeout_ms=self.cfg.timeout_ms,
            default_user_cap=int(self.cfg.world.sends_per_user),
            created_at_ms=now,
        )
        key = batch.batch_id.encode()
        clients.produce(
            self.producer,
            names("batch-control"),
            key=key,
            value=self.serde.encode("batch-control", control),
        )
        for key_u, value in candidates_values(self.world, batch, cons, now):
            clients.produce(self.producer, names("candidates"), key=key_u, value=self.serde.encode("candidates", value))
            self.producer.poll(0)
        clients.produce(
            self.producer,
            names("batch-control"),
            key=key,
            value=self.serde.encode(
                "batch-control",
                {**control, **closing(batch), "created_at_ms": int(time.time() * 1000)},
            ),
        )
        self.producer.flush(60)
        return batch, cons

    def await_decisions(self, batch_id: str, n_users: int) -> dict[str, dict]:
        """Read committed decisions of ``batch_id`` until every user has one, or until the
        batch's allocation report is in and every user it decided has one (users whose scores
        never reached the allocator before its window timed out are reported there as missing)."""
        if self._scores_from is not None:
            self.consumer.incremental_assign(self._scores_from)
            self._scores_from = None
        got: dict[str, dict] = {}
        deadline = time.monotonic() + self.cfg.decision_timeout_s
        reports_topic, scores_topic = self.cfg.names("allocation-reports"), self.cfg.names("scores")

        def decided() -> bool:
            report = self.reports.get(batch_id)
            return len(got) >= (n_users if report is None else report["n_users"])

        def scored() -> bool:
            return all((batch_id, u) in self.conversion_stds for u in got)

        grace_end = None
        while time.monotonic() < (deadline if grace_end is None else grace_end):
            if decided():
                if scored():
                    break
                # the scores were on their topic before the allocator decided; only this
                # consumer's reading order can leave some behind
                grace_end = grace_end or min(deadline, time.monotonic() + self.cfg.scores_grace_s)
            for msg in self.consumer.consume(1000, timeout=0.5):
                if msg.error():
                    continue
                if msg.topic() == reports_topic:
                    r = self.serde.decode("allocation-reports", msg.value())
                    self.reports[r["batch_id"]] = r
                elif msg.topic() == scores_topic:
                    self._read_scores(msg.value(), batch_id)
                else:
                    d = self.serde.decode("decisions", msg.value())
                    if d["batch_id"] == batch_id:
                        got.setdefault(d["user_id"], d)
        if not decided():
            raise StreamError(
                f"batch {batch_id}: {len(got)} of {n_users} decisions after "
                f"{self.cfg.decision_timeout_s:.0f} s; is the allocator running?"
            )
        return got

    def _read_scores(self, data: bytes | None, batch_id: str) -> None:
        """Keep the first scores record of each user of ``batch_id``. Records of other batches
        and undecodable ones are not this feed's to judge: the allocator dead-letters them."""
        try:
            v = self.serde.decode("scores", data)
        except DecodeError:
            return
        if v["batch_id"] == batch_id:
            self.conversion_stds.setdefault((batch_id, v["user_id"]), _conversion_stds(v["items"]))

    def mean_posterior_std(self, batch_id: str, user_ids: Iterable[str]) -> float:
        """Mean over the pairs of ``user_ids`` of the scorer's posterior std of conversion
        (logit scale, before calibration; the exploration Thompson sampling draws from).
        Pairs whose scores were not read count as unknown; nan when none were read."""
        popped = [self.conversion_stds.pop((batch_id, u), None) for u in user_ids]
        stds = [s for s in popped if s is not None]
        return float(np.nanmean(np.concatenate(stds))) if stds else float("nan")

    def run_batch(self, batch_index: int) -> BatchRun:
        """One full round: publish, wait for decisions, draw outcomes, publish feedback."""
        batch, cons = self.publish_batch(batch_index)
        t_closed = time.monotonic()
        decisions = self.await_decisions(batch.batch_id, len(batch.user_ids))
        decided_s = time.monotonic() - t_closed
        # Map decisions back onto the batch's pair order (pairs are user-major, items sorted).
        pair_key = {(int(u), int(i)): j for j, (u, i) in enumerate(zip(batch.pair_user, batch.pair_item))}
        x_lp = np.zeros(batch.n_pairs)
        chosen = np.zeros(batch.n_pairs)
        propensity = np.ones(batch.n_pairs)
        users = {f"u{int(u)}" for u in np.unique(batch.pair_user)}
        undecided = len(users.difference(decisions))
        fallback = sum(1 for d in decisions.values() if d.get("policy") == "fallback")
        for d in decisions.values():
            u = int(d["user_id"][1:])
            for share in d["allocation"]:
                x_lp[pair_key[(u, int(share["item_id"][1:]))]] = share["x"]
            for c in d["chosen"]:
                j = pair_key[(u, int(c["item_id"][1:]))]
                chosen[j] = 1.0
                propensity[j] = c["propensity"]
        outcome = self.world.batch_outcome(
            batch,
            chosen,
            self.rng,
            constraints=cons,
            mean_entropy=mean_user_entropy(x_lp, batch.pair_user),
            mean_posterior_std=self.mean_posterior_std(batch.batch_id, decisions),
            x_planned=x_lp,
        )
        now = int(time.time() * 1000)
        for j in np.flatnonzero(chosen).tolist():
            u, i = int(batch.pair_user[j]), int(batch.pair_item[j])
            clients.produce(
                self.producer,
                self.cfg.names("feedback"),
                key=f"u{u}".encode(),
                value=self.serde.encode(
                    "feedback",
                    {
                        "decision_id": f"{batch.batch_id}/u{u}",
                        "batch_id": batch.batch_id,
                        "user_id": f"u{u}",
                        "item_id": f"i{i}",
                        "converted": bool(outcome.realised_value[j] > 0),
                        "unsubscribed": bool(outcome.realised_unsub[j] > 0),
                        "value": float(outcome.realised_value[j]),
                        "observed_at_ms": now,
                        "source": "simulator",
                    },
                ),
            )
        self.producer.flush(60)
        return BatchRun(outcome, x_lp, chosen, decided_s, undecided, fallback)

    def close(self) -> None:
        self.producer.flush(30)
        self.consumer.close()
