"""Typed, validated values of the records the workers consume.

Decoders turn Avro dicts into these frozen values at the edge and raise
``ValidationError`` for anything unusable (NaN/inf, empty or oversized candidate lists,
ragged feature lengths), so the code inside trusts its inputs. The serde decodes the
candidates and scored items of the hot subjects as numpy columns
(``streams.avro.columns``); those are taken as they are, with the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.avro.candidates import CandidateColumns
from streams.avro.scores import ScoredItems
from streams.errors import ValidationError

MAX_CANDIDATES = 1_000
OUTCOMES: tuple[str, ...] = ("conversion", "unsubscription", "value")


def _finite(name: str, arr: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValidationError(f"{name} holds a NaN or infinite value at index {bad}")
    return arr


def _matrix(name: str, rows: list[list[float]], allow_empty: bool = False) -> np.ndarray:
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ValidationError(f"{name} have different lengths across candidates: {sorted(lengths)}")
    width = lengths.pop() if lengths else 0
    if width == 0 and not allow_empty:
        raise ValidationError(f"{name} are empty")
    arr = np.asarray(rows, dtype=np.float32).reshape(len(rows), width)
    return _finite(name, arr)


def _draws(samples: dict[str, np.ndarray], further: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``{outcome: (K, n)}``: ``samples`` as draw 0, then each further draw, which must hold
    every outcome of ``samples``, finite."""
    for d, draw in enumerate(further, start=2):
        missing = [o for o in samples if o not in draw]
        if missing:
            raise ValidationError(f"Thompson draw {d} lacks outcome(s) {missing} that draw 1 has")
    return {
        o: _finite(f"draws[{o}]", np.stack([s, *(np.asarray(draw[o], dtype=np.float64) for draw in further)]))
        for o, s in samples.items()
    }


def _scored_columns(items: ScoredItems) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(samples, means)`` of ``items``, ``{outcome: (n,) float64}`` over the samples' outcomes
    (a mean the item lacks is NaN); samples must be finite.

    The values are copied once into an ``(m, n)`` block whose rows are the columns (the
    dicts hold row views) and the samples are checked for NaN/inf in one pass (per key only
    to name the first bad one).
    """
    s_keys, m_keys = items.keys[0], items.keys[1]
    k = len(s_keys)
    block = np.array(items.values.T, dtype=np.float64, order="C")  # (m, n): samples, means, stds
    if not np.isfinite(block[:k]).all():
        for key, row in zip(s_keys, block):
            _finite(f"samples[{key}]", row)
    samples = dict(zip(s_keys, block))
    if m_keys == s_keys:
        means = dict(zip(s_keys, block[k : 2 * k]))
    else:
        columns = items.means
        means = {
            key: np.array(columns[key], dtype=np.float64) if key in columns else np.full(len(items), np.nan)
            for key in s_keys
        }
    return samples, means


@dataclass(frozen=True, eq=False)
class CandidatesRecord:
    """One user's candidates for one batch.

    Attributes:
        item_ids, provider_ids: ``(n,)`` lists of strings.
        features: ``(n, d)`` float32 pair features for the neural model.
        item_features: ``(n, k)`` float32 features of the per-user head (``k`` may be 0).
    """

    batch_id: str
    user_id: str
    user_cap: int | None
    item_ids: tuple[str, ...]
    provider_ids: tuple[str, ...]
    features: np.ndarray
    item_features: np.ndarray

    @classmethod
    def from_avro(cls, value: dict[str, Any], max_candidates: int = MAX_CANDIDATES) -> CandidatesRecord:
        """From a decoded ``candidates`` value: plain dicts, or the serde's columns (same checks)."""
        cands = value["candidates"]
        if not cands:
            raise ValidationError(f"user {value['user_id']} in batch {value['batch_id']} has no candidates")
        if len(cands) > max_candidates:
            raise ValidationError(f"{len(cands)} candidates exceed the limit of {max_candidates}")
        columns = isinstance(cands, CandidateColumns)
        items = cands.item_ids if columns else tuple(c["item_id"] for c in cands)
        if len(set(items)) != len(items):
            raise ValidationError("duplicate item_id among the candidates")
        cap = value.get("user_cap")
        if cap is not None and cap < 0:
            raise ValidationError(f"user_cap {cap} is negative")
        if columns:
            providers = cands.provider_ids
            if not cands.features.shape[1]:
                raise ValidationError("features are empty")
            features = _finite("features", cands.features.astype(np.float32, copy=False))
            item_features = _finite("item_features", cands.item_features.astype(np.float32, copy=False))
        else:
            providers = tuple(c["provider_id"] for c in cands)
            features = _matrix("features", [c["features"] for c in cands])
            item_features = _matrix("item_features", [c.get("item_features", []) for c in cands], allow_empty=True)
        return cls(
            batch_id=value["batch_id"],
            user_id=value["user_id"],
            user_cap=cap,
            item_ids=items,
            provider_ids=providers,
            features=features,
            item_features=item_features,
        )


