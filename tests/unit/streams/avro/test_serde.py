"""Avro serde: wire format, schema evolution, and typed errors for bad bytes."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import fastavro.utils
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.avro.registry import SCHEMA_DIR, LocalSchemaRegistry, schema_id_of
from streams.errors import DecodeError, SchemaError
from streams.kafka.topics import BASE_TOPICS
from streams.settings import Settings

SERDE = Settings().serde()


def test_every_topic_has_a_schema_with_docs_on_every_field() -> None:
    assert sorted(SERDE.registry.subjects) == sorted(BASE_TOPICS)

    def fields(schema):
        if isinstance(schema, dict) and schema.get("type") == "record":
            for f in schema["fields"]:
                yield f
                yield from fields(f["type"])
        elif isinstance(schema, dict) and schema.get("type") in ("array", "map"):
            yield from fields(schema.get("items", schema.get("values")))
        elif isinstance(schema, list):
            for s in schema:
                yield from fields(s)

    for subject in BASE_TOPICS:
        raw = json.loads((SCHEMA_DIR / f"{subject}.avsc").read_text())
        for f in fields(raw):
            assert f.get("doc"), f"{subject}: field {f['name']} has no doc"


def test_schema_ids_are_deterministic_and_distinct() -> None:
    again = LocalSchemaRegistry()
    ids = {s: SERDE.registry.current(s)[0] for s in SERDE.registry.subjects}
    assert ids == {s: again.current(s)[0] for s in again.subjects}
    assert len(set(ids.values())) == len(ids)


def test_record_written_with_older_schema_reads_with_defaults() -> None:
    old = fastavro.parse_schema(json.loads((SCHEMA_DIR / "history" / "feedback.v1.avsc").read_text()))
    record = {
        "decision_id": "b1/u1",
        "batch_id": "b1",
        "user_id": "u1",
        "item_id": "i3",
        "converted": True,
        "unsubscribed": False,
        "value": 12.5,
        "observed_at_ms": 1700000000000,
    }
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id_of(old)))
    fastavro.schemaless_writer(buf, old, record)
    decoded = SERDE.decode("feedback", buf.getvalue())
    assert decoded == {**record, "source": "delivery"}  # the new field's default


BAD_BYTES = [
    (b"", "shorter than the 5-byte header"),
    (b"\x00\x00", "shorter than the 5-byte header"),
    (b'{"json": true}', "not Confluent wire format"),
    (b"\x00\x7f\xff\xff\xfe" + b"\x02ab", "unknown schema id"),
    (None, "tombstone"),
]


@pytest.mark.parametrize(("data", "match"), BAD_BYTES)
def test_bad_bytes_raise_typed_error(data: bytes | None, match: str) -> None:
    with pytest.raises(DecodeError, match=match) as info:
        SERDE.decode("feedback", data, topic="feedback", partition=2, offset=41)
    assert info.value.topic == "feedback" and info.value.offset == 41 and info.value.partition == 2
    assert "feedback[2]@41" in str(info.value)


def test_wrong_schema_id_for_the_topic_is_a_decode_error() -> None:
    # A decisions record fed to the feedback decoder: a known id, but not resolvable.
    sid, schema = SERDE.registry.current("decisions")
    data = SERDE.encode("decisions", fastavro.utils.generate_one(schema))
    with pytest.raises(DecodeError):
        SERDE.decode("feedback", data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_other_errors(data: bytes) -> None:
    for subject in ("feedback", "candidates", "scores"):
        try:
            SERDE.decode(subject, data)
        except DecodeError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_truncated_or_garbled_bodies_raise_decode_error(tail: bytes) -> None:
    sid, _ = SERDE.registry.current("feedback")
    try:
        SERDE.decode("feedback", struct.pack(">bI", 0, sid) + tail)
    except DecodeError:
        pass


def test_a_bad_records_reason_is_the_same_on_every_read() -> None:
    """fastavro's EOFError names the BytesIO it read, address included; a redelivered record
    must get the same dead-letter reason (and an operator has no use for the address)."""
    sid, _ = SERDE.registry.current("feedback")
    data = struct.pack(">bI", 0, sid) + b"\x06abc"  # a string, then nothing
    reasons = []
    for _ in range(2):
        with pytest.raises(DecodeError) as info:
            SERDE.decode("feedback", data)
        reasons.append(str(info.value))
    assert reasons[0] == reasons[1] and "EOFError" in reasons[0] and " at 0x" not in reasons[0]


def test_value_not_fitting_schema_raises_schema_error() -> None:
    with pytest.raises(SchemaError, match="feedback"):
        SERDE.encode("feedback", {"decision_id": 3})
