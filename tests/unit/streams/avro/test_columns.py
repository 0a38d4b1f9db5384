"""The columnar codecs of the hot subjects against fastavro, the reference: the same bytes
out, the same values in, the same errors for bad bytes, and fastavro's answer for every
shape they leave to it."""

from __future__ import annotations

import io
import json
import math
import re
import struct

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.avro.candidates import CandidateColumns
from streams.avro.columns import Columns
from streams.avro.registry import SCHEMA_DIR
from streams.avro.scores import ScoredItems
from streams.avro.serde import AvroSerde
from streams.avro.wire import StringCache
from streams.errors import DecodeError
from streams.settings import Settings

FAST = Settings().serde()
REFERENCE = Settings().serde(columnar=False)

ids = st.text(max_size=70)  # past 63 UTF-8 bytes a string's length takes two varint bytes
longs = st.integers(-(2**63), 2**63 - 1)
caps = st.none() | st.integers(-(2**31), 2**31 - 1)
# float32-representable values (what a float array holds), and any double
floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
doubles = st.floats(allow_nan=True, allow_infinity=True)


def fastavro_body(subject: str, value: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, FAST.registry.current(subject)[1], value)
    return buf.getvalue()


def wire(subject: str, body: bytes) -> bytes:
    return struct.pack(">bI", 0, FAST.registry.current(subject)[0]) + body


def plain(value: dict) -> dict:
    """A decoded value with its columns as lists of dicts."""
    return {k: v.rows() if isinstance(v, Columns) else v for k, v in value.items()}


@st.composite
def candidates_values(draw: st.DrawFn, ragged: bool = False) -> dict:
    n = draw(st.integers(1, 6))
    d, k = draw(st.integers(0, 5)), draw(st.integers(0, 3))
    widths = [(draw(st.integers(0, 5)), k) if ragged else (d, k) for _ in range(n)]
    return {
        "batch_id": draw(ids),
        "user_id": draw(ids),
        "created_at_ms": draw(longs),
        "user_cap": draw(caps),
        "candidates": [
            {
                "item_id": draw(ids),
                "provider_id": draw(ids),
                "features": draw(st.lists(floats32, min_size=w, max_size=w)),
                "item_features": draw(st.lists(floats32, min_size=v, max_size=v)),
            }
            for w, v in widths
        ],
    }


@st.composite
def scored_items(draw: st.DrawFn) -> ScoredItems:
    n, d = draw(st.integers(1, 6)), draw(st.sampled_from([0, 0, 1, 3, 14]))  # d pair features per item
    maps = [
        {
            key: np.array(draw(st.lists(doubles, min_size=n, max_size=n)))
            for key in draw(st.lists(ids, max_size=4, unique=True))
        }
        for _ in range(3)
    ]
    n_further = draw(st.integers(0, 3))  # Thompson draws 2..K, with the samples' keys
    further = {
        key: np.array(
            draw(st.lists(st.lists(doubles, min_size=n, max_size=n), min_size=n_further, max_size=n_further))
        ).reshape(n_further, n)
        for key in maps[0]
    }
    features = np.array(draw(st.lists(floats32, min_size=n * d, max_size=n * d)), dtype=np.float32)
    return ScoredItems.from_maps(
        tuple(draw(ids) for _ in range(n)),
        tuple(draw(ids) for _ in range(n)),
        *maps,
        draws=further if n_further else None,
        features=features.reshape(n, d),
    )


@st.composite
def scores_values(draw: st.DrawFn) -> dict:
    return {
        "batch_id": draw(ids),
        "user_id": draw(ids),
        "user_cap": draw(caps),
        "scored_at_ms": draw(longs),
        "model_name": draw(ids),
        "model_version": draw(longs),
        "parameter_version": draw(ids),
        "tau": draw(doubles),
        "items": draw(scored_items()),
    }


def test_the_codecs_implement_the_shipped_schemas_and_no_changed_one() -> None:
    for subject in ("candidates", "scores"):
        assert FAST.codecs[subject].implements(FAST.registry.current(subject)[1])
        raw = json.loads((SCHEMA_DIR / f"{subject}.avsc").read_text())
        raw["fields"].append({"name": "extra", "type": "int", "default": 0})
        assert not FAST.codecs[subject].implements(fastavro.parse_schema(raw))
    assert "feedback" not in FAST.codecs


@settings(max_examples=200, deadline=None)
@given(candidates_values())
def test_candidates_bytes_and_values_are_fastavros(value: dict) -> None:
    data = FAST.encode("candidates", value)
    assert data == wire("candidates", fastavro_body("candidates", value))
    decoded = FAST.decode("candidates", data)
    assert isinstance(decoded["candidates"], CandidateColumns)
    assert fastavro_body("candidates", plain(decoded)) == data[5:]  # the same values, NaN included
    assert FAST.encode("candidates", decoded) == data  # columns encode to the same bytes
    if not any(math.isnan(x) for c in value["candidates"] for x in c["features"] + c["item_features"]):
        assert decoded == REFERENCE.decode("candidates", data)