@dataclass(frozen=True)
class FeedbackRecord:
    """Observed outcomes of one sent item."""

    decision_id: str
    batch_id: str
    user_id: str
    item_id: str
    converted: bool
    unsubscribed: bool
    value: float
    observed_at_ms: int

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> FeedbackRecord:
        v = float(value["value"])
        if not np.isfinite(v):
            raise ValidationError(f"feedback value is {v}")
        if v < 0:
            raise ValidationError(f"feedback value {v} is negative")
        return cls(
            value["decision_id"],
            value["batch_id"],
            value["user_id"],
            value["item_id"],
            bool(value["converted"]),
            bool(value["unsubscribed"]),
            v,
            int(value["observed_at_ms"]),
        )

    @property
    def feedback_id(self) -> str:
        """Idempotency key: one outcome per (decision, item)."""
        return f"{self.decision_id}#{self.item_id}"


@dataclass(frozen=True)
class BudgetSpec:
    name: str
    outcome: str
    limit: float


@dataclass(frozen=True)
class ProviderSpec:
    provider_id: str
    min_exposure: float
    max_exposure: float  # +inf when unbounded


@dataclass(frozen=True)
class BatchControlRecord:
    """A batch opened or closed, with its constraints."""

    batch_id: str
    event: str
    expected_users: int
    timeout_ms: int
    created_at_ms: int
    default_user_cap: int
    budgets: tuple[BudgetSpec, ...]
    providers: tuple[ProviderSpec, ...]
    reward_outcome: str
    user_ids: tuple[str, ...] | None = None  # the batch's users when the producer lists them

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> BatchControlRecord:
        budgets = tuple(BudgetSpec(b["name"], b["outcome"], float(b["limit"])) for b in value.get("budgets", []))
        for b in budgets:
            if not np.isfinite(b.limit):
                raise ValidationError(f"budget {b.name} has limit {b.limit}")
            if b.outcome not in OUTCOMES + ("reward",):
                raise ValidationError(f"budget {b.name} names unknown outcome {b.outcome!r}")
        providers = tuple(
            ProviderSpec(
                p["provider_id"],
                float(p["min_exposure"]),
                float("inf") if p.get("max_exposure") is None else float(p["max_exposure"]),
            )
            for p in value.get("providers", [])
        )
        for p in providers:
            if not np.isfinite(p.min_exposure) or np.isnan(p.max_exposure) or p.min_exposure > p.max_exposure:
                raise ValidationError(f"provider {p.provider_id} has bounds [{p.min_exposure}, {p.max_exposure}]")
        if value["expected_users"] < 0 or value["default_user_cap"] < 0:
            raise ValidationError("expected_users and default_user_cap must be >= 0")
        users = value.get("user_ids")
        if users is not None and len(set(users)) != value["expected_users"]:
            raise ValidationError(
                f"user_ids lists {len(set(users))} distinct users, expected_users says {value['expected_users']}"
            )
        return cls(
            value["batch_id"],
            value["event"],
            int(value["expected_users"]),
            int(value["timeout_ms"]),
            int(value["created_at_ms"]),
            int(value["default_user_cap"]),
            budgets,
            providers,
            value.get("reward_outcome", "reward"),
            None if value.get("user_ids") is None else tuple(value["user_ids"]),
        )

    def to_avro(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "event": self.event,
            "expected_users": self.expected_users,
            "timeout_ms": self.timeout_ms,
            "created_at_ms": self.created_at_ms,
            "default_user_cap": self.default_user_cap,
            "budgets": [{"name": b.name, "outcome": b.outcome, "limit": b.limit} for b in self.budgets],
            "providers": [
                {
                    "provider_id": p.provider_id,
                    "min_exposure": p.min_exposure,
                    "max_exposure": None if np.isinf(p.max_exposure) else p.max_exposure,
                }
                for p in self.providers
            ],
            "reward_outcome": self.reward_outcome,
            "user_ids": None if self.user_ids is None else list(self.user_ids),
        }


