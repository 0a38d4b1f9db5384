"""The columnar codec of ``candidates`` (read by the scorer for every user of every batch).

fastavro handles every float as a Python object, about 0.3 µs each; a record of 20 candidates
carries some 400 floats. This codec reads and writes the same Avro binary encoding with numpy
(``streams.avro.columns``), and returns None for anything it was not written for (ragged
feature widths, size-prefixed or split array blocks, a value of an unexpected Python type, a
number out of range, bytes that do not parse): ``AvroSerde`` then runs fastavro, so results and
errors are fastavro's own by construction. It is bound to the structure of ``SCHEMA`` below:
when ``schemas/candidates.avsc`` changes, ``implements`` says no and the serde uses fastavro alone.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from fastavro import parse_schema

from streams.avro.columns import Columns, Tail, item_strings
from streams.avro.wire import (
    END,
    F4,
    StringCache,
    Unhandled,
    checked_long,
    float_array,
    nullable_int,
    read_count,
    read_long,
    read_nullable_int,
    read_string,
    signature,
    write_long,
    write_string,
)

_FLOATS = {"type": "array", "items": "float"}
# schemas/candidates.avsc without its docs. Defaults are part of it (the writers rely on them).
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Candidates",
    "namespace": "banditlp",
    "fields": [
        {"name": "batch_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "created_at_ms", "type": "long"},
        {"name": "user_cap", "type": ["null", "int"], "default": None},
        {
            "name": "candidates",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Candidate",
                    "fields": [
                        {"name": "item_id", "type": "string"},
                        {"name": "provider_id", "type": "string"},
                        {"name": "features", "type": _FLOATS},
                        {"name": "item_features", "type": _FLOATS, "default": []},
                    ],
                },
            },
        },
    ],
}
_SIGNATURE = signature(parse_schema(SCHEMA))


class CandidateColumns(Columns):
    """The ``candidates`` array of one record, as columns.

    Attributes:
        item_ids, provider_ids: ``(n,)`` tuples of strings.
        features: ``(n, d)`` float32. item_features: ``(n, k)`` float32 (``k`` may be 0).
    """

    def __init__(
        self, item_ids: tuple[str, ...], provider_ids: tuple[str, ...], features: np.ndarray, item_features: np.ndarray
    ) -> None:
        n = len(item_ids)
        if (
            len(provider_ids) != n
            or features.ndim != 2
            or item_features.ndim != 2
            or features.shape[0] != n
            or item_features.shape[0] != n
        ):
            raise ValueError(f"CandidateColumns: {n} item ids, but ids or feature rows of other lengths")
        self.item_ids, self.provider_ids = item_ids, provider_ids
        self.features, self.item_features = features, item_features

    def __len__(self) -> int:
        return len(self.item_ids)

    def _build_rows(self) -> list[dict[str, Any]]:
        return [
            {"item_id": i, "provider_id": p, "features": f, "item_features": z}
            for i, p, f, z in zip(self.item_ids, self.provider_ids, self.features.tolist(), self.item_features.tolist())
        ]

    def encoded(self, strings: StringCache) -> bytes:
        """The Avro encoding of the array (count, items, end)."""
        n = len(self.item_ids)
        if not n:
            return END
        tail = _candidate_tail(self.features.shape[1], self.item_features.shape[1])
        tails = tail.fill(np.hstack([self.features, self.item_features])).tobytes()
        parts = [write_long(n)]
        item_strings(parts, self.item_ids, self.provider_ids, tails, tail.width, strings)
        parts.append(END)
        return b"".join(parts)


@functools.lru_cache(maxsize=64)
def _candidate_tail(d: int, k: int) -> Tail:
    """Features of width ``d`` and item features of width ``k``, one block each."""
    template, number_at = bytearray(), list[int]()
    for width in (d, k):
        if width:
            template += write_long(width)
            number_at += range(len(template), len(template) + 4 * width, 4)
            template += bytes(4 * width)
        template += END
    return Tail(bytes(template), number_at, F4)


class CandidatesCodec:
    """Encodes and decodes ``candidates`` bodies; ``strings`` caches the ids' encodings."""

    subject = "candidates"

    def __init__(self, strings: StringCache) -> None:
        self.strings = strings

    @staticmethod
    def implements(parsed_schema: Any) -> bool:
        """True when this codec writes and reads ``parsed_schema``."""
        return signature(parsed_schema) == _SIGNATURE

    def encode(self, value: Mapping[str, Any]) -> bytes | None:
        """The Avro body of a ``candidates`` value, or None to leave it to fastavro."""
        return _encode(value, self.strings)

    def decode(self, buf: bytes, pos: int = 0) -> dict[str, Any] | None:
        """A ``candidates`` value from the Avro body at ``buf[pos:]``, or None to leave it to fastavro.

        The body must end exactly at the end of ``buf``. The ``candidates`` entry is a
        :class:`CandidateColumns` when every candidate's feature arrays have the first one's widths.
        """
        return _decode(buf, pos)


