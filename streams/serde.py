"""Avro values in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, body.

``AvroSerde.encode(subject, value)`` writes with the subject's current schema;
``decode(subject, data)`` reads with the writer schema named by the id and resolves it to
the current one, so records written with an older version get the new fields' defaults.
Every decoding failure raises one typed ``DecodeError`` naming topic, partition, offset
and cause; the caller dead-letters it.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import fastavro

from streams.errors import DecodeError, SchemaError
from streams.schema_registry import SchemaRegistry, make_registry

MAGIC = 0
_HEADER = struct.Struct(">bI")


class AvroSerde:
    """Encode and decode topic values against a schema registry."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or make_registry()

    def encode(self, subject: str, value: dict[str, Any]) -> bytes:
        """Serialise ``value`` with the current schema of ``subject`` (a topic's base name).

        Raises:
            SchemaError: the value does not fit the schema.
        """
        sid, schema = self.registry.current(subject)
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, sid))
        try:
            fastavro.schemaless_writer(buf, schema, value)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"value does not fit schema {subject}: {exc}") from exc
        return buf.getvalue()

    def decode(self, subject: str, data: bytes | None, *, topic: str | None = None,
               partition: int = -1, offset: int = -1) -> dict[str, Any]:
        """Deserialise wire-format bytes into a dict shaped by the current schema of ``subject``.

        Raises:
            DecodeError: not wire format, unknown schema id, or a body that does not parse.
        """
        where = topic or subject
        if data is None:
            raise DecodeError(where, "empty value (tombstone)", partition=partition, offset=offset)
        if len(data) < _HEADER.size:
            raise DecodeError(where, f"{len(data)} bytes is shorter than the 5-byte header",
                              partition=partition, offset=offset)
        magic, sid = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(where, f"not Confluent wire format (magic byte {magic})",
                              partition=partition, offset=offset)
        writer = self.registry.by_id(sid)
        if writer is None:
            raise DecodeError(where, f"unknown schema id {sid}", partition=partition, offset=offset)
        _, reader = self.registry.current(subject)
        buf = io.BytesIO(data)
        buf.seek(_HEADER.size)
        try:
            value = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises many kinds (EOFError, ValueError, SchemaResolutionError, ...)
            raise DecodeError(where, f"{type(exc).__name__}: {exc}", partition=partition, offset=offset) from exc
        if buf.tell() != len(data):
            raise DecodeError(where, f"{len(data) - buf.tell()} trailing bytes after the record",
                              partition=partition, offset=offset)
        return value


def all_finite(values: list[float] | tuple[float, ...]) -> bool:
    """True when no value is NaN or infinite (a cheap check for decoded float lists)."""
    return all(math.isfinite(v) for v in values)
