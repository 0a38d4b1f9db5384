"""The ids of a ``candidates`` record without its features: what the allocator reads of that topic.

The allocator reads every candidates record to learn which users a batch has and what each of
them could be sent (``streams.decide.fallback`` decides the users whose scores never arrive),
never their features. Those are most of a record's bytes (20 candidates of 40 float32 values: 3.3
of 3.5 KB), so ``ListingCodec.decode`` reads the ids and the cap and steps over every float array
by its block counts (4 bytes per float, no value converted), in the encoding of
``schemas/candidates.avsc`` (``streams.avro.candidates.SCHEMA``). The id pair of a candidate is
looked up by its encoded bytes in the serde's ``StringCache``, so the ids of the few items a
batch has are decoded once. Anything it was not written for (a body that does not parse, an
empty list) returns None, and ``AvroSerde.decode_listing`` decodes the whole record with fastavro
and keeps the same fields: results and errors are fastavro's by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.avro.candidates import CandidateColumns
from streams.avro.candidates import CandidatesCodec as _Full
from streams.avro.wire import StringCache, Unhandled, read_long, read_nullable_int, read_string


class ListingCodec:
    """Decodes the ids of ``candidates`` bodies; ``strings`` caches the (item, provider) pairs."""

    subject = "candidates"

    def __init__(self, strings: StringCache) -> None:
        self.strings = strings

    implements = staticmethod(_Full.implements)

    def decode(self, buf: bytes, pos: int = 0) -> dict[str, Any] | None:
        """``{batch_id, user_id, created_at_ms, user_cap, item_ids, provider_ids}`` from the
        body at ``buf[pos:]`` (which must end there), or None to leave it to fastavro."""
        try:
            return _decode(bytes(buf), pos, self.strings)
        except (Unhandled, IndexError, ValueError):  # ValueError covers UnicodeDecodeError
            return None


def listing_of(value: Mapping[str, Any]) -> dict[str, Any]:
    """The listing fields of a whole decoded ``candidates`` value (fastavro's dicts or the columns)."""
    cands = value["candidates"]
    if isinstance(cands, CandidateColumns):
        items, providers = cands.item_ids, cands.provider_ids
    else:
        items = tuple(c["item_id"] for c in cands)
        providers = tuple(c["provider_id"] for c in cands)
    return {
        "batch_id": value["batch_id"],
        "user_id": value["user_id"],
        "created_at_ms": value["created_at_ms"],
        "user_cap": value.get("user_cap"),
        "item_ids": items,
        "provider_ids": providers,
    }


def _skip_floats(buf: bytes, pos: int) -> int:
    """The position after the ``array<float>`` at ``buf[pos]`` (every block, size-prefixed too)."""
    while True:
        n = buf[pos]
        if n == 0:  # the end of the array (the common case: one block, then this)
            return pos + 1
        n, pos = read_long(buf, pos)
        if n < 0:  # a size-prefixed block: its byte size follows the (negated) count
            size, pos = read_long(buf, pos)
            if size != -4 * n:
                raise Unhandled
            n = -n
        pos += 4 * n


def _decode(buf: bytes, pos: int, strings: StringCache) -> dict[str, Any]:
    batch_id, pos = read_string(buf, pos)
    user_id, pos = read_string(buf, pos)
    created, pos = read_long(buf, pos)
    cap, pos = read_nullable_int(buf, pos)
    items: list[str] = []
    providers: list[str] = []
    count, pos = read_long(buf, pos)
    if not count:
        raise Unhandled  # no candidates: rare, and fastavro's answer is as good
    known = strings.pair  # bound once: this loop runs per pair
    while count:
        if count < 0:
            count = -count
            _, pos = read_long(buf, pos)  # the block's byte size: not needed to read it
        for _ in range(count):
            start = pos
            # two strings, each a one-byte length in the usual case (ids under 64 bytes)
            n = buf[pos]
            pos = pos + 1 + (n >> 1) if n < 0x80 and not n & 1 else read_string(buf, pos)[1]
            n = buf[pos]
            pos = pos + 1 + (n >> 1) if n < 0x80 and not n & 1 else read_string(buf, pos)[1]
            encoded = buf[start:pos]
            pair = known(encoded)
            if pair is None:
                item, at = read_string(encoded, 0)
                provider, _ = read_string(encoded, at)
                pair = strings.remember_pair(encoded, item, provider)
            items.append(pair[0])
            providers.append(pair[1])
            # two float arrays, each one block of under 64 floats and its end in the usual case
            n = buf[pos]
            if n < 0x80 and not n & 1 and n:
                pos += 1 + 2 * n  # 4 bytes per float, n >> 1 of them
            if buf[pos]:
                pos = _skip_floats(buf, pos)
            else:
                pos += 1
            n = buf[pos]
            if n < 0x80 and not n & 1 and n:
                pos += 1 + 2 * n
            if buf[pos]:
                pos = _skip_floats(buf, pos)
            else:
                pos += 1
        count, pos = read_long(buf, pos)
    if pos != len(buf):
        raise Unhandled  # trailing bytes, or a broken layout: fastavro's error
    return {
        "batch_id": batch_id,
        "user_id": user_id,
        "created_at_ms": created,
        "user_cap": cap,
        "item_ids": tuple(items),
        "provider_ids": tuple(providers),
    }
