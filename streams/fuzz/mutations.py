"""Mutations: of a decoded value at a path (``VALUE_KINDS``) and of its wire bytes (``BYTE_KINDS``).

Value mutations change a deep copy of a valid value so that one rule of ``streams.fuzz.rules``
breaks; the result is still valid Avro (fastavro encodes it). Byte mutations damage the wire
format itself: random bytes, a truncated frame, a wrong schema id, a dropped field, a field of
another type. Every function takes the ``numpy.random.Generator`` it draws from, so a seed
fixes the records.
"""

from __future__ import annotations

import copy
import io
import math
import struct
from collections.abc import Callable
from typing import Any

import fastavro
import numpy as np

from streams.avro.registry import SchemaRegistry
from streams.fuzz.rules import FieldRule
from streams.records import MAX_ID_CHARS

_HEADER = struct.Struct(">bI")
NON_FINITE = (math.nan, math.inf, -math.inf)
_ID_KEYS = ("item_id", "arm_id", "name", "provider_id")


class NotApplicable(Exception):
    """The rule does not fit this value (an empty list to pick from, a missing key)."""


# -- value mutations ---------------------------------------------------------------------------


def _resolve(value: Any, path: tuple[str, ...], rng: np.random.Generator) -> tuple[Any, Any]:
    """``(container, key)`` of the place ``path`` names in ``value``, random elements drawn."""
    parent: Any = None
    key: Any = None
    node = value
    for step in path:
        if step == "[]":
            if not isinstance(node, list) or not node:
                raise NotApplicable(f"no element to pick at {path}")
            parent, key = node, int(rng.integers(len(node)))
        elif step == "{}":
            if not isinstance(node, dict) or not node:
                raise NotApplicable(f"no map value to pick at {path}")
            parent, key = node, sorted(node)[int(rng.integers(len(node)))]
        else:
            if not isinstance(node, dict) or step not in node:
                raise NotApplicable(f"no key {step!r} at {path}")
            parent, key = node, step
        node = parent[key]
    if parent is None:
        raise NotApplicable("an empty path")
    return parent, key


def _negative(old: Any, rng: np.random.Generator) -> Any:
    if isinstance(old, float):
        return -float(rng.choice([0.5, 1.0, 1e6]))
    return -int(rng.choice([1, 7, 2**31]))


def _unique(element: Any, k: int) -> Any:
    """A copy of a list element whose id (if it is a record with one) is made distinct by a suffix."""
    out = copy.deepcopy(element)
    if not isinstance(out, dict):
        return out
    for key in _ID_KEYS:
        if isinstance(out.get(key), str):
            out[key] = f"{out[key]}~{k}"
    return out


def _set_leaf(kind: str) -> Callable[[Any, FieldRule, np.random.Generator, int], Any]:
    def mutate(old: Any, rule: FieldRule, rng: np.random.Generator, oversize: int) -> Any:
        if kind == "non_finite":
            return float(rng.choice(NON_FINITE))
        if kind == "negative":
            return _negative(0 if old is None else old, rng)
        if kind == "below_one":
            return int(rng.choice([0, -1]))
        if kind == "bad_id":
            return "" if rng.random() < 0.5 else "x" * (MAX_ID_CHARS + 1 + int(rng.integers(100)))
        if kind == "oversized":
            return "o" * oversize
        if kind in ("unknown_name", "unknown_ref"):
            return f"fuzz-unknown-{rng.integers(2**40):010x}"
        if kind == "mismatch":
            return int(old) + 1 + int(rng.integers(100))
        if kind == "corrupt":
            data = bytearray(old)
            if not data:
                raise NotApplicable("no bytes to corrupt")
            at = int(rng.integers(len(data)))
            data[at] ^= int(rng.integers(1, 256))
            return bytes(data)
        if kind == "truncate":
            return bytes(old[: int(rng.integers(len(old)))]) if old else b""
        raise AssertionError(kind)

    return mutate


def _list_op(kind: str) -> Callable[[Any, FieldRule, np.random.Generator, int], Any]:
    def mutate(old: Any, rule: FieldRule, rng: np.random.Generator, oversize: int) -> Any:
        if not isinstance(old, list):
            raise NotApplicable(f"{kind} needs a list")
        if kind == "empty":
            return []
        if not old:
            raise NotApplicable(f"{kind} needs one element to copy")
        if kind == "over_cap":
            extra = int(rule.arg) + 1 + int(rng.integers(3)) - len(old)
            return old + [_unique(old[int(rng.integers(len(old)))], k) for k in range(max(extra, 1))]
        if kind == "duplicate":
            out = old if len(old) >= 2 else old + [_unique(old[0], 1)]
            i, j = rng.choice(len(out), 2, replace=False)
            out[int(j)][rule.arg] = out[int(i)][rule.arg]
            return out
        if kind == "ragged":
            out = old if len(old) >= 2 else old + [_unique(old[0], 1)]
            el = out[int(rng.integers(len(out)))]
            el[rule.arg] = [*el.get(rule.arg, []), 0.0]
            return out
        if kind == "drop_key":
            raise AssertionError("drop_key works on a map")
        if kind == "bad_sum":
            out = old
            if len(out) >= 2 and out[0]["probability"] > 0:
                out[0]["probability"] /= 2
            else:
                out[0]["probability"] = 0.5 if out[0]["probability"] != 0.5 else 0.25
            return out
        raise AssertionError(kind)

    return mutate


