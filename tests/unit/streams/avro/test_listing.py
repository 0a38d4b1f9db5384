"""The allocator's read of ``candidates`` (``AvroSerde.decode_listing``, ``streams.avro.listing``):
the ids and cap fastavro decodes, for valid, damaged and hand-blocked bytes alike."""

from __future__ import annotations

import io
import re
import struct

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.avro.listing import listing_of
from streams.avro.wire import write_long, write_string
from streams.errors import DecodeError
from streams.settings import Settings

FAST = Settings().serde()
REFERENCE = Settings().serde(columnar=False)

ids = st.text(max_size=70)  # past 63 UTF-8 bytes a string's length takes two varint bytes
floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@st.composite
def candidates_values(draw: st.DrawFn) -> dict:
    n = draw(st.integers(0, 6))
    return {
        "batch_id": draw(ids),
        "user_id": draw(ids),
        "created_at_ms": draw(st.integers(-(2**63), 2**63 - 1)),
        "user_cap": draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        "candidates": [
            {
                "item_id": draw(ids),
                "provider_id": draw(ids),
                "features": draw(st.lists(floats32, max_size=70)),  # ragged widths, long counts too
                "item_features": draw(st.lists(floats32, max_size=4)),
            }
            for _ in range(n)
        ],
    }


def outcome(serde, data: bytes) -> dict | str:
    try:
        return serde.decode_listing(data)
    except DecodeError as exc:
        return re.sub(r" at 0x[0-9a-f]+", "", f"DecodeError: {exc}")


@settings(max_examples=300, deadline=None)
@given(candidates_values())
def test_the_listing_is_fastavros_record_without_its_features(value: dict) -> None:
    data = FAST.encode("candidates", value)
    listing = FAST.decode_listing(data)
    assert listing == listing_of(REFERENCE.decode("candidates", data))
    assert listing["item_ids"] == tuple(c["item_id"] for c in value["candidates"])
    assert listing["provider_ids"] == tuple(c["provider_id"] for c in value["candidates"])
    assert listing["user_cap"] == value["user_cap"] and listing["batch_id"] == value["batch_id"]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_bytes_give_fastavros_listing_or_its_error(data: st.DataObject) -> None:
    raw = bytearray(FAST.encode("candidates", data.draw(candidates_values())))
    action = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if action == "flip":
        at = data.draw(st.integers(5, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    elif action == "truncate":
        raw = raw[: data.draw(st.integers(5, len(raw) - 1))]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    assert outcome(FAST, bytes(raw)) == outcome(REFERENCE, bytes(raw))


def test_split_and_size_prefixed_blocks_are_stepped_over() -> None:
    """Avro lets a writer split an array into blocks and prefix a block with its byte size
    (a negative count); fastavro reads both, and so does the listing."""
    floats = struct.pack("<3f", 1.0, 2.0, 3.0)
    features = write_long(-3) + write_long(12) + floats + write_long(2) + floats[:8] + b"\x00"
    item = write_string("i1") + write_string("p1") + features + b"\x00"
    body = (
        write_string("b1")
        + write_string("u1")
        + write_long(5)
        + b"\x00"  # user_cap: null
        + write_long(-1)  # the candidates array: a size-prefixed block of one ...
        + write_long(len(item))
        + item
        + write_long(1)  # ... then a block of one more
        + write_string("i2")
        + write_string("p2")
        + b"\x00\x00"
        + b"\x00"
    )
    data = struct.pack(">bI", 0, FAST.registry.current("candidates")[0]) + body
    reference = fastavro.schemaless_reader(io.BytesIO(body), FAST.registry.current("candidates")[1])
    assert [len(c["features"]) for c in reference["candidates"]] == [5, 0]
    listing = FAST.listing.decode(data, 5)
    assert listing is not None and listing == listing_of(reference)
    assert listing["item_ids"] == ("i1", "i2") and listing["user_cap"] is None


def test_a_record_with_no_candidates_is_left_to_fastavro() -> None:
    value = {"batch_id": "b", "user_id": "u", "created_at_ms": 1, "user_cap": 2, "candidates": []}
    data = FAST.encode("candidates", value)
    assert FAST.listing.decode(data, 5) is None  # left to fastavro
    assert FAST.decode_listing(data) == {**listing_of(value), "item_ids": (), "provider_ids": ()}
