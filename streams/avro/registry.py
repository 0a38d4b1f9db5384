"""Where schema ids come from: a deterministic local registry of ``schemas/``, or a Schema Registry.

The local registry needs no server: every ``*.avsc`` under ``schemas/`` (current versions)
and ``schemas/history/`` (older versions, still readable) gets an id derived from the
SHA-256 of its Parsing Canonical Form, so ids are the same on every machine and adding a
version never renumbers the others. The subject of a topic's values is the topic's base
name (``feedback``); its current schema is ``schemas/<subject>.avsc``.

With a URL configured, ids come from a Confluent Schema Registry instead (subject
``<subject>-value``, TopicNameStrategy), so producers and consumers outside this project
can read our topics.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import fastavro
from fastavro.schema import to_parsing_canonical_form

from streams.errors import SchemaError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


class SchemaRegistry(Protocol):
    """Maps subjects to the current schema and ids to writer schemas."""

    def current(self, subject: str) -> tuple[int, Any]:
        """The id and parsed schema to write ``subject`` with."""
        ...

    def by_id(self, schema_id: int) -> Any | None:
        """The parsed writer schema with this id, or None when unknown."""
        ...


def schema_id_of(parsed: Any) -> int:
    """Deterministic 31-bit id of a parsed schema (SHA-256 of its canonical form)."""
    digest = hashlib.sha256(to_parsing_canonical_form(parsed).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _parse(path: Path) -> Any:
    try:
        return fastavro.parse_schema(json.loads(path.read_text()))
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise SchemaError(f"invalid Avro schema {path}: {exc}") from exc


class LocalSchemaRegistry:
    """The schemas shipped in ``schemas/``, with content-derived ids."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._current: dict[str, tuple[int, Any]] = {}
        self._by_id: dict[int, Any] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            parsed = _parse(path)
            sid = schema_id_of(parsed)
            self._current[path.stem] = (sid, parsed)
            self._by_id[sid] = parsed
        for path in sorted((schema_dir / "history").glob("*.avsc")):
            parsed = _parse(path)
            self._by_id.setdefault(schema_id_of(parsed), parsed)
        if not self._current:
            raise SchemaError(f"no *.avsc schemas in {schema_dir}")

    @property
    def subjects(self) -> list[str]:
        return sorted(self._current)

    def current(self, subject: str) -> tuple[int, Any]:
        try:
            return self._current[subject]
        except KeyError:
            raise SchemaError(f"no schema for subject {subject!r}; known: {', '.join(self.subjects)}") from None

    def by_id(self, schema_id: int) -> Any | None:
        return self._by_id.get(schema_id)


class ConfluentSchemaRegistry:
    """Ids from a Confluent Schema Registry; schemas registered from ``schemas/`` on first use."""

    def __init__(self, url: str, schema_dir: Path = SCHEMA_DIR) -> None:
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

        self.url = url
        self._client = SchemaRegistryClient({"url": url})
        self._schema_cls = Schema
        self._local = LocalSchemaRegistry(schema_dir)
        self._current: dict[str, tuple[int, Any]] = {}
        self._by_id: dict[int, Any] = {}

    def current(self, subject: str) -> tuple[int, Any]:
        if subject not in self._current:
            _, parsed = self._local.current(subject)
            text = json.dumps(fastavro.schema.to_parsing_canonical_form(parsed))
            try:
                sid = self._client.register_schema(f"{subject}-value", self._schema_cls(json.loads(text), "AVRO"))
            except Exception as exc:  # the client raises several kinds; all mean "cannot register"
                raise SchemaError(f"schema registry refused {subject}-value: {exc}") from exc
            self._current[subject] = (sid, parsed)
            self._by_id[sid] = parsed
        return self._current[subject]

    def by_id(self, schema_id: int) -> Any | None:
        if schema_id not in self._by_id:
            try:
                schema = self._client.get_schema(schema_id)
            except Exception:  # unknown id or registry down: the caller reports "unknown schema id"
                return None
            if schema.schema_str is None:
                return None
            self._by_id[schema_id] = fastavro.parse_schema(json.loads(schema.schema_str))
        return self._by_id[schema_id]


def make_registry(url: str | None = None, schema_dir: Path = SCHEMA_DIR) -> SchemaRegistry:
    """The local registry, or a Confluent one when ``url`` is given."""
    return ConfluentSchemaRegistry(url, schema_dir) if url else LocalSchemaRegistry(schema_dir)
