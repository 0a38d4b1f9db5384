"""Publishing a logged dataset onto Kafka in the pipeline's own schemas, so a replay reads it back.

:func:`publish_log` writes a :class:`~streams.replay.log.ReplayLog` (for example the Open Bandit
Dataset's, ``streams.replay.obd``) as the pipeline would have logged it: per batch an OPENED
batch-control record with its constraints, one ``candidates`` record per user, one ``decisions``
and one ``decision-contexts`` record per decision (the allocator's batch encoders), a CLOSED
record, and one ``feedback`` record per sent item. The producer is idempotent (retries neither
duplicate nor reorder a partition's records), keys users with the murmur2 partitioner as the
pipeline does (so ``candidates``, ``decisions``, ``decision-contexts`` and ``feedback`` are
co-partitioned), and every wait is bounded: records the broker has not acknowledged within the
timeout are a ``DeliveryError``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from confluent_kafka import KafkaError, Message

from streams.avro.contexts import ContextColumns
from streams.avro.decisions import DecisionColumns
from streams.avro.serde import AvroSerde
from streams.errors import DeliveryError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.replay.log import ReplayLog


@dataclass(frozen=True)
class Published:
    """How many records of each topic :func:`publish_log` wrote."""

    batch_control: int
    candidates: int
    decisions: int
    decision_contexts: int
    feedback: int


def _indices(names: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """``(distinct names sorted, (len(names),) int64 index of each)``."""
    distinct = sorted(set(names))
    index = {name: i for i, name in enumerate(distinct)}
    return distinct, np.fromiter(map(index.__getitem__, names), dtype=np.int64, count=len(names))


def publish_log(
    connection: ConnectionConfig,
    serde: AvroSerde,
    names: TopicNames,
    log: ReplayLog,
    *,
    model_name: str = "replay",
    source: str = "replay",
    timeout_s: float = 120.0,
) -> Published:
    """Publish ``log`` onto the topics of ``names`` (module docstring); they must exist.

    Args:
        connection: the cluster.
        serde: the process's serde.
        names: the namespace to write.
        log: what to write.
        model_name: the model name the decisions and contexts carry.
        source: the feedback's ``source``.
        timeout_s: the longest wait for the local queue, and for the final acknowledgements.

    Raises:
        DeliveryError: a record was refused or not acknowledged within ``timeout_s``.
    """
    producer = clients.producer(
        connection,
        {"enable.idempotence": True, "linger.ms": 20, "compression.type": "lz4", "partitioner": "murmur2_random"},
    )
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None and len(errors) < 5:
            errors.append(f"{msg.topic()} [{msg.partition()}]: {err}")

    counts = dict.fromkeys(("batch-control", "candidates", "decisions", "decision-contexts", "feedback"), 0)

    def send(base: str, key: bytes, value: bytes) -> None:
        clients.produce(producer, names(base), value, key, timeout_s=timeout_s, on_delivery=on_delivery)
        counts[base] += 1
        if counts[base] % 10_000 == 0:
            producer.poll(0)

    features = log.features if log.features is not None else np.zeros((log.n_pairs, 0), dtype=np.float32)
    for b, opened in enumerate(log.batches):
        rounds = np.flatnonzero(log.round_batch == b)
        if rounds.size == 0:
            continue
        users = [log.user_ids[r] for r in rounds.tolist()]
        pairs = np.concatenate([np.arange(log.starts[r], log.starts[r + 1]) for r in rounds.tolist()])
        sizes = np.diff(log.starts)[rounds]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        item_names, item = _indices(tuple(log.item_ids[j] for j in pairs.tolist()))
        provider_names, provider = _indices(tuple(log.provider_ids[j] for j in pairs.tolist()))
        at = opened.created_at_ms
        send("batch-control", opened.batch_id.encode(), serde.encode("batch-control", opened.to_avro()))
        per_user = np.split(features[pairs], starts[1:-1])
        for u, user in enumerate(users):
            s, e = int(starts[u]), int(starts[u + 1])
            send(
                "candidates",
                user.encode(),
                serde.encode(
                    "candidates",
                    {
                        "batch_id": opened.batch_id,
                        "user_id": user,
                        "created_at_ms": at,
                        "user_cap": int(log.user_cap[rounds[u]]),
                        "candidates": [
                            {
                                "item_id": item_names[i],
                                "provider_id": provider_names[p],
                                "features": f,
                                "item_features": [],
                            }
                            for i, p, f in zip(item[s:e].tolist(), provider[s:e].tolist(), per_user[u].tolist())
                        ],
                    },
                ),
            )
        n_users = len(users)
        model = ([model_name] * n_users, [0] * n_users, ["default"] * n_users)
        policy = log.policies[0] if len(log.policies) == 1 else "replay"
        n_draws = int(log.n_draws[rounds].max())
        decisions = serde.encode_decisions(
            DecisionColumns(
                opened.batch_id,
                users,
                starts,
                item,
                item_names,
                provider,
                provider_names,
                log.x[pairs],
                log.sent[pairs],
                log.propensity[pairs],
                *model,
                "none",
                "sample",
                at,
                n_draws=n_draws,
                policy=policy,
            )
        )
        contexts = serde.encode_contexts(
            ContextColumns(
                batch_id=opened.batch_id,
                user_ids=users,
                starts=starts,
                item=item,
                item_names=item_names,
                provider=provider,
                provider_names=provider_names,
                features=per_user,
                propensity=log.propensity[pairs],
                x=log.x[pairs],
                mean_conversion=log.means[pairs, 0],
                mean_unsubscription=log.means[pairs, 1],
                mean_value=log.means[pairs, 2],
                model_names=model[0],
                model_versions=model[1],
                parameter_versions=model[2],
                taus=np.full(n_users, np.nan),
                user_caps=[int(c) for c in log.user_cap[rounds].tolist()],
                policy=policy,
                n_draws=n_draws,
                rounding="sample",
                decided_at_ms=at,
            )
        )
        for user, d_value, c_value in zip(users, decisions, contexts, strict=True):
            send("decisions", user.encode(), d_value)
            send("decision-contexts", user.encode(), c_value)
        closed = replace(opened, event="CLOSED", expected_users=n_users, user_ids=tuple(users))
        send("batch-control", opened.batch_id.encode(), serde.encode("batch-control", closed.to_avro()))
        for j in pairs[log.sent[pairs]].tolist():
            r = int(log.round_index[j])
            send(
                "feedback",
                log.user_ids[r].encode(),
                serde.encode(
                    "feedback",
                    {
                        "decision_id": log.decision_ids[r],
                        "batch_id": opened.batch_id,
                        "user_id": log.user_ids[r],
                        "item_id": log.item_ids[j],
                        "converted": bool(log.value[j] > 0),
                        "unsubscribed": bool(log.unsubscribed[j] > 0),
                        "value": float(log.value[j]),
                        "observed_at_ms": at,
                        "source": source,
                    },
                ),
            )
    left = producer.flush(timeout_s)
    if left or errors:
        raise DeliveryError(f"{left} record(s) not acknowledged within {timeout_s:g} s; {'; '.join(errors)}")
    return Published(
        counts["batch-control"],
        counts["candidates"],
        counts["decisions"],
        counts["decision-contexts"],
        counts["feedback"],
    )