@settings(max_examples=100, deadline=None)
@given(candidates_values(ragged=True))
def test_ragged_candidates_are_left_to_fastavro(value: dict) -> None:
    data = FAST.encode("candidates", value)
    decoded = FAST.decode("candidates", data)
    widths = {len(c["features"]) for c in value["candidates"]}
    assert isinstance(decoded["candidates"], CandidateColumns) == (len(widths) == 1)
    assert fastavro_body("candidates", plain(decoded)) == data[5:]


@settings(max_examples=200, deadline=None)
@given(scores_values())
def test_scores_bytes_and_values_are_fastavros(value: dict) -> None:
    data = FAST.encode("scores", value)
    assert data == wire("scores", fastavro_body("scores", plain(value)))
    decoded = FAST.decode("scores", data)
    assert isinstance(decoded["items"], ScoredItems)
    assert fastavro_body("scores", plain(decoded)) == data[5:]
    assert FAST.encode("scores", decoded) == data
    np.testing.assert_array_equal(decoded["items"].values, value["items"].values)
    assert decoded["items"].features.dtype == np.float32
    np.testing.assert_array_equal(decoded["items"].features, value["items"].features)  # NaN where NaN
    assert decoded["items"].n_draws == value["items"].n_draws
    for outcome, draws in value["items"].draws.items():
        np.testing.assert_array_equal(decoded["items"].draws[outcome], draws)


def test_split_encodes_each_record_as_its_own_items() -> None:
    rng = np.random.default_rng(0)
    sizes = [3, 1, 4]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    maps = [
        {k: rng.normal(size=offsets[-1]) for k in keys}
        for keys in (("conversion", "reward"), ("conversion", "reward"), ("conversion",))
    ]
    item_ids = [tuple(f"i{u}{j}" for j in range(n)) for u, n in enumerate(sizes)]
    provider_ids = [tuple(f"p{j}" for j in range(n)) for n in sizes]
    further = {k: rng.normal(size=(2, offsets[-1])) for k in maps[0]}  # K = 3 draws
    split = ScoredItems.split(item_ids, provider_ids, *maps, offsets, draws=further)
    for r, items in enumerate(split):
        a, b = offsets[r], offsets[r + 1]
        alone = ScoredItems.from_maps(
            item_ids[r],
            provider_ids[r],
            *({k: v[a:b] for k, v in m.items()} for m in maps),
            draws={k: v[:, a:b] for k, v in further.items()},
        )
        assert items.n_draws == 3
        np.testing.assert_array_equal(items.draws["conversion"][0], maps[0]["conversion"][a:b])
        np.testing.assert_array_equal(items.draws["conversion"][1:], further["conversion"][:, a:b])
        assert items.encoded(StringCache()) == alone.encoded(StringCache())
        assert items.rows() == alone.rows()


def test_scored_items_with_mixed_feature_widths_item_features_or_differing_keys_are_left_to_fastavro() -> None:
    base = {
        "batch_id": "b",
        "user_id": "u",
        "user_cap": None,
        "scored_at_ms": 1,
        "model_name": "m",
        "model_version": 1,
        "parameter_version": "default",
        "tau": 1.0,
    }
    item = {"item_id": "i1", "provider_id": "p1", "samples": {"reward": 0.5}, "means": {"reward": 0.4}, "stds": {}}
    for items in (
        [{**item, "features": [1.0]}, {**item, "item_id": "i2", "features": [1.0, 2.0]}],
        [{**item, "features": [1.0, 2.0]}, {**item, "item_id": "i2", "features": []}],
        [{**item, "features": []}, {**item, "item_id": "i2", "features": [3.0]}],
        [{**item, "features": [1.0], "item_features": [2.0]}],
        [item, {**item, "item_id": "i2", "samples": {"conversion": 0.1}}],
        [item, {**item, "item_id": "i2", "means": {"reward": 0.4, "value": 2.0}}],
    ):
        data = wire("scores", fastavro_body("scores", {**base, "items": items}))
        decoded = FAST.decode("scores", data)
        assert not isinstance(decoded["items"], ScoredItems)
        assert decoded == REFERENCE.decode("scores", data)
        assert FAST.encode("scores", decoded) == data


def test_changed_rows_are_what_gets_encoded() -> None:
    value = {
        "batch_id": "b",
        "user_id": "u",
        "created_at_ms": 1,
        "user_cap": 2,
        "candidates": [{"item_id": "i1", "provider_id": "p", "features": [1.0, 2.0], "item_features": []}],
    }
    decoded = FAST.decode("candidates", FAST.encode("candidates", value))
    decoded["candidates"][0]["features"][1] = 5.0
    value["candidates"][0]["features"][1] = 5.0
    assert FAST.encode("candidates", decoded) == FAST.encode("candidates", value)


