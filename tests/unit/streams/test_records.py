"""Typed records from decoded values: the serde's columns give what plain dicts give."""

from __future__ import annotations

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