def _drop_key(old: Any, rule: FieldRule, rng: np.random.Generator, oversize: int) -> Any:
    if not isinstance(old, dict) or not old:
        raise NotApplicable("drop_key needs a map with a key")
    out = dict(old)
    del out[sorted(out)[int(rng.integers(len(out)))]]
    return out


def _inverted(old: Any, rule: FieldRule, rng: np.random.Generator, oversize: int) -> Any:
    out = dict(old)
    out["max_exposure"] = float(out.get("min_exposure", 0.0)) - 1.0 - float(rng.random())
    return out


VALUE_KINDS: dict[str, Callable[[Any, FieldRule, np.random.Generator, int], Any]] = {
    **{k: _set_leaf(k) for k in ("non_finite", "negative", "below_one", "bad_id", "oversized")},
    **{k: _set_leaf(k) for k in ("unknown_name", "unknown_ref", "mismatch", "corrupt", "truncate")},
    **{k: _list_op(k) for k in ("over_cap", "empty", "duplicate", "ragged", "bad_sum")},
    "drop_key": _drop_key,
    "inverted": _inverted,
}


def mutate_value(value: dict[str, Any], rule: FieldRule, rng: np.random.Generator, oversize: int) -> dict[str, Any]:
    """A deep copy of ``value`` broken by ``rule``; ``oversize`` is the length of an oversized id.

    Raises:
        NotApplicable: ``rule`` does not fit ``value``.
    """
    if not rule.applies(value):
        raise NotApplicable(f"{rule} applies only where {rule.only_if}")
    out = copy.deepcopy(value)
    parent, key = _resolve(out, rule.path, rng)
    parent[key] = VALUE_KINDS[rule.kind](parent[key], rule, rng, oversize)
    return out


# -- byte mutations ----------------------------------------------------------------------------


def field_encodings(registry: SchemaRegistry, subject: str, value: dict[str, Any]) -> list[bytes]:
    """The Avro body of ``value`` field by field (their concatenation is the body)."""
    _, parsed = registry.current(subject)
    out = []
    for f in parsed["fields"]:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(f["type"]), value.get(f["name"], f.get("default")))
        out.append(buf.getvalue())
    return out


def _other_type(schema_type: Any, rng: np.random.Generator) -> bytes:
    """The encoding of a value of a type other than ``schema_type`` (a field of the wrong type)."""
    kind = (
        schema_type
        if isinstance(schema_type, str)
        else schema_type.get("type")
        if isinstance(schema_type, dict)
        else "union"
    )
    choices: list[tuple[Any, Any]] = [
        ("string", "swapped"),
        ("long", int(rng.integers(-(2**40), 2**40))),
        ("double", float(rng.normal())),
        ({"type": "array", "items": "string"}, ["a", "b"]),
        ({"type": "map", "values": "long"}, {"k": 3}),
    ]
    usable = [(t, v) for t, v in choices if (t if isinstance(t, str) else t["type"]) != kind]
    t, v = usable[int(rng.integers(len(usable)))]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(t), v)
    return buf.getvalue()


def mutate_bytes(
    kind: str,
    registry: SchemaRegistry,
    subject: str,
    value: dict[str, Any],
    encoded: bytes,
    other_ids: list[int],
    rng: np.random.Generator,
) -> bytes | None:
    """Wire bytes of ``value`` (``encoded``, with its header) damaged by ``kind`` (one of ``BYTE_KINDS``).

    ``other_ids``: schema ids of other subjects (a record written with another topic's schema).
    """
    sid, parsed = registry.current(subject)
    header = _HEADER.pack(0, sid)
    if kind == "random_bytes":
        return rng.bytes(int(rng.integers(0, 300)))
    if kind == "random_body":
        return header + rng.bytes(int(rng.integers(1, 300)))
    if kind == "truncated":
        return encoded[: int(rng.integers(len(encoded)))]
    if kind == "trailing_bytes":
        return encoded + rng.bytes(int(rng.integers(1, 16)))
    if kind == "bad_magic":
        return bytes([int(rng.integers(1, 256))]) + encoded[1:]
    if kind == "unknown_schema_id":
        while True:
            unknown = int(rng.integers(1, 2**31))
            if registry.by_id(unknown) is None:
                return _HEADER.pack(0, unknown) + encoded[_HEADER.size :]
    if kind == "other_subject_id":
        return _HEADER.pack(0, other_ids[int(rng.integers(len(other_ids)))]) + encoded[_HEADER.size :]
    if kind == "tombstone":
        return None
    parts = field_encodings(registry, subject, value)
    i = int(rng.integers(len(parts)))
    if kind == "dropped_field":
        return header + b"".join(parts[:i] + parts[i + 1 :])
    if kind == "swapped_type":
        return header + b"".join(parts[:i] + [_other_type(parsed["fields"][i]["type"], rng)] + parts[i + 1 :])
    raise AssertionError(kind)


BYTE_KINDS = (
    "random_bytes",
    "random_body",
    "truncated",
    "trailing_bytes",
    "bad_magic",
    "unknown_schema_id",
    "other_subject_id",
    "dropped_field",
    "swapped_type",
    "tombstone",
)
