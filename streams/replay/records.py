"""Typed, validated values of the logged records a replay joins: decision contexts and decisions.

Decoded Avro dicts become these frozen values at the edge; anything unusable raises
``streams.errors.ValidationError`` (the reader dead-letters it and counts it). Feedback and
batch-control are read with ``streams.records``' own values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.errors import ValidationError

#: The means a context candidate carries, in the order of :attr:`ContextRecord.means`'s columns.
MEAN_FIELDS: tuple[str, ...] = ("mean_conversion", "mean_unsubscription", "mean_value")


def _nullable(values: list[Any]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class ContextRecord:
    """One decision's context: its ``n`` candidates as columns.

    Attributes:
        item_ids, provider_ids: ``(n,)`` the candidates.
        features: ``(n, d)`` float32 pair features (``d`` may be 0).
        propensity: ``(n,)`` float64 in [0, 1], the policy's send probability of each candidate.
        x: ``(n,)`` float64 in [0, 1], the rounded plan's value.
        means: ``(n, 3)`` float64 calibrated means of conversion, unsubscription and value
            (:data:`MEAN_FIELDS`), NaN where the record had none.
    """

    decision_id: str
    batch_id: str
    user_id: str
    policy: str
    n_draws: int
    user_cap: int
    item_ids: tuple[str, ...]
    provider_ids: tuple[str, ...]
    features: np.ndarray
    propensity: np.ndarray
    x: np.ndarray
    means: np.ndarray

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> ContextRecord:
        """From a decoded ``decision-contexts`` value.

        Raises:
            ValidationError: no candidates, repeated items, features of different lengths or not
                finite, a propensity or x outside [0, 1] (or NaN), a negative cap, an infinite mean.
        """
        cands = value["candidates"]
        where = f"context {value['decision_id']}"
        if not cands:
            raise ValidationError(f"{where} has no candidates")
        items = tuple(c["item_id"] for c in cands)
        if len(set(items)) != len(items):
            raise ValidationError(f"{where} repeats an item among its candidates")
        widths = {len(c["features"]) for c in cands}
        if len(widths) > 1:
            raise ValidationError(f"{where}: candidates' features have different lengths {sorted(widths)}")
        features = np.array([c["features"] for c in cands], dtype=np.float32).reshape(len(cands), widths.pop())
        propensity = np.array([c["propensity"] for c in cands], dtype=np.float64)
        x = np.array([c["x"] for c in cands], dtype=np.float64)
        means = np.stack([_nullable([c[f] for c in cands]) for f in MEAN_FIELDS], axis=1)
        for name, arr in (("propensity", propensity), ("x", x)):
            if not np.all((arr >= 0) & (arr <= 1)):  # NaN fails both
                raise ValidationError(f"{where}: {name} must lie in [0, 1]")
        if not np.isfinite(features).all() or np.isinf(means).any():
            raise ValidationError(f"{where}: a feature or mean is infinite or NaN")
        if value["user_cap"] < 0 or value["n_draws"] < 1:
            raise ValidationError(f"{where}: user_cap {value['user_cap']} or n_draws {value['n_draws']} out of range")
        return cls(
            value["decision_id"],
            value["batch_id"],
            value["user_id"],
            value["policy"],
            int(value["n_draws"]),
            int(value["user_cap"]),
            items,
            tuple(c["provider_id"] for c in cands),
            features,
            propensity,
            x,
            means,
        )


@dataclass(frozen=True)
class DecisionRecord:
    """What a replay needs of a decision: who it was for and which items it sent."""

    decision_id: str
    batch_id: str
    user_id: str
    chosen: tuple[str, ...]

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> DecisionRecord:
        """From a decoded ``decisions`` value.

        Raises:
            ValidationError: an item chosen twice.
        """
        chosen = tuple(c["item_id"] for c in value["chosen"])
        if len(set(chosen)) != len(chosen):
            raise ValidationError(f"decision {value['decision_id']} chooses an item twice")
        return cls(value["decision_id"], value["batch_id"], value["user_id"], chosen)
