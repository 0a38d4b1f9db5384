"""Avro values in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, body.

``AvroSerde.encode(subject, value)`` writes with the subject's current schema;
``decode(subject, data)`` reads with the writer schema named by the id and resolves it to
the current one, so records written with an older version get the new fields' defaults.
Every decoding failure raises one typed ``DecodeError`` naming topic, partition, offset
and cause; the caller dead-letters it.

The scorer's two hot subjects, ``candidates`` and ``scores``, go through the columnar codecs
of ``streams.avro.columns`` (the same bytes, ~10x faster than fastavro for their float arrays
and maps) whenever those implement the subject's current schema; anything they do not handle
falls back to fastavro. Their decoded values hold the candidates / scored items as a
read-only sequence of dicts backed by numpy columns. The allocator's ``decisions`` and
``decision-contexts`` are written a whole batch at a time (``encode_decisions``,
``streams.avro.decisions``; ``encode_contexts``, ``streams.avro.contexts``), with the same rule.
The allocator reads ``candidates`` for their ids only (``decode_listing``, ``streams.avro.listing``).
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable
from typing import Any, Protocol

import fastavro

from streams.avro import contexts as context_columns
from streams.avro import decisions as decision_columns
from streams.avro.candidates import CandidatesCodec
from streams.avro.columns import Columns
from streams.avro.listing import ListingCodec, listing_of
from streams.avro.registry import SchemaRegistry
from streams.avro.scores import ScoresCodec
from streams.avro.wire import StringCache
from streams.errors import DecodeError, SchemaError

MAGIC = 0
_HEADER = struct.Struct(">bI")


class ColumnarCodec(Protocol):
    """A subject's fast codec: the same bytes as fastavro, or None to leave a value to fastavro."""

    subject: str

    def implements(self, parsed_schema: Any) -> bool: ...

    def encode(self, value: Any) -> bytes | None: ...

    def decode(self, buf: bytes, pos: int = 0) -> dict[str, Any] | None: ...


#: The columnar codecs by subject; each serde makes its own (they own their caches).
CODECS: dict[str, Callable[[StringCache], ColumnarCodec]] = {
    "candidates": CandidatesCodec,
    "scores": ScoresCodec,
}
#: The subjects written a whole batch at a time, and the test of whether their encoder writes a schema.
BATCH_ENCODERS: dict[str, Callable[[Any], bool]] = {
    "decisions": decision_columns.implements,
    "decision-contexts": context_columns.implements,
}


