"""A dead letter always fits on the dead-letters topic: the original bytes are kept whole up to
MAX_DEAD_LETTER_BYTES, and a larger value keeps its first bytes with a reason that says how many
it had and their SHA-256."""

from __future__ import annotations

import hashlib

from streams.dead_letters import MAX_DEAD_LETTER_BYTES, dead_letter
from streams.errors import ValidationError
from tests.factories import SERDE


def letter(key: bytes | None, value: bytes | None) -> dict:
    data = dead_letter(
        SERDE,
        source_topic="candidates",
        partition=2,
        offset=7,
        key=key,
        value=value,
        error=ValidationError("user_id too long"),
        consumer="scorer",
    )
    assert len(data) < MAX_DEAD_LETTER_BYTES + 4_000  # far under the broker's 1 MiB
    return SERDE.decode("dead-letters", data)


def test_a_record_under_the_limit_is_kept_whole() -> None:
    d = letter(b"k", b"v" * 1000)
    assert (d["key"], d["value"], d["reason"]) == (b"k", b"v" * 1000, "user_id too long")
    assert (d["source_topic"], d["partition"], d["offset"], d["error_type"]) == ("candidates", 2, 7, "ValidationError")
    assert letter(None, None)["value"] is None


def test_a_record_at_the_brokers_limit_keeps_its_first_bytes_and_says_so() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB
    d = letter(b"fuzz-1", value)
    assert d["key"] == b"fuzz-1" and value.startswith(d["value"])
    assert len(d["key"]) + len(d["value"]) == MAX_DEAD_LETTER_BYTES
    assert d["reason"].startswith("user_id too long (value cut to its first")
    assert f"of {len(value)} bytes" in d["reason"] and hashlib.sha256(value).hexdigest() in d["reason"]


def test_an_oversized_key_is_cut_too() -> None:
    d = letter(b"k" * MAX_DEAD_LETTER_BYTES, b"v")
    assert len(d["key"]) == MAX_DEAD_LETTER_BYTES // 4 and d["value"] == b"v" and "key cut to" in d["reason"]
