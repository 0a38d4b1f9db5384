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
from streams.score.model import ScoreArrays, ScoringModel


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
    tau: float | np.ndarray,
    rng: np.random.Generator,
    claim_slot: Callable[[int], tuple[bytes, int]],
    n_draws: int = 1,
    copy_features: bool = True,
    parameter_versions: list[str] | None = None,
    serve: Callable[[ScoreArrays, np.ndarray], list[str]] | None = None,
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

    ``tau``: one temperature for every user, or ``(n_users,)`` one per user (the tuner arm each is
    served, ``ParameterDistributionRecord.serve``); ``parameter_versions``: each user's arm as the
    scores record names it (None: ``"default"``). The global model scores each distinct τ's pairs in
    one pass (a few arms: a few passes; one τ: the one pass, and the same draws, as a scalar ``tau``).

    ``serve(out, offsets)``: puts the scores of the users a registered policy serves into ``out``
    (``streams.score.policy_serving``) and returns each user's policy name, which the values and
    the contexts then carry (``policy``); None leaves every user the neural model's (no field set).

    The ``scores`` values are Avro dicts whose ``items`` is a ``ScoredItems`` (columns that
    read as the list of item dicts the schema describes); no per-pair Python object is built.
    """
    sizes = np.fromiter((len(r.item_ids) for r in records), dtype=np.int64, count=len(records))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    X = np.concatenate([r.features for r in records])

    taus = np.broadcast_to(np.asarray(tau, dtype=np.float64), (len(records),))
    versions = parameter_versions if parameter_versions is not None else ["default"] * len(records)
    effect = None
    k = records[0].item_features.shape[1]
    if k and all(r.item_features.shape[1] == k for r in records):
        states = [user_state(i, k) for i in range(len(records))]
        A = np.stack([s.A for s in states])
        b = np.stack([s.b for s in states])
        w = random_effects.sample_effects_k(A, b, taus, rng, n_draws)  # (n_draws, n_users, k)
        w_mean = random_effects.posterior_mean(A, b)
        Z = np.concatenate([r.item_features for r in records]).astype(np.float64)  # (n_pairs, k)
        owner = np.repeat(np.arange(len(records)), sizes)
        effect = (np.einsum("pk,dpk->dp", Z, w[:, owner]), np.einsum("pk,pk->p", Z, w_mean[owner]))
    out = _score_by_tau(model, X, taus, sizes, rng, effect, n_draws)  # calibrated, per outcome
    policies = serve(out, offsets) if serve is not None else None

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
            "parameter_version": version,
            "tau": float(t),
            "items": scored,
        }
        for rec, scored, version, t in zip(records, items, versions, taus)
    ]
    if policies is not None:
        for value, policy in zip(values, policies):
            value["policy"] = policy
    bounds = offsets.tolist()
    # the cost the plan budgets, before pacing, against which the trainer's pacing measures the
    # realised unsubscriptions (streams.train.pacing); none where the model has no calibrated cost
    cost = out.budgeted_unsubscription
    unpaced = [{} if cost is None else {"p_unsub": cost[bounds[u] : bounds[u + 1]]} for u in range(len(records))]
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
                        **unpaced[u],
                    },
                    {
                        "batch_id": rec.batch_id,
                        "seq": seq,
                        "items": list(rec.item_ids),
                        "model_version": model.version,
                        "parameter_version": versions[u],  # the learner's per-arm metrics
                        **({"policy": policies[u]} if policies is not None else {}),  # whose state learns
                    },
                ),
            )
        )
    return ScoredBatch(values, contexts, bounds[-1])


def _score_by_tau(
    model: ScoringModel,
    X: np.ndarray,
    taus: np.ndarray,
    sizes: np.ndarray,
    rng: np.random.Generator,
    effect: tuple[np.ndarray, np.ndarray] | None,
    n_draws: int,
) -> ScoreArrays:
    """``model.score`` of every pair, each user's pairs at its own τ: one pass per distinct τ over
    that τ's pairs, scattered back into pair order. ``taus`` is ``(n_users,)``, ``sizes`` the
    users' pair counts ``(n_users,)``, ``X`` ``(n_pairs, d)``."""
    levels = np.unique(taus)
    if levels.size == 1:
        return model.score(X, float(levels[0]), rng, conversion_effect=effect, n_draws=n_draws)
    pair_tau = np.repeat(taus, sizes)  # (n_pairs,)
    n_pairs = X.shape[0]
    parts = []
    for level in levels:
        rows = np.flatnonzero(pair_tau == level)
        sub = None if effect is None else (effect[0][..., rows], effect[1][rows])
        parts.append((rows, model.score(X[rows], float(level), rng, conversion_effect=sub, n_draws=n_draws)))

    def gather(field: str, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for rows, arrays in parts:
            for outcome, values in getattr(arrays, field).items():
                full = out.setdefault(outcome, np.empty((*shape, n_pairs), dtype=np.float64))
                full[..., rows] = values
        return out

    fixed = np.empty(n_pairs, dtype=np.float64)
    budgeted: np.ndarray | None = np.empty(n_pairs, dtype=np.float64)
    for rows, arrays in parts:
        fixed[rows] = arrays.fixed_conversion_mean
        if budgeted is not None and arrays.budgeted_unsubscription is not None:
            budgeted[rows] = arrays.budgeted_unsubscription
        else:  # one model scored every part: all have a calibrated cost or none has
            budgeted = None
    return ScoreArrays(
        gather("samples", ()), gather("draws", (n_draws,)), gather("means", ()), gather("stds", ()), fixed, budgeted
    )