class AvroSerde:
    """Encode and decode topic values against a schema registry.

    Build it through ``Settings.serde()``, once per process, so every component of the process
    writes and reads the same schema ids.

    Args:
        registry: where schema ids come from (``streams.avro.registry.make_registry``).
        columnar: use the columnar codecs for the subjects whose current schema they
            implement; False runs fastavro alone (the reference the codecs are tested against).
    """

    def __init__(self, registry: SchemaRegistry, columnar: bool = True) -> None:
        self.registry = registry
        self.columnar = columnar
        strings = StringCache()
        self.codecs: dict[str, ColumnarCodec] = {subject: make(strings) for subject, make in CODECS.items()}
        self.listing = ListingCodec(strings)
        self._implemented: dict[int, bool] = {}  # schema id -> the columnar codecs implement it

    def _fast(self, subject: str, sid: int, schema: Any) -> bool:
        if not self.columnar:
            return False
        fast = self._implemented.get(sid)
        if fast is None:
            fast = self._implemented[sid] = (
                BATCH_ENCODERS[subject](schema)
                if subject in BATCH_ENCODERS
                else subject in self.codecs and self.codecs[subject].implements(schema)
            )
        return fast

    def encode(self, subject: str, value: dict[str, Any]) -> bytes:
        """Serialise ``value`` with the current schema of ``subject`` (a topic's base name).

        Raises:
            SchemaError: the value does not fit the schema.
        """
        sid, schema = self.registry.current(subject)
        if subject in self.codecs and self._fast(subject, sid, schema):
            body = self.codecs[subject].encode(value)
            if body is not None:
                return _HEADER.pack(MAGIC, sid) + body
            value = _plain(value)
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, sid))
        try:
            fastavro.schemaless_writer(buf, schema, value)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SchemaError(f"value does not fit schema {subject}: {exc}") from exc
        return buf.getvalue()

    def encode_decisions(self, columns: decision_columns.DecisionColumns) -> list[bytes]:
        """``encode("decisions", value)`` for each value of ``columns.rows()``, in that order.

        The whole batch is written at once by ``streams.avro.decisions`` when it implements
        the current schema (the same bytes); otherwise fastavro encodes the rows one by one.

        Raises:
            SchemaError: a row does not fit the schema.
        """
        sid, schema = self.registry.current("decisions")
        if self._fast("decisions", sid, schema):
            records = decision_columns.encode(columns, prefix=_HEADER.pack(MAGIC, sid))
            if records is not None:
                return records
        return [self.encode("decisions", value) for value in columns.rows()]

    def encode_contexts(self, columns: context_columns.ContextColumns) -> list[bytes]:
        """``encode("decision-contexts", value)`` for each value of ``columns.rows()``, in that order.

        Written at once by ``streams.avro.contexts`` when it implements the current schema and
        takes the batch (the same bytes); otherwise fastavro encodes the rows one by one.

        Raises:
            SchemaError: a row does not fit the schema.
        """
        sid, schema = self.registry.current("decision-contexts")
        if self._fast("decision-contexts", sid, schema):
            records = context_columns.encode(columns, prefix=_HEADER.pack(MAGIC, sid))
            if records is not None:
                return records
        return [self.encode("decision-contexts", value) for value in columns.rows()]

    def decode(
        self,
        subject: str,
        data: bytes | None,
        *,
        topic: str | None = None,
        partition: int | None = -1,
        offset: int | None = -1,
    ) -> dict[str, Any]:
        """Deserialise wire-format bytes into a dict shaped by the current schema of ``subject``.

        Raises:
            DecodeError: not wire format, unknown schema id, or a body that does not parse.
        """
        where = topic or subject
        partition = -1 if partition is None else partition
        offset = -1 if offset is None else offset
        if data is None:
            raise DecodeError(where, "empty value (tombstone)", partition=partition, offset=offset)
        if len(data) < _HEADER.size:
            raise DecodeError(
                where, f"{len(data)} bytes is shorter than the 5-byte header", partition=partition, offset=offset
            )
        magic, sid = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(
                where, f"not Confluent wire format (magic byte {magic})", partition=partition, offset=offset
            )
        writer = self.registry.by_id(sid)
        if writer is None:
            raise DecodeError(where, f"unknown schema id {sid}", partition=partition, offset=offset)
        reader_id, reader = self.registry.current(subject)
        if sid == reader_id and subject in self.codecs and self._fast(subject, sid, reader):
            fast = self.codecs[subject].decode(data, _HEADER.size)
            if fast is not None:
                return fast
        buf = io.BytesIO(data)
        buf.seek(_HEADER.size)
        try:
            value: dict[str, Any] = fastavro.schemaless_reader(buf, writer, reader)  # type: ignore[assignment]
        except Exception as exc:  # fastavro raises many kinds (EOFError, ValueError, SchemaResolutionError, ...)
            raise DecodeError(
                where, f"{type(exc).__name__}: {_without_reprs(str(exc))}", partition=partition, offset=offset
            ) from exc
        if buf.tell() != len(data):
            raise DecodeError(
                where, f"{len(data) - buf.tell()} trailing bytes after the record", partition=partition, offset=offset
            )
        return value

    def decode_listing(
        self, data: bytes | None, *, topic: str | None = None, partition: int | None = -1, offset: int | None = -1
    ) -> dict[str, Any]:
        """A ``candidates`` value reduced to ``{batch_id, user_id, created_at_ms, user_cap,
        item_ids, provider_ids}`` (tuples of ids): what the allocator reads of that topic.

        Records in the current schema go through ``streams.avro.listing``, which steps over the
        features without converting them; anything else is decoded whole (``decode``) and reduced.

        Raises:
            DecodeError: as ``decode("candidates", data)``.
        """
        if data is not None and len(data) >= _HEADER.size and self.columnar:
            magic, sid = _HEADER.unpack_from(data)
            reader_id, reader = self.registry.current("candidates")
            if magic == MAGIC and sid == reader_id and self._fast("candidates", sid, reader):
                fast = self.listing.decode(data, _HEADER.size)
                if fast is not None:
                    return fast
        return listing_of(self.decode("candidates", data, topic=topic, partition=partition, offset=offset))


_REPR_AT = re.compile(r"\s*(?:from|in|of)?\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def _without_reprs(message: str) -> str:
    """``message`` without object reprs such as ``from <_io.BytesIO object at 0x7f..>``: a memory
    address says nothing to an operator, and it makes the same bad record's reason differ
    between two reads."""
    return _REPR_AT.sub("", message)


def _plain(value: Any) -> Any:
    """``value`` with its columnar sequences as lists of dicts (what fastavro writes)."""
    if isinstance(value, dict) and any(isinstance(v, Columns) for v in value.values()):
        return {k: v.rows() if isinstance(v, Columns) else v for k, v in value.items()}
    return value
