"""Learning from one feedback record, pure: feedback + its decision context + the user's head ->
the new head, the training row and the metrics of the take (no Kafka, no tables).

The decision context is what the scorer stored for the user's batch (``score.batch``): the
pair features, the item features the user's effect acts on, the global model's mean
conversion of each item, against which the user's residual is measured, and each item's
calibrated mean unsubscription before cost pacing, which the training row carries to the
trainer as the cost budgeted for the send (``budgeted_unsub``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models import random_effects
from streams.learn.state_codec import unpack
from streams.learn.user_state import UserState
from streams.records import FeedbackRecord


@dataclass(frozen=True, eq=False)
class DecisionContext:
    """One user's scored batch as the scorer stored it.

    Attributes:
        features: ``(n_items, d)`` pair features.
        item_features: ``(n_items, k)`` features of the user's random effect.
        p_conversion: ``(n_items,)`` the global model's mean conversion probability.
        batch_id, items, model_version: what was scored, in that row order.
        p_unsub: ``(n_items,)`` the calibrated mean unsubscription probability before the
            pacing factor; None in a context stored before the scorer kept it.
    """

    features: np.ndarray
    item_features: np.ndarray
    p_conversion: np.ndarray
    batch_id: str
    items: list[str]
    model_version: int
    p_unsub: np.ndarray | None = None

    @classmethod
    def decode(cls, data: bytes) -> DecisionContext:
        arrays, meta = unpack(data)
        return cls(
            arrays["features"],
            arrays["item_features"],
            arrays["p_conversion"],
            str(meta["batch_id"]),
            list(meta["items"]),
            int(meta["model_version"]),
            arrays.get("p_unsub"),
        )

    def holds(self, fb: FeedbackRecord) -> bool:
        """True when this is the context of ``fb``'s decision (its batch, and its item among the scored)."""
        return self.batch_id == fb.batch_id and fb.item_id in self.items


@dataclass(frozen=True, eq=False)
class Learned:
    """What one new feedback record changes: the user's head and the training row it yields."""

    state: UserState
    training_row: dict[str, Any]


def learn(
    fb: FeedbackRecord, context: DecisionContext, state: UserState, noise_var: float, seen_limit: int
) -> Learned | None:
    """Absorb ``fb`` into the user's head; None when the head has already absorbed it (a redelivery).

    The head learns the residual of the global model's conversion, ``y - p_global``, on the item's
    features (``models.random_effects.update``); the training row carries the pair features and
    the outcomes for the trainer, and the context's ``p_unsub`` of the item as ``budgeted_unsub``
    (None when the context has none).
    """
    if state.has_seen(fb.feedback_id):
        return None
    j = context.items.index(fb.item_id)
    A, b = state.A, state.b
    if context.item_features.shape[1]:
        residual = float(fb.converted) - float(context.p_conversion[j])
        A, b = random_effects.update(
            A, b, context.item_features[j : j + 1].astype(np.float64), np.array([residual]), noise_var
        )
    row = {
        "decision_id": fb.decision_id,
        "batch_id": fb.batch_id,
        "user_id": fb.user_id,
        "item_id": fb.item_id,
        "features": context.features[j].tolist(),
        "converted": fb.converted,
        "unsubscribed": fb.unsubscribed,
        "value": fb.value,
        "model_version": context.model_version,
        "observed_at_ms": fb.observed_at_ms,
        "budgeted_unsub": None if context.p_unsub is None else float(context.p_unsub[j]),
    }
    return Learned(state.absorbed(A, b, fb.feedback_id, seen_limit), row)


@dataclass
class FeedbackMetrics:
    """Outcomes of the feedback applied in one take, for the ``metrics`` topic (per tuner arm)."""

    arm_id: str = "default"
    n: int = 0
    conversions: int = 0
    unsubscriptions: int = 0
    value_sum: float = 0.0

    def add(self, fb: FeedbackRecord) -> None:
        self.n += 1
        self.conversions += int(fb.converted)
        self.unsubscriptions += int(fb.unsubscribed)
        self.value_sum += fb.value

    def value(self, now_ms: int) -> dict[str, Any]:
        """The ``metrics`` value of the take, ending at ``now_ms``."""
        return {
            "arm_id": self.arm_id,
            "window_start_ms": now_ms,
            "window_end_ms": now_ms,
            "n_feedback": self.n,
            "conversions": self.conversions,
            "unsubscriptions": self.unsubscriptions,
            "value_sum": self.value_sum,
        }
