"""Typed records from decoded values: the serde's columns give what plain dicts give."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.avro.scores import ScoredItems
from streams.avro.serde import AvroSerde
from streams.errors import ValidationError
from streams.records import ScoresRecord
from streams.settings import Settings

FAST = Settings().serde()
REFERENCE = Settings().serde(columnar=False)

outcomes = st.sampled_from(["conversion", "unsubscription", "value", "reward"])
doubles = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def scores_bytes(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(1, 5))
    finite = st.floats(allow_nan=False, allow_infinity=False)
    samples = doubles if draw(st.booleans()) else finite  # a bad sample, sometimes
    maps = [
        {
            key: np.array(draw(st.lists(samples if m == 0 else doubles, min_size=n, max_size=n)))
            for key in draw(st.lists(outcomes, max_size=4, unique=True))
        }
        for m in range(3)
    ]
    if draw(st.booleans()):  # the scorer's shape: the same outcomes in every map
        maps[1] = {k: maps[1].get(k, np.zeros(n)) for k in maps[0]}
    items = ScoredItems.from_maps(tuple(f"i{j}" for j in range(n)), tuple(f"p{j % 2}" for j in range(n)), *maps)
    return FAST.encode(
        "scores",
        {
            "batch_id": "b",
            "user_id": "u",
            "user_cap": draw(st.none() | st.integers(-1, 3)),
            "scored_at_ms": 1,
            "model_name": "m",
            "model_version": 2,
            "parameter_version": "default",
            "tau": 1.0,
            "items": items,
        },
    )


def record_or_error(serde: AvroSerde, data: bytes) -> ScoresRecord | str:
    try:
        return ScoresRecord.from_avro(serde.decode("scores", data))
    except ValidationError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(scores_bytes())
def test_scores_from_columns_are_scores_from_dicts(data: bytes) -> None:
    fast, ref = record_or_error(FAST, data), record_or_error(REFERENCE, data)
    if isinstance(ref, str):
        assert isinstance(fast, str)
        samples = FAST.decode("scores", data)["items"].samples
        if sum(not np.isfinite(v).all() for v in samples.values()) <= 1:  # else the dicts' set order names one
            assert fast == ref
        return
    assert isinstance(fast, ScoresRecord)
    assert (
        fast.batch_id,
        fast.user_id,
        fast.user_cap,
        fast.model_name,
        fast.model_version,
        fast.parameter_version,
        fast.item_ids,
        fast.provider_ids,
    ) == (
        ref.batch_id,
        ref.user_id,
        ref.user_cap,
        ref.model_name,
        ref.model_version,
        ref.parameter_version,
        ref.item_ids,
        ref.provider_ids,
    )
    assert fast.samples.keys() == ref.samples.keys() and fast.means.keys() == ref.means.keys()
    for k in ref.samples:
        for got, want in ((fast.samples[k], ref.samples[k]), (fast.means[k], ref.means[k])):
            assert got.dtype == want.dtype == np.float64 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_samples_of_a_record_are_writable_and_their_own() -> None:
    items = ScoredItems.from_maps(
        ("i0", "i1"),
        ("p", "p"),
        {"reward": np.array([1.0, 2.0]), "value": np.ones(2)},
        {"reward": np.zeros(2), "value": np.zeros(2)},
        {},
    )
    data = FAST.encode(
        "scores",
        {
            "batch_id": "b",
            "user_id": "u",
            "user_cap": None,
            "scored_at_ms": 1,
            "model_name": "m",
            "model_version": 2,
            "parameter_version": "default",
            "tau": 1.0,
            "items": items,
        },
    )
    rec = ScoresRecord.from_avro(FAST.decode("scores", data))
    rec.samples["reward"][0] = 5.0
    np.testing.assert_array_equal(rec.samples["value"], [1.0, 1.0])
    np.testing.assert_array_equal(rec.means["reward"], [0.0, 0.0])
    with pytest.raises(ValidationError, match=r"samples\[value\] holds a NaN or infinite value at index \[1\]"):
        bad = items.values.copy()
        bad[1, 1] = np.inf
        ScoresRecord.from_avro(
            {**FAST.decode("scores", data), "items": ScoredItems(items.item_ids, items.provider_ids, items.keys, bad)}
        )


# -- the contract at the edge: each record kind's invalid inputs and their messages -------------


def _candidates(d: int = 6, **changes: object) -> dict:
    from tests.factories import candidates_value

    return candidates_value(1, 3, np.random.default_rng(0), d=d, **changes)


def _scores(**changes: object) -> dict:
    from tests.factories import scores_value

    return {**scores_value("b", 1, np.random.default_rng(0)), **changes}


def _control(**changes: object) -> dict:
    from tests.factories import opened_value

    return {**opened_value("b", 10), **changes}


def _feedback(**changes: object) -> dict:
    from tests.factories import feedback_value

    return {**feedback_value("b/u1", "u1"), **changes}


def _with_item(value: dict, j: int, **changes: object) -> dict:
    key = "candidates" if "candidates" in value else "items"
    items = [dict(it) for it in value[key]]
    items[j] = {**items[j], **changes}
    return {**value, key: items}


INVALID = [
    ("candidates", _candidates(user_id=""), "user_id must be a non-empty string"),
    ("candidates", _candidates(batch_id="x" * 1001), "at most 1000 characters, got 1001"),
    ("candidates", _with_item(_candidates(), 1, provider_id=""), "provider_id must be"),
    ("candidates", _candidates(created_at_ms=-1), "created_at_ms -1 is below 0"),
    ("candidates", _with_item(_candidates(), 0, features=[0.1] * 4097), "different lengths"),
    ("candidates", _candidates(d=4097), "4097 features per candidate exceed the limit of 4096"),
    ("feedback", _feedback(observed_at_ms=-5), "observed_at_ms -5 is below 0"),
    ("feedback", _feedback(source=""), "source must be"),
    ("batch-control", _control(timeout_ms=-1), "timeout_ms -1 is below 0"),
    ("batch-control", _control(reward_outcome="clicks"), "reward_outcome names unknown outcome 'clicks'"),
    ("batch-control", _control(budgets=[{"name": "u", "outcome": "unsubscription", "limit": 1.0}] * 2), "share a name"),
    ("batch-control", _control(budgets=[{"name": "u", "outcome": "unsubscription", "limit": -1.0}]), "limit -1.0"),
    (
        "batch-control",
        _control(budgets=[{"name": f"b{i}", "outcome": "unsubscription", "limit": 1.0} for i in range(65)]),
        "65 budgets exceed the limit of 64",
    ),
    (
        "batch-control",
        _control(providers=[{"provider_id": "p", "min_exposure": 0.0, "max_exposure": float("inf")}]),
        "has bounds",
    ),
    (
        "batch-control",
        _control(providers=[{"provider_id": "p", "min_exposure": -1.0, "max_exposure": None}]),
        "has bounds",
    ),
    (
        "batch-control",
        _control(providers=[{"provider_id": "p", "min_exposure": 0.0, "max_exposure": None}] * 2),
        "same provider",
    ),
    ("scores", _scores(tau=-0.5), "tau -0.5 is not a finite number >= 0"),
    ("scores", _scores(model_version=-1), "model_version -1 is below 0"),
    ("scores", _scores(items=_scores()["items"] * 2), "duplicate item_id"),
    (
        "scores",
        _scores(items=[{**it, "item_id": f"i{k}"} for k in range(1001) for it in _scores()["items"][:1]]),
        "1001 scored items",
    ),
    ("scores", _with_item(_scores(), 2, stds={"reward": float("nan")}), "stds hold a NaN"),
    ("scores", _with_item(_scores(), 2, stds={"reward": -0.1}), "stds hold a negative value"),
    ("scores", _with_item(_scores(), 2, means={"reward": float("inf")}), "means hold a NaN"),
]


@pytest.mark.parametrize(("subject", "value", "message"), INVALID, ids=[m for _, _, m in INVALID])
@pytest.mark.parametrize("serde", [FAST, REFERENCE], ids=["columnar", "fastavro"])
def test_a_record_that_breaks_the_contract_is_a_validation_error_naming_why(
    subject: str, value: dict, message: str, serde: AvroSerde
) -> None:
    from streams.records import BatchControlRecord, CandidatesRecord, FeedbackRecord

    make = {
        "candidates": CandidatesRecord.from_avro,
        "feedback": FeedbackRecord.from_avro,
        "batch-control": BatchControlRecord.from_avro,
        "scores": ScoresRecord.from_avro,
    }[subject]
    decoded = serde.decode(subject, REFERENCE.encode(subject, value))
    with pytest.raises(ValidationError, match=re.escape(message)):
        make(decoded)