def _encode(value: Mapping[str, Any], strings: StringCache) -> bytes | None:
    try:
        parts = [
            write_string(value["batch_id"]),
            write_string(value["user_id"]),
            checked_long(value["created_at_ms"]),
            nullable_int(value.get("user_cap")),
        ]
        cands = value["candidates"]
        if isinstance(cands, CandidateColumns) and cands._rows is None:
            parts.append(cands.encoded(strings))
        elif type(cands) is list:
            if cands:
                parts.append(write_long(len(cands)))
                for c in cands:
                    parts += (
                        strings.encode(c["item_id"]),
                        strings.encode(c["provider_id"]),
                        float_array(c["features"]),
                        float_array(c.get("item_features", ())),
                    )
            parts.append(END)
        else:
            raise Unhandled
        return b"".join(parts)
    except (Unhandled, KeyError, TypeError, AttributeError, struct.error, OverflowError):
        return None


def _decode(buf: bytes, pos: int = 0) -> dict[str, Any] | None:
    """A ``candidates`` value from the Avro body at ``buf[pos:]``, or None to leave it to fastavro.

    The body must end exactly at the end of ``buf``. The ``candidates`` entry is a
    :class:`CandidateColumns` when every candidate's feature arrays have the first one's widths.
    """
    try:
        return _decode_candidates(bytes(buf), pos)
    except (Unhandled, IndexError, ValueError):  # ValueError covers UnicodeDecodeError
        return None


def _decode_candidates(buf: bytes, pos: int) -> dict[str, Any]:
    batch_id, pos = read_string(buf, pos)
    user_id, pos = read_string(buf, pos)
    created, pos = read_long(buf, pos)
    cap, pos = read_nullable_int(buf, pos)
    count, pos = read_count(buf, pos)
    if not count:
        raise Unhandled  # no candidates: rare, and fastavro's answer is as good
    items: list[str] = []
    providers: list[str] = []
    starts: list[int] = []
    tail: Tail | None = None
    width = 0
    while count:
        for _ in range(count):
            # read_string inlined for the usual short id (one-byte length): this loop runs per
            # pair. A slice past the end is caught below: the next count read fails, or pos != len.
            n = buf[pos]
            if n < 0x80 and not n & 1:
                end = pos + 1 + (n >> 1)
                items.append(buf[pos + 1 : end].decode())
                pos = end
            else:
                item, pos = read_string(buf, pos)
                items.append(item)
            n = buf[pos]
            if n < 0x80 and not n & 1:
                end = pos + 1 + (n >> 1)
                providers.append(buf[pos + 1 : end].decode())
                pos = end
            else:
                provider, pos = read_string(buf, pos)
                providers.append(provider)
            if tail is None:  # the widths of the first candidate's arrays fix the layout
                d, at = read_count(buf, pos)
                k, _ = read_count(buf, at + (4 * d + 1 if d else 0))
                if 4 * (d + k) > len(buf):
                    raise Unhandled
                tail = _candidate_tail(d, k)
                width = tail.width
            starts.append(pos)
            pos += width
        count, pos = read_count(buf, pos)
    if pos != len(buf) or tail is None:
        raise Unhandled  # trailing bytes, or a broken layout: fastavro's error
    values = tail.read(np.frombuffer(buf, dtype=np.uint8), starts)  # (n, d + k): features, item features
    return {
        "batch_id": batch_id,
        "user_id": user_id,
        "created_at_ms": created,
        "user_cap": cap,
        "candidates": CandidateColumns(
            tuple(items), tuple(providers), np.ascontiguousarray(values[:, :d]), np.ascontiguousarray(values[:, d:])
        ),
    }
