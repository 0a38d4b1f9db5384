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

MAX_CANDIDATES = 1_000  # candidates of one user, and the scored items of one scores record
MAX_ID_CHARS = 1_000  # any id (user, item, batch, decision, model, arm, ...)
MAX_FEATURES = 4_096  # the width of a feature vector
MAX_DRAWS = 64  # Thompson draws in one scores record
MAX_BUDGETS = 64  # budget rows of one batch
OUTCOMES: tuple[str, ...] = ("conversion", "unsubscription", "value")


def check_id(name: str, value: Any) -> str:
    """``value`` if it is a non-empty string of at most ``MAX_ID_CHARS`` characters."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        size = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise ValidationError(f"{name} must be a non-empty string of at most {MAX_ID_CHARS} characters, got {size}")
    return value


def check_ids(name: str, values: Any) -> tuple[str, ...]:
    """``values`` as a tuple of ids (each as ``check_id``)."""
    out = tuple(values)
    if out and (min(map(len, out)) == 0 or max(map(len, out)) > MAX_ID_CHARS):
        bad = next(v for v in out if not 0 < len(v) <= MAX_ID_CHARS)
        check_id(name, bad)
    return out


def at_least(name: str, value: Any, low: int = 0) -> int:
    """``value`` if it is an integer >= ``low``."""
    if value < low:
        raise ValidationError(f"{name} {value} is below {low}")
    return int(value)


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


def _check_means_stds(means: np.ndarray, stds: np.ndarray) -> None:
    """Every mean and std on the wire finite, every std >= 0 (the same message on both paths)."""
    if not np.isfinite(means).all():
        raise ValidationError("scored items' means hold a NaN or infinite value")
    if not np.isfinite(stds).all():
        raise ValidationError("scored items' stds hold a NaN or infinite value")
    if (stds < 0).any():
        raise ValidationError("scored items' stds hold a negative value")


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
    m = len(m_keys)
    _check_means_stds(block[k : k + m], block[k + m : k + m + len(items.keys[2])])
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
        items = check_ids("item_id", cands.item_ids if columns else (c["item_id"] for c in cands))
        if len(set(items)) != len(items):
            raise ValidationError("duplicate item_id among the candidates")
        cap = value.get("user_cap")
        if cap is not None and cap < 0:
            raise ValidationError(f"user_cap {cap} is negative")
        at_least("created_at_ms", value["created_at_ms"])
        if columns:
            providers = check_ids("provider_id", cands.provider_ids)
            if not cands.features.shape[1]:
                raise ValidationError("features are empty")
            features = _finite("features", cands.features.astype(np.float32, copy=False))
            item_features = _finite("item_features", cands.item_features.astype(np.float32, copy=False))
        else:
            providers = check_ids("provider_id", (c["provider_id"] for c in cands))
            features = _matrix("features", [c["features"] for c in cands])
            item_features = _matrix("item_features", [c.get("item_features", []) for c in cands], allow_empty=True)
        for name, arr in (("features", features), ("item_features", item_features)):
            if arr.shape[1] > MAX_FEATURES:
                raise ValidationError(f"{arr.shape[1]} {name} per candidate exceed the limit of {MAX_FEATURES}")
        return cls(
            batch_id=check_id("batch_id", value["batch_id"]),
            user_id=check_id("user_id", value["user_id"]),
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
        check_id("source", value.get("source", "delivery"))
        return cls(
            check_id("decision_id", value["decision_id"]),
            check_id("batch_id", value["batch_id"]),
            check_id("user_id", value["user_id"]),
            check_id("item_id", value["item_id"]),
            bool(value["converted"]),
            bool(value["unsubscribed"]),
            v,
            at_least("observed_at_ms", value["observed_at_ms"]),
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
        """From a decoded ``batch-control`` value.

        Raises:
            ValidationError: an id empty or over ``MAX_ID_CHARS``; a negative count, cap,
                timeout or time; more than ``MAX_BUDGETS`` budgets or two of one name; a budget
                limit or exposure bound that is negative or not finite (no maximum is null);
                an unknown outcome; a minimum above its maximum; two specs of one provider;
                ``user_ids`` that are not ``expected_users`` distinct ids.
        """
        raw_budgets = value.get("budgets", [])
        if len(raw_budgets) > MAX_BUDGETS:
            raise ValidationError(f"{len(raw_budgets)} budgets exceed the limit of {MAX_BUDGETS}")
        budgets = tuple(
            BudgetSpec(check_id("budget name", b["name"]), b["outcome"], float(b["limit"])) for b in raw_budgets
        )
        for b in budgets:
            if not np.isfinite(b.limit) or b.limit < 0:
                raise ValidationError(f"budget {b.name} has limit {b.limit}")
            if b.outcome not in OUTCOMES + ("reward",):
                raise ValidationError(f"budget {b.name} names unknown outcome {b.outcome!r}")
        if len({b.name for b in budgets}) != len(budgets):
            raise ValidationError("two budgets share a name")
        reward = value.get("reward_outcome", "reward")
        if reward not in OUTCOMES + ("reward",):
            raise ValidationError(f"reward_outcome names unknown outcome {reward!r}")
        providers = []
        for p in value.get("providers", []):
            lo, hi = float(p["min_exposure"]), p.get("max_exposure")
            unbounded = float("inf") if hi is None else float(hi)
            spec = ProviderSpec(check_id("provider_id", p["provider_id"]), lo, unbounded)
            # no maximum is null; an explicit one must be a finite number
            if (
                not np.isfinite(lo)
                or lo < 0
                or (hi is not None and not np.isfinite(spec.max_exposure))
                or lo > spec.max_exposure
            ):
                raise ValidationError(f"provider {spec.provider_id} has bounds [{lo}, {hi}]")
            providers.append(spec)
        if len({p.provider_id for p in providers}) != len(providers):
            raise ValidationError("two exposure specs name the same provider")
        if value["expected_users"] < 0 or value["default_user_cap"] < 0:
            raise ValidationError("expected_users and default_user_cap must be >= 0")
        at_least("timeout_ms", value.get("timeout_ms", 0))
        at_least("created_at_ms", value["created_at_ms"])
        users = value.get("user_ids")
        if users is not None:
            check_ids("user_ids", users)
            if len(set(users)) != value["expected_users"]:
                raise ValidationError(
                    f"user_ids lists {len(set(users))} distinct users, expected_users says {value['expected_users']}"
                )
        return cls(
            check_id("batch_id", value["batch_id"]),
            value["event"],
            int(value["expected_users"]),
            int(value["timeout_ms"]),
            int(value["created_at_ms"]),
            int(value["default_user_cap"]),
            budgets,
            tuple(providers),
            reward,
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
    policy: str = "banditlp"  # whose scores: the allocator copies it onto the decision

    @property
    def n_draws(self) -> int:
        return int(next(iter(self.draws.values())).shape[0]) if self.draws else 1

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> ScoresRecord:
        """From a decoded ``scores`` value: plain dicts, or the serde's columns (same checks)."""
        items = value["items"]
        if not items:
            raise ValidationError(f"scores for user {value['user_id']} list no items")
        if len(items) > MAX_CANDIDATES:
            raise ValidationError(f"{len(items)} scored items exceed the limit of {MAX_CANDIDATES}")
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
            _check_means_stds(
                np.array([v for it in items for v in it["means"].values()], dtype=np.float64),
                np.array([v for it in items for v in it["stds"].values()], dtype=np.float64),
            )
            means = {k: np.array([it["means"].get(k, np.nan) for it in items], dtype=np.float64) for k in keys}
            item_ids = tuple(it["item_id"] for it in items)
            provider_ids = tuple(it["provider_id"] for it in items)
            widths = [len(it.get(f, ())) for it in items for f in ("features", "item_features")]
            if widths and max(widths) > MAX_FEATURES:
                raise ValidationError(f"{max(widths)} features of a scored item exceed the limit of {MAX_FEATURES}")
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
        if len(further) + 1 > MAX_DRAWS:
            raise ValidationError(f"{len(further) + 1} Thompson draws exceed the limit of {MAX_DRAWS}")
        item_ids, provider_ids = check_ids("item_id", item_ids), check_ids("provider_id", provider_ids)
        if len(set(item_ids)) != len(item_ids):
            raise ValidationError("duplicate item_id among the scored items")
        tau = value.get("tau", 0.0)
        if not np.isfinite(tau) or tau < 0:
            raise ValidationError(f"scores tau {tau} is not a finite number >= 0")
        at_least("scored_at_ms", value["scored_at_ms"])
        return cls(
            check_id("batch_id", value["batch_id"]),
            check_id("user_id", value["user_id"]),
            cap,
            check_id("model_name", value["model_name"]),
            at_least("model_version", value["model_version"]),
            check_id("parameter_version", value.get("parameter_version", "default")),
            item_ids,
            provider_ids,
            samples,
            means,
            _draws(samples, further),
            check_id("policy", value.get("policy", "banditlp")),
        )
