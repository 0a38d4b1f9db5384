"""What the health worker holds of each batch until it closes, and the monitor's view of it (no
Kafka here: the worker hands decoded values in).

A batch is seen through four topics: its allocation report (how many users it decided, how many by
the fallback), its decisions (every candidate's propensity, from ``allocation``), the decision
contexts of its LP-decided users (every candidate's features and calibrated means) and the
feedback of what was sent. It is *complete* when its report is in and it holds ``n_users``
decisions and ``n_users - n_fallback`` contexts. Its feedback is held with it and joined with the
calibrated means of its decision contexts when it closes (:class:`ContextIndex` keeps the means of
the last batches, so late feedback can still be joined, once).

String ids become the int ids the pure metrics take through :class:`IdMap` (one per worker, so
a user or an item keeps its id from batch to batch, which overlap@K compares).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluation.health import BatchObservation
from streams.errors import ValidationError
from streams.records import FeedbackRecord

#: The outcomes of a feedback record, by the name the monitor uses, and the context's mean field.
OUTCOME_FIELDS = (
    ("conversion", "converted", "mean_conversion"),
    ("unsubscription", "unsubscribed", "mean_unsubscription"),
)


class IdMap:
    """Dense int ids for string ids, in the order first seen."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        return self._ids.setdefault(key, len(self._ids))


@dataclass
class OpenBatch:
    """One batch's records so far.

    Attributes:
        batch_id: The batch.
        decisions: user_id -> decoded decision.
        contexts: user_id -> decoded decision context.
        report: The decoded allocation report, once read.
        feedback: Its feedback records read so far.
        last_record_s: Monotonic time of the last record of this batch (its feedback included).
    """

    batch_id: str
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    feedback: list[FeedbackRecord] = field(default_factory=list)
    last_record_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Whether every decision and context the report announces is in."""
        if self.report is None:
            return False
        n_users = int(self.report["n_users"])
        n_fallback = int(self.report.get("n_fallback", 0) or 0)
        return len(self.decisions) >= n_users and len(self.contexts) >= n_users - n_fallback


def check_decision(value: dict[str, Any]) -> None:
    """Reject a decision whose shares the metrics cannot read (propensity or x outside [0, 1], NaN).

    Raises:
        ValidationError: naming the field.
    """
    for share in value["allocation"]:
        p = share.get("propensity")
        for name, v in (("x", share["x"]), ("propensity", p)):
            if v is not None and not (math.isfinite(v) and -1e-9 <= v <= 1 + 1e-9):
                raise ValidationError(f"decision {value['decision_id']}: allocation {name} {v} is not in [0, 1]")


def check_context(value: dict[str, Any]) -> None:
    """Reject a context with non-finite features or means, or features of unequal widths.

    Raises:
        ValidationError: naming the field.
    """
    widths = {len(c["features"]) for c in value["candidates"]}
    if len(widths) > 1:
        raise ValidationError(f"context {value['decision_id']}: candidates' features have widths {sorted(widths)}")
    for c in value["candidates"]:
        if not all(math.isfinite(f) for f in c["features"]):
            raise ValidationError(f"context {value['decision_id']}: non-finite feature")
        for _, _, key in OUTCOME_FIELDS:
            v = c.get(key)
            if v is not None and not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValidationError(f"context {value['decision_id']}: {key} {v} is not in [0, 1]")


def observation(
    batch: OpenBatch,
    sequence: int,
    users: IdMap,
    items: IdMap,
    outcomes: dict[str, tuple[list[float], list[float]]],
) -> tuple[BatchObservation, dict[str, int]]:
    """The monitor's view of a complete batch.

    Args:
        batch: The batch.
        sequence: Its position among the closed batches.
        users: The worker's user ids.
        items: The worker's item ids.
        outcomes: Outcome -> ``(predicted, observed)`` of the feedback joined at this closing.

    Returns:
        The observation (propensities from the decisions' allocation, ``x`` where a share has
        none; features and predictions of the candidates that have a context, features only when
        every context carries them) and the counts of the record (``n_users``, ``n_pairs``,
        ``n_contexts``).
    """
    pair_user: list[int] = []
    pair_item: list[int] = []
    names: list[str] = []
    propensity: list[float] = []
    for user_id, d in batch.decisions.items():
        u = users(user_id)
        for share in d["allocation"]:
            pair_user.append(u)
            pair_item.append(items(share["item_id"]))
            names.append(share["item_id"])
            p = share.get("propensity")
            propensity.append(float(share["x"] if p is None else p))
    # Equal propensities in a user's top K go to the smaller item name (the ids are first-seen order).
    tie = np.unique(np.array(names, dtype=str), return_inverse=True)[1].astype(np.int64) if names else None
    features: list[list[float]] = []
    predicted: dict[str, list[float]] = {name: [] for name, _, _ in OUTCOME_FIELDS}
    has_means = {name: True for name, _, _ in OUTCOME_FIELDS}
    for ctx in batch.contexts.values():
        for c in ctx["candidates"]:
            features.append(c["features"])
            for name, _, key in OUTCOME_FIELDS:
                v = c.get(key)
                if v is None:
                    has_means[name] = False
                else:
                    predicted[name].append(float(v))
    widths = {len(f) for f in features}
    feature_array = np.array(features, dtype=float) if features and len(widths) == 1 and 0 not in widths else None
    obs = BatchObservation(
        batch=sequence,
        pair_user=np.array(pair_user, dtype=np.int64),
        pair_item=np.array(pair_item, dtype=np.int64),
        propensity=np.clip(np.array(propensity, dtype=float), 0.0, 1.0),
        features=feature_array,
        predicted={k: np.array(v) for k, v in predicted.items() if v and has_means[k]},
        outcomes={k: (np.array(p, dtype=float), np.array(y, dtype=float)) for k, (p, y) in outcomes.items()},
        tie=tie,
    )
    counts = {"n_users": len(batch.decisions), "n_pairs": len(pair_user), "n_contexts": len(batch.contexts)}
    return obs, counts


class ContextIndex:
    """The calibrated means of every candidate of the contexts of the last ``batches`` batches, by
    ``(decision_id, item_id)``: what a feedback record is joined with."""

    def __init__(self, batches: int = 16) -> None:
        self.batches = batches
        self._by_batch: OrderedDict[str, dict[tuple[str, str], tuple[float | None, float | None]]] = OrderedDict()

    def add(self, value: dict[str, Any]) -> None:
        """Index one decision context."""
        means = self._by_batch.setdefault(value["batch_id"], {})
        self._by_batch.move_to_end(value["batch_id"])
        for c in value["candidates"]:
            means[(value["decision_id"], c["item_id"])] = (c.get("mean_conversion"), c.get("mean_unsubscription"))
        while len(self._by_batch) > self.batches:
            self._by_batch.popitem(last=False)

    def take(self, batch_id: str, decision_id: str, item_id: str) -> tuple[float | None, float | None] | None:
        """The means of one sent candidate, removed so that a replayed feedback record finds none;
        None when its context is not (or no longer) known, or was taken."""
        return self._by_batch.get(batch_id, {}).pop((decision_id, item_id), None)
