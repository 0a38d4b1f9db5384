"""The logged history a deployment starts from: sends of a uniformly random policy, and model v1 trained on them.

BanditLP starts from models trained on logged data; without this the scorer would start from
the untrained prior (flat 50% probabilities), which makes the unsubscription budget look
infeasible for the first batches. The logged rows stay on ``training-rows``, so the trainer's
later versions learn from them too, not only from the pipeline's own sends.
"""

from __future__ import annotations

import time

import numpy as np

from evaluation.email_world import EmailWorld, EmailWorldConfig
from models.neural import NeuralThompsonModel
from streams.avro.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.train.trainer import fit_model

# Batch indices the warm start draws from: far from the ones a run plays (0, 1, ...).
FIRST_LOGGED_BATCH = 1_000_000


def publish_warm_start(
    connection: ConnectionConfig,
    serde: AvroSerde,
    names: TopicNames,
    world_cfg: EmailWorldConfig,
    model_name: str,
    n_batches: int,
    seed: int,
) -> int:
    """Log one random send per user of ``n_batches`` batches on ``training-rows``, train version 1
        of the model on them and publish it on ``model-snapshots`` (unpaced: no plan budgeted these
    sends, so there is nothing to pace on yet). Returns the number of logged rows."""
    world = EmailWorld(world_cfg)
    rng = np.random.default_rng(seed + 7)
    X, conv, unsub, value, who = [], [], [], [], []
    for b in range(n_batches):
        batch = world.candidates(FIRST_LOGGED_BATCH + b)
        starts = np.flatnonzero(np.r_[True, np.diff(batch.pair_user) != 0])
        sizes = np.diff(np.r_[starts, batch.n_pairs])
        idx = starts + (rng.random(len(starts)) * sizes).astype(int)  # one uniformly random candidate per user
        c, u, v = world.draw_outcomes(batch.pair_user[idx], batch.pair_item[idx], rng)
        X.append(batch.features[idx])
        conv.append(c)
        unsub.append(u)
        value.append(v)
        who += [(batch.batch_id, int(batch.pair_user[j]), int(batch.pair_item[j])) for j in idx]
    features = np.concatenate(X)
    conv_all, unsub_all, value_all = (np.concatenate(a) for a in (conv, unsub, value))
    model = fit_model(features, conv_all.astype(float), unsub_all.astype(float), value_all, seed=seed)
    producer = clients.producer(
        connection, {"linger.ms": 20, "compression.type": "lz4", "partitioner": "murmur2_random"}
    )
    now = int(time.time() * 1000)
    for j, (batch_id, user, item) in enumerate(who):
        clients.produce(
            producer,
            names("training-rows"),
            key=f"u{user}".encode(),
            value=serde.encode(
                "training-rows",
                {
                    "decision_id": f"{batch_id}/u{user}",
                    "batch_id": batch_id,
                    "user_id": f"u{user}",
                    "item_id": f"i{item}",
                    "features": features[j].tolist(),
                    "converted": bool(conv_all[j]),
                    "unsubscribed": bool(unsub_all[j]),
                    "value": float(value_all[j]),
                    "model_version": 0,
                    "observed_at_ms": now,
                    "budgeted_unsub": None,  # a random send no plan budgeted: pacing does not count it
                },
            ),
        )
        producer.poll(0)
    clients.produce(
        producer,
        names("model-snapshots"),
        key=model_name.encode(),
        value=serde.encode(
            "model-snapshots",
            {
                "name": model_name,
                "version": 1,
                "kind": NeuralThompsonModel.snapshot_kind,
                "created_at_ms": int(time.time() * 1000),
                "n_observations": len(features),
                "payload": model.to_bytes(name=model_name, version=1),
            },
        ),
    )
    producer.flush(30)
    return len(features)
