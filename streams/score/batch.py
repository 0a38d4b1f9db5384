"""Scoring many users at once, pure: candidates records + user heads -> scores values and decision contexts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from models import random_effects
from streams.avro.scores import ScoredItems
from streams.learn.state_codec import pack
from streams.learn.user_state import UserState
from streams.records import CandidatesRecord
from streams.score.model import ScoringModel


@dataclass(frozen=True)
class ScoredBatch:
    """Scores values (Avro dicts), per user the (table key, context bytes) to store, and the
    pair count."""

    values: list[dict[str, Any]]
    contexts: list[tuple[bytes, bytes]]
    n_pairs: int


def score_records(
    records: list[CandidatesRecord],
    user_state: Callable[[int, int], UserState],
    model: ScoringModel,
    tau: float,
    rng: np.random.Generator,
    claim_slot: Callable[[int], tuple[bytes, int]],
    n_draws: int = 1,
    copy_features: bool = True,
) -> ScoredBatch:
    """Score many users at once: one vectorised pass of the global model over all pairs,
    one batched draw of every user's random effect, calibration, then per-user records.
    Every record's feature width is ``model.feature_dim`` (the agent checked it).
    ``user_state(i, k)`` is the head of ``records[i]``'s user; ``claim_slot(i) -> (key, seq)``
    says where ``records[i]``'s context goes (``ContextIndex.claim``). Both take the record's
    position, not its user id: two records of one user in one take may come from different
    partitions, and each must read and claim in its own.

    ``n_draws`` (K): the Thompson draws of every outcome per pair; the allocator solves one LP per
    draw, so the propensity it logs is exact (``streams.decide.decision``).

    ``copy_features``: every scored item carries the pair features it was scored on (its row of
    the candidates record's ``(n, d)`` float32 features), which the allocator copies into the
    decision's context for off-policy replay (``streams.decide.contexts``); False leaves them
    empty. ``item_features`` stay empty: the per-user head's features are kept in the context
    table, and the allocator does not read them.

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
        w = random_effects.sample_effects_k(A, b, tau, rng, n_draws)  # (n_draws, n_users, k)
        w_mean = random_effects.posterior_mean(A, b)
        Z = np.concatenate([r.item_features for r in records]).astype(np.float64)  # (n_pairs, k)
        owner = np.repeat(np.arange(len(records)), sizes)
        effect = (np.einsum("pk,dpk->dp", Z, w[:, owner]), np.einsum("pk,pk->p", Z, w_mean[owner]))
    out = model.score(X, tau, rng, conversion_effect=effect, n_draws=n_draws)  # calibrated, per outcome

    # The scored items as columns: their fixed-layout part (the maps of doubles) is encoded
    # here for all pairs at once; the serde then only adds each item's two id strings.
    extra = {o: d[1:] for o, d in out.draws.items()} if n_draws > 1 else None
    items = ScoredItems.split(
        [r.item_ids for r in records],
        [r.provider_ids for r in records],
        out.samples,
        out.means,
        out.stds,
        offsets,
        draws=extra,
        features=X if copy_features else None,
    )
    now = int(time.time() * 1000)
    values = [
        {
            "batch_id": rec.batch_id,
            "user_id": rec.user_id,
            "user_cap": rec.user_cap,
            "scored_at_ms": now,
            "model_name": model.name,
            "model_version": model.version,
            "parameter_version": "default",
            "tau": float(tau),
            "items": scored,
        }
        for rec, scored in zip(records, items)
    ]
    bounds = offsets.tolist()
    contexts = []
    for u, rec in enumerate(records):
        key, seq = claim_slot(u)
        contexts.append(
            (
                key,
                pack(
                    {
                        "features": rec.features,
                        "item_features": rec.item_features,
                        "p_conversion": out.fixed_conversion_mean[bounds[u] : bounds[u + 1]],
                    },
                    {"batch_id": rec.batch_id, "seq": seq, "items": list(rec.item_ids), "model_version": model.version},
                ),
            )
        )
    return ScoredBatch(values, contexts, bounds[-1])
