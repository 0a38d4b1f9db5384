"""Decision contexts: what each decision was made from, published beside it for replaying it.

For every decided user the allocator writes one ``decision-contexts`` record (key user_id) in the
same transaction as the decision: every candidate with the features its scores record carried,
the policy's send probability, the rounded plan's x and the scorer's calibrated means of
conversion, unsubscription and value, with the policy, K, model, τ and the user's cap. Together
with the batch's constraints (batch-control) and the feedback (joined by decision id and item),
that is what ``streams.replay`` needs to estimate another policy's reward and constraint usage
from the logs (off-policy evaluation).

``ScoresRecord`` keeps what the LP needs; the two things only the context needs, the scores
record's τ and pair features, are read from the decoded value here (:class:`ScoresContext`) and
held beside the batch's window (:class:`ScoresContexts`) until it is decided.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.avro.contexts import ContextColumns
from streams.avro.scores import ScoredItems
from streams.avro.serde import AvroSerde
from streams.decide.batch_lp import BatchLP
from streams.errors import ValidationError
from streams.records import MAX_FEATURES


@dataclass(frozen=True, eq=False)
class ScoresContext:
    """What a decision context takes from one scores record besides the ``ScoresRecord``.

    Attributes:
        tau: the Thompson temperature the scores were drawn at (NaN: the record did not say).
        features: ``(n, d)`` float32 pair features of the record's items (``d = 0`` when the
            scorer did not copy them).
    """

    tau: float
    features: np.ndarray

    @classmethod
    def from_avro(cls, value: Mapping[str, Any]) -> ScoresContext:
        """From a decoded ``scores`` value (plain dicts, or the serde's columns).

        Raises:
            ValidationError: τ or a feature is NaN/inf, the items' feature lengths differ, or
                they exceed ``MAX_FEATURES`` (the columnar items' width is checked here; a
                plain value's, by ``ScoresRecord.from_avro`` too).
        """
        raw = value.get("tau")
        tau = math.nan if raw is None else float(raw)
        if raw is not None and not math.isfinite(tau):
            raise ValidationError(f"scores tau is {tau}")
        items = value["items"]
        if isinstance(items, ScoredItems):  # the columnar codec's items: one width, (n, d) float32
            features = items.features
        else:
            rows = [it.get("features", []) for it in items]
            widths = {len(r) for r in rows}
            if len(widths) > 1:
                raise ValidationError(f"scored items' features have different lengths: {sorted(widths)}")
            features = np.asarray(rows, dtype=np.float32).reshape(len(rows), widths.pop() if widths else 0)
        if features.shape[1] > MAX_FEATURES:
            raise ValidationError(f"{features.shape[1]} features of a scored item exceed the limit of {MAX_FEATURES}")
        if not np.isfinite(features).all():
            raise ValidationError("scored items' features hold a NaN or infinite value")
        return cls(tau, features)


class ScoresContexts:
    """Per undecided batch, per user, the :class:`ScoresContext` of the scores record the window kept.

    The window keeps a user's first scores record; so does :meth:`add`. A batch's contexts are
    dropped when it is decided or dropped, and all of them when the worker rewinds.
    """

    def __init__(self) -> None:
        self._by_batch: dict[str, dict[str, ScoresContext]] = {}

    def add(self, batch_id: str, user_id: str, context: ScoresContext) -> None:
        """Keep ``context`` for (batch, user) unless one is kept already (the first wins)."""
        self._by_batch.setdefault(batch_id, {}).setdefault(user_id, context)

    def of(self, batch_id: str) -> Mapping[str, ScoresContext]:
        """user_id -> context of one batch (empty when none was kept)."""
        return self._by_batch.get(batch_id, {})

    def drop(self, batch_id: str) -> None:
        self._by_batch.pop(batch_id, None)

    def clear(self) -> None:
        self._by_batch.clear()

    def __len__(self) -> int:
        return len(self._by_batch)


def context_columns(
    lp: BatchLP,
    batch_id: str,
    *,
    x: np.ndarray,
    propensity: np.ndarray,
    contexts: Mapping[str, ScoresContext],
    policy: str | Sequence[str],
    n_draws: int,
    rounding: str,
    decided_at_ms: int,
) -> ContextColumns:
    """The contexts of one decided batch, in the LP's user and pair order (the decisions').

    Args:
        lp: the batch's LP (its records, users and pairs).
        batch_id: the batch.
        x: ``(E,)`` the rounded plan's LP values.
        propensity: ``(E,)`` every pair's send probability under the policy.
        contexts: user_id -> the scores record's τ and features; a user without one gets NaN τ
            (null) and no features.
        policy, n_draws, rounding, decided_at_ms: as the decisions carry them (``policy``: one
            name, or ``(n,)`` one per user).
    """
    sizes = np.diff(lp.starts).tolist()
    absent = ScoresContext(math.nan, np.zeros((0, 0), dtype=np.float32))
    per_user = [contexts.get(user, absent) for user in lp.user_ids]
    features: Sequence[np.ndarray] = [
        c.features if c.features.shape[0] == n else np.zeros((n, 0), dtype=np.float32) for c, n in zip(per_user, sizes)
    ]

    def means(outcome: str) -> np.ndarray:
        """``(E,)`` the outcome's calibrated mean over all pairs (NaN where a record has none)."""
        if not lp.records:
            return np.zeros(0)
        return np.concatenate(
            [np.asarray(r.means.get(outcome, np.full(n, np.nan)), dtype=np.float64) for r, n in zip(lp.records, sizes)]
        )

    return ContextColumns(
        batch_id=batch_id,
        user_ids=lp.user_ids,
        starts=lp.starts,
        item=lp.item,
        item_names=lp.item_names,
        provider=lp.provider,
        provider_names=lp.provider_names,
        features=features,
        propensity=np.asarray(propensity, dtype=np.float64),
        x=np.asarray(x, dtype=np.float64),
        mean_conversion=means("conversion"),
        mean_unsubscription=means("unsubscription"),
        mean_value=means("value"),
        model_names=[r.model_name for r in lp.records],
        model_versions=[r.model_version for r in lp.records],
        parameter_versions=[r.parameter_version for r in lp.records],
        taus=np.array([c.tau for c in per_user], dtype=np.float64),
        user_caps=[int(k) for k in lp.user_cap.tolist()],
        policy=policy,
        n_draws=int(n_draws),
        rounding=rounding,
        decided_at_ms=int(decided_at_ms),
    )


def encode_contexts(serde: AvroSerde, columns: ContextColumns) -> list[tuple[bytes, bytes]]:
    """``(user key, decision-contexts value)`` per user of ``columns``, in its order."""
    return [(user.encode(), value) for user, value in zip(columns.user_ids, serde.encode_contexts(columns))]
