"""What makes a record of each input subject invalid: the contract the workers enforce, as rules.

A ``FieldRule`` names a place in a decoded value and a kind of damage that makes any valid
record invalid there; ``RULES`` lists them per subject. The limits are the workers' own
(``streams.records``, ``streams.score.parameter_feed``), so a rule says "one more than the
consumer takes", not a number of its own.

Paths are keys into the decoded value; ``"[]"`` is a random element of the list there, ``"{}"``
a random value of the map there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.records import MAX_BUDGETS, MAX_CANDIDATES, MAX_FEATURES
from streams.score.parameter_feed import MAX_ARMS

#: The kinds of value damage (``streams.fuzz.mutations.VALUE_KINDS`` implements each).
KINDS = (
    "non_finite",  # NaN, +inf or -inf where a finite number is required
    "negative",  # a negative count, cap, time, limit, value or std
    "below_one",  # 0 or a negative version
    "bad_id",  # an empty id, or one over streams.records.MAX_ID_CHARS
    "oversized",  # an id so long that the record is near the broker's size limit
    "unknown_name",  # an outcome, event or kind the consumer does not know
    "unknown_ref",  # a batch or decision nobody opened or made
    "over_cap",  # a list one or a few elements over the consumer's limit (arg: the limit)
    "empty",  # an empty list where one element at least is required
    "duplicate",  # two list elements with the same id (arg: the id's key)
    "ragged",  # list elements whose inner lists (arg: their key) differ in length
    "drop_key",  # one map of a list lacks a key the others have
    "corrupt",  # snapshot bytes with one byte changed (their checksum fails)
    "truncate",  # snapshot bytes cut short
    "mismatch",  # a number the record repeats elsewhere (a snapshot's version), changed here only
    "inverted",  # a minimum above its maximum
    "bad_sum",  # shares that do not sum to 1
)


@dataclass(frozen=True)
class FieldRule:
    """One way to make a valid record of a subject invalid.

    Attributes:
        path: where (see the module docstring).
        kind: one of ``KINDS``.
        arg: the kind's parameter (the limit of ``over_cap``, the id key of ``duplicate``,
            the inner list of ``ragged``).
        only_if: ``(key, value)``: the rule applies only to records whose top-level ``key`` is
            ``value`` (a CLOSED of a batch never opened is unknown; an OPENED of a new one is
            simply a new batch).
    """

    path: tuple[str, ...]
    kind: str
    arg: Any = None
    only_if: tuple[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}")

    def applies(self, value: dict[str, Any]) -> bool:
        return self.only_if is None or value.get(self.only_if[0]) == self.only_if[1]

    def __str__(self) -> str:
        return f"{self.kind} {'.'.join(self.path)}"


def _ids(*paths: tuple[str, ...]) -> list[FieldRule]:
    return [FieldRule(p, "bad_id") for p in paths]


RULES: dict[str, tuple[FieldRule, ...]] = {
    "candidates": (
        *_ids(("batch_id",), ("user_id",), ("candidates", "[]", "item_id"), ("candidates", "[]", "provider_id")),
        FieldRule(("user_id",), "oversized"),
        FieldRule(("created_at_ms",), "negative"),
        FieldRule(("user_cap",), "negative"),
        FieldRule(("candidates",), "over_cap", MAX_CANDIDATES),
        FieldRule(("candidates",), "empty"),
        FieldRule(("candidates",), "duplicate", "item_id"),
        FieldRule(("candidates",), "ragged", "features"),
        FieldRule(("candidates", "[]", "features"), "over_cap", MAX_FEATURES),
        FieldRule(("candidates", "[]", "features", "[]"), "non_finite"),
        FieldRule(("candidates", "[]", "item_features", "[]"), "non_finite"),
    ),
    "feedback": (
        *_ids(("decision_id",), ("batch_id",), ("user_id",), ("item_id",), ("source",)),
        FieldRule(("user_id",), "oversized"),
        FieldRule(("decision_id",), "unknown_ref"),
        FieldRule(("value",), "non_finite"),
        FieldRule(("value",), "negative"),
        FieldRule(("observed_at_ms",), "negative"),
    ),
    "batch-control": (
        *_ids(("batch_id",), ("budgets", "[]", "name"), ("providers", "[]", "provider_id")),
        FieldRule(("batch_id",), "oversized"),
        FieldRule(("batch_id",), "unknown_ref", only_if=("event", "CLOSED")),
        FieldRule(("expected_users",), "negative"),
        FieldRule(("timeout_ms",), "negative"),
        FieldRule(("created_at_ms",), "negative"),
        FieldRule(("default_user_cap",), "negative"),
        FieldRule(("reward_outcome",), "unknown_name"),
        FieldRule(("budgets",), "over_cap", MAX_BUDGETS),
        FieldRule(("budgets",), "duplicate", "name"),
        FieldRule(("budgets", "[]", "outcome"), "unknown_name"),
        FieldRule(("budgets", "[]", "limit"), "non_finite"),
        FieldRule(("budgets", "[]", "limit"), "negative"),
        FieldRule(("providers",), "duplicate", "provider_id"),
        FieldRule(("providers", "[]", "min_exposure"), "non_finite"),
        FieldRule(("providers", "[]", "min_exposure"), "negative"),
        FieldRule(("providers", "[]", "max_exposure"), "non_finite"),
        FieldRule(("providers", "[]"), "inverted"),
    ),
    "scores": (
        *_ids(("batch_id",), ("user_id",), ("model_name",), ("parameter_version",), ("items", "[]", "item_id")),
        *_ids(("items", "[]", "provider_id")),
        FieldRule(("user_id",), "oversized"),
        FieldRule(("batch_id",), "unknown_ref"),
        FieldRule(("user_cap",), "negative"),
        FieldRule(("scored_at_ms",), "negative"),
        FieldRule(("model_version",), "negative"),
        FieldRule(("tau",), "non_finite"),
        FieldRule(("tau",), "negative"),
        FieldRule(("items",), "over_cap", MAX_CANDIDATES),
        FieldRule(("items",), "empty"),
        FieldRule(("items",), "duplicate", "item_id"),
        FieldRule(("items",), "ragged", "features"),
        FieldRule(("items", "[]", "samples"), "drop_key"),
        FieldRule(("items", "[]", "samples", "{}"), "non_finite"),
        FieldRule(("items", "[]", "means", "{}"), "non_finite"),
        FieldRule(("items", "[]", "stds", "{}"), "non_finite"),
        FieldRule(("items", "[]", "stds", "{}"), "negative"),
    ),
    "model-snapshots": (
        *_ids(("name",), ("kind",)),
        FieldRule(("name",), "oversized"),
        FieldRule(("version",), "below_one"),
        FieldRule(("version",), "mismatch"),
        FieldRule(("kind",), "unknown_name"),
        FieldRule(("created_at_ms",), "negative"),
        FieldRule(("n_observations",), "negative"),
        FieldRule(("payload",), "corrupt"),
        FieldRule(("payload",), "truncate"),
    ),
    "parameter-distribution": (
        *_ids(("experiment",), ("arms", "[]", "arm_id")),
        FieldRule(("experiment",), "oversized"),
        FieldRule(("version",), "below_one"),
        FieldRule(("created_at_ms",), "negative"),
        FieldRule(("arms",), "empty"),
        FieldRule(("arms",), "over_cap", MAX_ARMS),
        FieldRule(("arms",), "duplicate", "arm_id"),
        FieldRule(("arms", "[]", "parameters", "{}"), "non_finite"),
        FieldRule(("arms", "[]", "parameters", "tau"), "negative"),
        FieldRule(("arms", "[]", "probability"), "non_finite"),
        FieldRule(("arms", "[]", "probability"), "negative"),
        FieldRule(("arms",), "bad_sum"),
    ),
}

#: Compacted topics, where a tombstone (null value) deletes a key and is valid.
COMPACTED = frozenset({"model-snapshots", "parameter-distribution"})