@dataclass(frozen=True, eq=False)
class ScoresRecord:
    """Sampled scores of one user's candidates, as the allocator needs them.

    Attributes:
        samples: ``{outcome: (n,) float64}`` calibrated Thompson samples (incl. ``reward``).
        means: ``{outcome: (n,) float64}`` calibrated means.
        draws: ``{outcome: (K, n) float64}``, the K Thompson draws (``samples`` is draw 0).
    """

    batch_id: str
    user_id: str
    user_cap: int | None  # None: the batch's default cap
    model_name: str
    model_version: int
    parameter_version: str
    item_ids: tuple[str, ...]
    provider_ids: tuple[str, ...]
    samples: dict[str, np.ndarray]
    means: dict[str, np.ndarray]
    draws: dict[str, np.ndarray]

    @property
    def n_draws(self) -> int:
        return int(next(iter(self.draws.values())).shape[0]) if self.draws else 1

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> ScoresRecord:
        """From a decoded ``scores`` value: plain dicts, or the serde's columns (same checks)."""
        items = value["items"]
        if not items:
            raise ValidationError(f"scores for user {value['user_id']} list no items")
        if isinstance(items, ScoredItems):  # one set of outcomes for every item, by construction
            item_ids, provider_ids = items.item_ids, items.provider_ids
            samples, means = _scored_columns(items)
            further = [items._map(i) for i in range(3, len(items.keys))]
        else:
            keys = set(items[0]["samples"])
            for it in items:
                if set(it["samples"]) != keys:
                    raise ValidationError("scored items disagree on their outcomes")
            samples = {
                k: _finite(f"samples[{k}]", np.array([it["samples"][k] for it in items], dtype=np.float64))
                for k in keys
            }
            means = {k: np.array([it["means"].get(k, np.nan) for it in items], dtype=np.float64) for k in keys}
            item_ids = tuple(it["item_id"] for it in items)
            provider_ids = tuple(it["provider_id"] for it in items)
            n_further = len(items[0].get("draws", ()))
            if any(len(it.get("draws", ())) != n_further for it in items):
                raise ValidationError("scored items disagree on their number of Thompson draws")
            further = [
                {
                    k: np.array([it["draws"][d].get(k, np.nan) for it in items], dtype=np.float64)
                    for k in items[0]["draws"][d]
                }
                for d in range(n_further)
            ]
        cap = value.get("user_cap")
        if cap is not None and cap < 0:
            raise ValidationError(f"user_cap {cap} is negative")
        return cls(
            value["batch_id"],
            value["user_id"],
            cap,
            value["model_name"],
            int(value["model_version"]),
            value.get("parameter_version", "default"),
            item_ids,
            provider_ids,
            samples,
            means,
            _draws(samples, further),
        )