def test_values_that_do_not_fit_raise_the_same_error_as_fastavros() -> None:
    good = {
        "batch_id": "b",
        "user_id": "u",
        "created_at_ms": 1,
        "user_cap": None,
        "candidates": [{"item_id": "i1", "provider_id": "p", "features": [1.0]}],
    }
    for bad in (
        {**good, "user_cap": 2**40},
        {**good, "user_cap": True},
        {**good, "created_at_ms": "x"},
        {**good, "candidates": [{"item_id": 3, "provider_id": "p", "features": [1.0]}]},
        {**good, "candidates": [{"item_id": "i", "provider_id": "p", "features": ["x"]}]},
        {k: v for k, v in good.items() if k != "user_id"},
    ):
        with pytest.raises(Exception) as fast:
            FAST.encode("candidates", bad)
        with pytest.raises(Exception) as ref:
            REFERENCE.encode("candidates", bad)
        assert type(fast.value) is type(ref.value) and str(fast.value) == str(ref.value)
    # A float beyond float32 is written as infinity by fastavro; the fast path must not differ.
    big = {**good, "candidates": [{"item_id": "i", "provider_id": "p", "features": [1e40]}]}
    assert FAST.encode("candidates", big) == REFERENCE.encode("candidates", big)


def decode_outcome(serde: AvroSerde, subject: str, data: bytes) -> bytes | str:
    """What decoding gives, comparable across serdes: the value re-encoded by fastavro, or the error."""
    try:
        return fastavro_body(subject, plain(serde.decode(subject, data)))
    except DecodeError as exc:
        return re.sub(r" at 0x[0-9a-f]+", "", f"DecodeError: {exc}")  # fastavro's messages name objects


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_bytes_decode_as_fastavro_decodes_them(data: st.DataObject) -> None:
    subject = data.draw(st.sampled_from(["candidates", "scores"]))
    value = data.draw(candidates_values() if subject == "candidates" else scores_values())
    raw = bytearray(FAST.encode(subject, value))
    action = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if action == "flip":
        at = data.draw(st.integers(5, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    elif action == "truncate":
        raw = raw[: data.draw(st.integers(5, len(raw) - 1))]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    assert decode_outcome(FAST, subject, bytes(raw)) == decode_outcome(REFERENCE, subject, bytes(raw))


def test_scores_after_a_record_of_another_layout_decode_as_fastavro_decodes_them() -> None:
    """The decoder tries the last record's layout (map keys, feature width) first: a record with
    another (of the same encoded width too) or damaged bytes must still decode as fastavro decodes them."""
    base = {
        "batch_id": "b",
        "user_id": "u",
        "user_cap": None,
        "scored_at_ms": 1,
        "model_name": "m",
        "model_version": 1,
        "parameter_version": "default",
        "tau": 1.0,
    }

    def record(keys: tuple[str, ...], n: int = 3, d: int = 0, stds: tuple[str, ...] = ()) -> bytes:
        maps = {k: np.arange(n, dtype=np.float64) + i for i, k in enumerate(keys)}
        features = np.arange(n * d, dtype=np.float32).reshape(n, d)
        return FAST.encode(
            "scores",
            {
                **base,
                "items": ScoredItems.from_maps(
                    tuple(f"i{j}" for j in range(n)),
                    tuple(f"p{j}" for j in range(n)),
                    maps,
                    maps,
                    {k: np.zeros(n) for k in stds},
                    features=features,
                ),
            },
        )

    ab, cd, longer = record(("ab", "xy")), record(("cd", "xy")), record(("conversion", "reward", "value"))
    # 3 features take 13 bytes more than none, as does a stds map of one 3-character key: the
    # same width, another layout
    f2, f3, ab3 = record(("ab", "xy"), d=2), record(("ab", "xy"), d=3), record(("ab", "xy"), stds=("zzz",))
    assert len(f3) == len(ab3)
    for data in (ab, cd, ab, longer, ab[:-3], cd, ab + b"\x00", longer, cd[:40], ab, f2, f3, ab3, f3, f2[:-9], ab, f2):
        assert decode_outcome(FAST, "scores", data) == decode_outcome(REFERENCE, "scores", data)
    assert FAST.decode("scores", cd)["items"].keys == (("cd", "xy"), ("cd", "xy"), ())
    decoded = FAST.decode("scores", f3)["items"]
    assert isinstance(decoded, ScoredItems)
    np.testing.assert_array_equal(decoded.features, np.arange(9, dtype=np.float32).reshape(3, 3))
