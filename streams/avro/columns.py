"""Columnar Avro codecs for the scorer's hot path: ``candidates`` in, ``scores`` out.

fastavro handles every float and every map entry as a Python object: about 0.3 µs each.
A ``candidates`` record of 20 candidates carries some 400 floats and a ``scores`` record
some 240 map entries, so fastavro spends 200-300 µs per record, more than scoring it.
These codecs read and write the same Avro binary encoding of exactly those two schemas
with numpy instead:

an item of either is two id strings followed by a part of fixed length and structure
(candidates: two float arrays of the same widths in every item; scored items: two empty
arrays and three maps with the same keys in every item). Only the strings are handled in
Python, a few steps per item; the fixed parts of a whole record (or, when encoding scores,
of a whole batch) are checked, read or written by numpy gathers and scatters.

Values stay the usual Avro dicts, except that the list of candidates (or of scored items)
is a read-only ``Sequence`` of dicts backed by numpy columns (:class:`CandidateColumns`,
:class:`ScoredItems`). Code that reads it as a list of dicts gets dicts, built on first
access; ``streams.records`` takes the columns directly.

Fallback: the fast functions return None for anything they were not written for (ragged
feature widths, size-prefixed or split array blocks, maps whose keys differ between items,
a value of an unexpected Python type, a number out of range) and for bytes that do not
parse; ``AvroSerde`` then runs fastavro, so results and errors are fastavro's own by
construction. The codecs are bound to the structure of the schemas below: when the
``.avsc`` in ``schemas/`` changes, :func:`implements` says no and ``AvroSerde`` uses
fastavro alone.
"""

from __future__ import annotations

import abc
import functools
import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from fastavro import parse_schema

_F4 = np.dtype("<f4")
_F8 = np.dtype("<f8")
_DOUBLE = struct.Struct("<d")
_INT_RANGE = (-(1 << 31), (1 << 31) - 1)
_LONG_RANGE = (-(1 << 63), (1 << 63) - 1)
_END = b"\x00"  # a zero block count: end of an array or map, or an empty one
# Item and provider ids repeat across users; their encodings are cached up to this many.
_STRING_CACHE_LIMIT = 1 << 16
_STRINGS: dict[str, bytes] = {}

# The structure these codecs implement: schemas/candidates.avsc and schemas/scores.avsc
# without their docs. Defaults are part of it (the writers rely on them).
_FLOATS = {"type": "array", "items": "float"}
_DOUBLES = {"type": "map", "values": "double"}
IMPLEMENTED: dict[str, dict[str, Any]] = {
    "candidates": {
        "type": "record", "name": "Candidates", "namespace": "banditlp", "fields": [
            {"name": "batch_id", "type": "string"},
            {"name": "user_id", "type": "string"},
            {"name": "created_at_ms", "type": "long"},
            {"name": "user_cap", "type": ["null", "int"], "default": None},
            {"name": "candidates", "type": {"type": "array", "items": {
                "type": "record", "name": "Candidate", "fields": [
                    {"name": "item_id", "type": "string"},
                    {"name": "provider_id", "type": "string"},
                    {"name": "features", "type": _FLOATS},
                    {"name": "item_features", "type": _FLOATS, "default": []},
                ]}}},
        ]},
    "scores": {
        "type": "record", "name": "Scores", "namespace": "banditlp", "fields": [
            {"name": "batch_id", "type": "string"},
            {"name": "user_id", "type": "string"},
            {"name": "user_cap", "type": ["null", "int"], "default": None},
            {"name": "scored_at_ms", "type": "long"},
            {"name": "model_name", "type": "string"},
            {"name": "model_version", "type": "long"},
            {"name": "parameter_version", "type": "string", "default": "default"},
            {"name": "tau", "type": "double"},
            {"name": "items", "type": {"type": "array", "items": {
                "type": "record", "name": "ScoredItem", "fields": [
                    {"name": "item_id", "type": "string"},
                    {"name": "provider_id", "type": "string"},
                    {"name": "features", "type": _FLOATS, "default": []},
                    {"name": "item_features", "type": _FLOATS, "default": []},
                    {"name": "samples", "type": _DOUBLES},
                    {"name": "means", "type": _DOUBLES},
                    {"name": "stds", "type": _DOUBLES},
                ]}}},
        ]},
}


class _Unhandled(Exception):
    """Inside a codec: leave this value or these bytes to fastavro."""


def _signature(schema: Any) -> str:
    """A parsed schema as canonical JSON without docs and fastavro's bookkeeping keys."""
    def strip(s: Any) -> Any:
        if isinstance(s, dict):
            return {k: strip(v) for k, v in s.items() if k != "doc" and not k.startswith("__")}
        if isinstance(s, list):
            return [strip(v) for v in s]
        return s
    return json.dumps(strip(schema), sort_keys=True)


_SIGNATURES = {subject: _signature(parse_schema(schema)) for subject, schema in IMPLEMENTED.items()}


def implements(subject: str, parsed_schema: Any) -> bool:
    """True when this module's codecs write and read ``parsed_schema`` for ``subject``."""
    return _SIGNATURES.get(subject) == _signature(parsed_schema)


# -- primitives -------------------------------------------------------------------------------

def _long(n: int) -> bytes:
    """Avro ``long``: zigzag, then a little-endian base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _SMALL[z]
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL = [bytes([z]) for z in range(0x80)]


def _checked_long(n: Any, bounds: tuple[int, int] = _LONG_RANGE) -> bytes:
    if type(n) is not int or not bounds[0] <= n <= bounds[1]:
        raise _Unhandled
    return _long(n)


def _string(s: Any) -> bytes:
    """Avro ``string``: byte length, UTF-8 bytes."""
    if type(s) is not str:
        raise _Unhandled
    raw = s.encode()
    return _long(len(raw)) + raw


def _cached_string(s: Any) -> bytes:
    """``_string`` for the ids that repeat in every record (items, providers)."""
    b = _STRINGS.get(s) if type(s) is str else None
    if b is None:
        b = _string(s)
        if len(_STRINGS) >= _STRING_CACHE_LIMIT:
            _STRINGS.clear()
        _STRINGS[s] = b
    return b


def _double(x: Any) -> bytes:
    if type(x) is not float and type(x) is not int:
        raise _Unhandled
    return _DOUBLE.pack(x)


def _nullable_int(x: Any) -> bytes:
    """The ``["null", "int"]`` union: branch index, then the int."""
    return b"\x00" if x is None else b"\x02" + _checked_long(x, _INT_RANGE)


@functools.lru_cache(maxsize=64)
def _floats_struct(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}f")


def _float_array(values: Any) -> bytes:
    """An ``array<float>`` from a Python list or tuple, in one block."""
    if type(values) is not list and type(values) is not tuple:
        raise _Unhandled
    if not values:
        return _END
    return _long(len(values)) + _floats_struct(len(values)).pack(*values) + _END


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Inverse of :func:`_long` at ``buf[pos]``; returns (value, next position)."""
    b = buf[pos]
    pos += 1
    z, shift = b & 0x7F, 7
    while b & 0x80:
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise _Unhandled  # longer than a 64-bit varint (10 bytes)
    return (z >> 1) ^ -(z & 1), pos


def _read_string(buf: bytes, pos: int) -> tuple[str, int]:
    n = buf[pos]
    if n < 0x80 and not n & 1:  # the usual short id: a one-byte length
        end = pos + 1 + (n >> 1)
        pos += 1
    else:
        n, pos = _read_long(buf, pos)
        end = pos + n
        if n < 0:
            raise _Unhandled
    if end > len(buf):
        raise _Unhandled
    return buf[pos:end].decode(), end


def _read_nullable_int(buf: bytes, pos: int) -> tuple[int | None, int]:
    branch, pos = _read_long(buf, pos)
    if branch == 0:
        return None, pos
    if branch == 1:
        return _read_long(buf, pos)
    raise _Unhandled


def _read_count(buf: bytes, pos: int) -> tuple[int, int]:
    """A block count; size-prefixed blocks (negative counts) are left to fastavro."""
    n, pos = _read_long(buf, pos)
    if n < 0:
        raise _Unhandled
    return n, pos


class _Tail:
    """The fixed-length part of an item, after its two id strings.

    In both schemas an item is two strings and then a part whose length and structure are
    the same for every item of a record: two float arrays of one width each (candidates),
    or two empty arrays and three maps with the same keys (scores). ``template`` is that
    part with zeros in place of its numbers, which all have one ``dtype`` (``<f4`` or
    ``<f8``); ``fill`` and ``read`` encode and decode many items' parts at once.
    """

    def __init__(self, template: bytes, number_at: list[int], dtype: np.dtype) -> None:
        self.width = len(template)
        self.dtype = dtype
        self.n_values = len(number_at)
        self.template = np.frombuffer(template, dtype=np.uint8)
        # byte offsets of the numbers, value by value, and of everything else
        self.value_bytes = (np.asarray(number_at, dtype=np.intp)[:, None]
                            + np.arange(dtype.itemsize)).reshape(-1)
        mask = np.ones(self.width, dtype=bool)
        mask[self.value_bytes] = False
        self.structure_bytes = np.flatnonzero(mask)
        self.structure = self.template[self.structure_bytes]

    def fill(self, values: np.ndarray) -> np.ndarray:
        """Encoded parts ``(n, width)`` uint8 of ``values (n, n_values)``."""
        n = values.shape[0]
        out = np.empty((n, self.width), dtype=np.uint8)
        out[:] = self.template
        if self.n_values:
            out[:, self.value_bytes] = np.ascontiguousarray(values, dtype=self.dtype).view(np.uint8).reshape(n, -1)
        return out

    def read(self, u8: np.ndarray, starts: list[int]) -> np.ndarray:
        """Values ``(n, n_values)`` of the parts at ``u8[s:s + width]`` for each start.

        Raises:
            _Unhandled: a part's structure differs from the template's (another width or
                other keys than the first item's).
        """
        at = np.asarray(starts, dtype=np.intp)[:, None]
        if np.any(u8[at + self.structure_bytes] != self.structure):
            raise _Unhandled
        return u8[at + self.value_bytes].view(self.dtype)


@functools.lru_cache(maxsize=64)
def _candidate_tail(d: int, k: int) -> _Tail:
    """Features of width ``d`` and item features of width ``k``, one block each."""
    template, number_at = bytearray(), []
    for width in (d, k):
        if width:
            template += _long(width)
            number_at += range(len(template), len(template) + 4 * width, 4)
            template += bytes(4 * width)
        template += _END
    return _Tail(bytes(template), number_at, _F4)


@functools.lru_cache(maxsize=64)
def _scored_tail(keys: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]) -> _Tail:
    """Empty features and item_features, then the samples, means and stds maps with these keys."""
    template, number_at = bytearray(_END + _END), []
    for map_keys in keys:
        if map_keys:
            template += _long(len(map_keys))
            for key in map_keys:
                template += _string(key)
                number_at.append(len(template))
                template += bytes(8)
        template += _END
    return _Tail(bytes(template), number_at, _F8)


def _item_strings(parts: list[bytes], item_ids: Sequence[str], provider_ids: Sequence[str], tails: bytes,
                  width: int) -> None:
    """Append every item's two strings and its encoded part (``tails[j * width:(j + 1) * width]``)."""
    for j, (item, provider) in enumerate(zip(item_ids, provider_ids)):
        parts += (_cached_string(item), _cached_string(provider), tails[j * width:(j + 1) * width])


# -- columnar sequences -----------------------------------------------------------------------

class Columns(Sequence):
    """A read-only sequence of Avro record dicts held as columns; rows are built on first use.

    Once its rows have been built, a value is encoded from the rows (which the caller may
    have changed), never from the columns.
    """

    _rows: list[dict[str, Any]] | None = None
    __hash__ = None  # type: ignore[assignment]  # like a list

    @abc.abstractmethod
    def _build_rows(self) -> list[dict[str, Any]]:
        """The records as plain dicts, built from the columns (each subclass's layout)."""

    def rows(self) -> list[dict[str, Any]]:
        """The records as plain dicts (what fastavro would have decoded)."""
        if self._rows is None:
            self._rows = self._build_rows()
        return self._rows

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's signature
        return self.rows()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, Columns)):
            return self.rows() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} records)"


class CandidateColumns(Columns):
    """The ``candidates`` array of one record, as columns.

    Attributes:
        item_ids, provider_ids: ``(n,)`` tuples of strings.
        features: ``(n, d)`` float32. item_features: ``(n, k)`` float32 (``k`` may be 0).
    """

    def __init__(self, item_ids: tuple[str, ...], provider_ids: tuple[str, ...], features: np.ndarray,
                 item_features: np.ndarray) -> None:
        n = len(item_ids)
        if len(provider_ids) != n or features.ndim != 2 or item_features.ndim != 2 \
                or features.shape[0] != n or item_features.shape[0] != n:
            raise ValueError(f"CandidateColumns: {n} item ids, but ids or feature rows of other lengths")
        self.item_ids, self.provider_ids = item_ids, provider_ids
        self.features, self.item_features = features, item_features

    def __len__(self) -> int:
        return len(self.item_ids)

    def _build_rows(self) -> list[dict[str, Any]]:
        return [{"item_id": i, "provider_id": p, "features": f, "item_features": z}
                for i, p, f, z in zip(self.item_ids, self.provider_ids, self.features.tolist(),
                                      self.item_features.tolist())]

    def encoded(self) -> bytes:
        """The Avro encoding of the array (count, items, end)."""
        n = len(self.item_ids)
        if not n:
            return _END
        tail = _candidate_tail(self.features.shape[1], self.item_features.shape[1])
        tails = tail.fill(np.hstack([self.features, self.item_features])).tobytes()
        parts = [_long(n)]
        _item_strings(parts, self.item_ids, self.provider_ids, tails, tail.width)
        parts.append(_END)
        return b"".join(parts)


class ScoredItems(Columns):
    """The ``items`` array of one ``scores`` record, as columns.

    Every item has empty ``features`` and ``item_features`` (the scorer does not copy them)
    and the same keys in each of its three maps.

    Attributes:
        item_ids, provider_ids: ``(n,)`` tuples of strings.
        keys: the keys of the samples, means and stds maps, in map order.
        values: ``(n, m)`` float64, the three maps' values side by side, in key order
            (a read-only view).
    """

    def __init__(self, item_ids: tuple[str, ...], provider_ids: tuple[str, ...],
                 keys: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], values: np.ndarray,
                 tails: np.ndarray | None = None) -> None:
        n = len(item_ids)
        if len(provider_ids) != n or values.shape != (n, sum(map(len, keys))):
            raise ValueError(f"ScoredItems: {n} item ids, but ids or values of other shapes")
        if not all(type(k) is str for ks in keys for k in ks) or any(len(set(ks)) != len(ks) for ks in keys):
            raise ValueError("ScoredItems: map keys must be distinct strings")
        self.item_ids, self.provider_ids, self.keys = item_ids, provider_ids, keys
        self.values = values.view()
        self.values.flags.writeable = False  # the encoded parts below are computed from it once
        self._tails = tails  # (n, width) uint8: the items' encoded fixed parts, when known

    @classmethod
    def _of_layout(cls, item_ids: tuple[str, ...], provider_ids: tuple[str, ...],
                   keys: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], values: np.ndarray) -> "ScoredItems":
        """The decoder's constructor: ``keys`` come from a checked layout and ``values`` is
        ``(len(item_ids), m)``, so the per-record checks of ``__init__`` are skipped."""
        self = cls.__new__(cls)
        self.item_ids, self.provider_ids, self.keys = item_ids, provider_ids, keys
        self.values = values.view()
        self.values.flags.writeable = False
        self._tails = None
        return self

    @staticmethod
    def _stack(samples: Mapping[str, np.ndarray], means: Mapping[str, np.ndarray],
               stds: Mapping[str, np.ndarray], n: int) -> tuple[tuple[tuple[str, ...], ...], np.ndarray]:
        """The keys of the three maps and their ``n`` values side by side, ``(n, m)`` float64."""
        keys = (tuple(samples), tuple(means), tuple(stds))
        columns = [*samples.values(), *means.values(), *stds.values()]
        if not columns:  # three empty maps
            return keys, np.zeros((n, 0))
        return keys, np.stack(columns, axis=1).astype(np.float64, copy=False)

    @classmethod
    def from_maps(cls, item_ids: tuple[str, ...], provider_ids: tuple[str, ...],
                  samples: Mapping[str, np.ndarray], means: Mapping[str, np.ndarray],
                  stds: Mapping[str, np.ndarray]) -> "ScoredItems":
        """From ``{outcome: (n,)}`` columns per map (dict order is map order)."""
        keys, values = cls._stack(samples, means, stds, len(item_ids))
        return cls(item_ids, provider_ids, keys, values)

    @classmethod
    def split(cls, item_ids: Sequence[tuple[str, ...]], provider_ids: Sequence[tuple[str, ...]],
              samples: Mapping[str, np.ndarray], means: Mapping[str, np.ndarray],
              stds: Mapping[str, np.ndarray], offsets: np.ndarray) -> list["ScoredItems"]:
        """One ``ScoredItems`` per record from ``{outcome: (n_pairs,)}`` columns over all pairs
        of many records; record ``r`` owns pairs ``offsets[r]:offsets[r + 1]``.

        The fixed parts of all items are encoded here, in one pass; each record keeps views.
        """
        keys, values = cls._stack(samples, means, stds, int(offsets[-1]))
        tails = _scored_tail(keys).fill(values)
        return [cls(items, providers, keys, values[a:b], tails[a:b])
                for items, providers, a, b in zip(item_ids, provider_ids, offsets[:-1].tolist(),
                                                  offsets[1:].tolist())]

    def _map(self, which: int) -> dict[str, np.ndarray]:
        start = sum(len(k) for k in self.keys[:which])
        return {key: self.values[:, start + i] for i, key in enumerate(self.keys[which])}

    @property
    def samples(self) -> dict[str, np.ndarray]:
        """``{outcome: (n,) float64}`` (views)."""
        return self._map(0)

    @property
    def means(self) -> dict[str, np.ndarray]:
        return self._map(1)

    @property
    def stds(self) -> dict[str, np.ndarray]:
        return self._map(2)

    def __len__(self) -> int:
        return len(self.item_ids)

    def _build_rows(self) -> list[dict[str, Any]]:
        maps = [{k: v.tolist() for k, v in self._map(i).items()} for i in range(3)]
        return [{"item_id": item, "provider_id": provider, "features": [], "item_features": [],
                 "samples": {k: v[j] for k, v in maps[0].items()},
                 "means": {k: v[j] for k, v in maps[1].items()},
                 "stds": {k: v[j] for k, v in maps[2].items()}}
                for j, (item, provider) in enumerate(zip(self.item_ids, self.provider_ids))]

    def encoded(self) -> bytes:
        """The Avro encoding of the array (count, items, end)."""
        n = len(self.item_ids)
        if not n:
            return _END
        tail = _scored_tail(self.keys)
        if self._tails is None:
            self._tails = tail.fill(self.values)
        parts = [_long(n)]
        _item_strings(parts, self.item_ids, self.provider_ids, self._tails.tobytes(), tail.width)
        parts.append(_END)
        return b"".join(parts)


# -- candidates -------------------------------------------------------------------------------

def encode_candidates(value: Mapping[str, Any]) -> bytes | None:
    """The Avro body of a ``candidates`` value, or None to leave it to fastavro."""
    try:
        parts = [_string(value["batch_id"]), _string(value["user_id"]), _checked_long(value["created_at_ms"]),
                 _nullable_int(value.get("user_cap"))]
        cands = value["candidates"]
        if isinstance(cands, CandidateColumns) and cands._rows is None:
            parts.append(cands.encoded())
        elif type(cands) is list:
            if cands:
                parts.append(_long(len(cands)))
                for c in cands:
                    parts += (_cached_string(c["item_id"]), _cached_string(c["provider_id"]),
                              _float_array(c["features"]), _float_array(c.get("item_features", ())))
            parts.append(_END)
        else:
            raise _Unhandled
        return b"".join(parts)
    except (_Unhandled, KeyError, TypeError, AttributeError, struct.error, OverflowError):
        return None


def decode_candidates(buf: bytes, pos: int = 0) -> dict[str, Any] | None:
    """A ``candidates`` value from the Avro body at ``buf[pos:]``, or None to leave it to fastavro.

    The body must end exactly at the end of ``buf``. The ``candidates`` entry is a
    :class:`CandidateColumns` when every candidate's feature arrays have the first one's widths.
    """
    try:
        return _decode_candidates(bytes(buf), pos)
    except (_Unhandled, IndexError, ValueError):  # ValueError covers UnicodeDecodeError
        return None


def _decode_candidates(buf: bytes, pos: int) -> dict[str, Any]:
    batch_id, pos = _read_string(buf, pos)
    user_id, pos = _read_string(buf, pos)
    created, pos = _read_long(buf, pos)
    cap, pos = _read_nullable_int(buf, pos)
    count, pos = _read_count(buf, pos)
    if not count:
        raise _Unhandled  # no candidates: rare, and fastavro's answer is as good
    items: list[str] = []
    providers: list[str] = []
    starts: list[int] = []
    tail: _Tail | None = None
    width = 0
    while count:
        for _ in range(count):
            # _read_string inlined for the usual short id (one-byte length): this loop runs per
            # pair. A slice past the end is caught below: the next count read fails, or pos != len.
            n = buf[pos]
            if n < 0x80 and not n & 1:
                end = pos + 1 + (n >> 1)
                items.append(buf[pos + 1:end].decode())
                pos = end
            else:
                item, pos = _read_string(buf, pos)
                items.append(item)
            n = buf[pos]
            if n < 0x80 and not n & 1:
                end = pos + 1 + (n >> 1)
                providers.append(buf[pos + 1:end].decode())
                pos = end
            else:
                provider, pos = _read_string(buf, pos)
                providers.append(provider)
            if tail is None:  # the widths of the first candidate's arrays fix the layout
                d, at = _read_count(buf, pos)
                k, _ = _read_count(buf, at + (4 * d + 1 if d else 0))
                if 4 * (d + k) > len(buf):
                    raise _Unhandled
                tail = _candidate_tail(d, k)
                width = tail.width
            starts.append(pos)
            pos += width
        count, pos = _read_count(buf, pos)
    if pos != len(buf) or tail is None:
        raise _Unhandled  # trailing bytes, or a broken layout: fastavro's error
    values = tail.read(np.frombuffer(buf, dtype=np.uint8), starts)  # (n, d + k): features, item features
    return {"batch_id": batch_id, "user_id": user_id, "created_at_ms": created, "user_cap": cap,
            "candidates": CandidateColumns(tuple(items), tuple(providers), np.ascontiguousarray(values[:, :d]),
                                           np.ascontiguousarray(values[:, d:]))}


# -- scores -----------------------------------------------------------------------------------

def encode_scores(value: Mapping[str, Any]) -> bytes | None:
    """The Avro body of a ``scores`` value whose ``items`` is a :class:`ScoredItems`, or None
    to leave it to fastavro (plain lists of dicts go there too)."""
    try:
        items = value["items"]
        if not isinstance(items, ScoredItems) or items._rows is not None:
            raise _Unhandled
        return b"".join((
            _string(value["batch_id"]), _string(value["user_id"]), _nullable_int(value.get("user_cap")),
            _checked_long(value["scored_at_ms"]), _string(value["model_name"]),
            _checked_long(value["model_version"]), _string(value.get("parameter_version", "default")),
            _double(value["tau"]), items.encoded()))
    except (_Unhandled, KeyError, TypeError, AttributeError, struct.error, OverflowError):
        return None


def decode_scores(buf: bytes, pos: int = 0) -> dict[str, Any] | None:
    """A ``scores`` value from the Avro body at ``buf[pos:]``, or None to leave it to fastavro.

    The ``items`` entry is a :class:`ScoredItems` when every item has empty feature arrays
    and the first item's map keys; other records are left to fastavro.
    """
    try:
        return _decode_scores(bytes(buf), pos)
    except (_Unhandled, IndexError, ValueError, struct.error):
        return None


def _decode_scores(buf: bytes, pos: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["batch_id"], pos = _read_string(buf, pos)
    value["user_id"], pos = _read_string(buf, pos)
    value["user_cap"], pos = _read_nullable_int(buf, pos)
    value["scored_at_ms"], pos = _read_long(buf, pos)
    value["model_name"], pos = _read_string(buf, pos)
    value["model_version"], pos = _read_long(buf, pos)
    value["parameter_version"], pos = _read_string(buf, pos)
    (value["tau"],) = _DOUBLE.unpack_from(buf, pos)
    pos += 8
    count, pos = _read_count(buf, pos)
    if not count:
        raise _Unhandled
    layout = _last_scored_layout[0]
    if layout is not None:  # the usual case: this record's map keys are the last record's
        try:
            value["items"] = _read_scored_items(buf, pos, count, layout)
            return value
        except (_Unhandled, IndexError, ValueError):
            pass  # other keys than the last record's (or bad bytes): read the first item's keys
    value["items"] = _read_scored_items(buf, pos, count, None)
    return value


class _ScoredLayout:
    """The fixed part of every item of a scores record whose maps have ``keys``, and what
    checks a whole record's fixed parts against it at once (``mask`` keeps the bytes that
    are not numbers; ``expected`` is the template there)."""

    def __init__(self, keys: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]) -> None:
        self.keys = keys
        self.tail = tail = _scored_tail(keys)
        self.mask = np.zeros(tail.width, dtype=np.uint8)
        self.mask[tail.structure_bytes] = 0xFF
        self.expected = (tail.template & self.mask).tobytes()
        self._expected_rows: dict[int, bytes] = {}

    def matches(self, parts: np.ndarray) -> bool:
        """Whether every row of ``parts (n, width)`` uint8 has this layout's structure."""
        n = parts.shape[0]
        expected = self._expected_rows.get(n)
        if expected is None:
            expected = self.expected * n
            if len(self._expected_rows) >= 8:  # records of a few sizes are usual: keep those
                self._expected_rows.clear()
            self._expected_rows[n] = expected
        return (parts & self.mask).tobytes() == expected


@functools.lru_cache(maxsize=64)
def _scored_layout(keys: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]) -> _ScoredLayout:
    return _ScoredLayout(keys)


# The layout of the last scores record decoded: consecutive records nearly always share it,
# so its keys are tried first; every item's fixed part is checked against it either way.
_last_scored_layout: list[_ScoredLayout | None] = [None]


def _read_scored_items(buf: bytes, pos: int, count: int, layout: _ScoredLayout | None) -> ScoredItems:
    """The ``items`` array whose first block of ``count`` items starts at ``buf[pos]``.

    ``layout``: the map keys to expect, or None to read them from the first item.

    Raises:
        _Unhandled, IndexError, ValueError: the bytes are not an items array of ``layout``
            (or of any layout these codecs handle) that ends at the end of ``buf``.
    """
    ids: list[tuple[str, str]] = []  # (item_id, provider_id) of each item
    tails: list[bytes] = []  # each item's fixed part, copied out
    width = 0 if layout is None else layout.tail.width
    known = _ID_PAIRS.get
    while count:
        for _ in range(count):
            # The usual item starts with two short ids (one-byte lengths): their encoding is
            # looked up whole, so a repeated pair costs one slice and no UTF-8 decoding.
            n = buf[pos]
            mid = pos + 1 + (n >> 1)
            if n & 0x81 or buf[mid] & 0x81:
                item, end = _read_string(buf, pos)
                provider, end = _read_string(buf, end)
                pair = (item, provider)
            else:
                end = mid + 1 + (buf[mid] >> 1)
                encoded = buf[pos:end]  # short past the end of buf: the next read fails
                pair = known(encoded)
                if pair is None:
                    pair = _id_pair(encoded, buf[pos + 1:mid].decode(), buf[mid + 1:end].decode())
            ids.append(pair)
            pos = end
            if layout is None:  # the first item's map keys fix the layout
                layout = _scored_layout(_read_item_keys(buf, pos))
                width = layout.tail.width
            end = pos + width
            tails.append(buf[pos:end])  # a slice past the end is short: the reshape below fails
            pos = end
        count, pos = _read_count(buf, pos)
    if pos != len(buf) or layout is None:
        raise _Unhandled
    # All fixed parts as one (n, width) array: one check of their structure, one gather of the numbers.
    parts = np.frombuffer(b"".join(tails), dtype=np.uint8).reshape(len(tails), width)
    if not layout.matches(parts):
        raise _Unhandled  # an item with another structure (other keys) than the layout's
    values = parts.take(layout.tail.value_bytes, axis=1).view(_F8)  # (n, m)
    _last_scored_layout[0] = layout
    items, providers = zip(*ids)
    return ScoredItems._of_layout(items, providers, layout.keys, values)


# (item_id, provider_id) by the bytes encoding them, for the scored items' ids (which repeat
# across users); at most _STRING_CACHE_LIMIT entries.
_ID_PAIRS: dict[bytes, tuple[str, str]] = {}


def _id_pair(encoded: bytes, item: str, provider: str) -> tuple[str, str]:
    if len(_ID_PAIRS) >= _STRING_CACHE_LIMIT:
        _ID_PAIRS.clear()
    pair = _ID_PAIRS[encoded] = (item, provider)
    return pair


def _read_item_keys(buf: bytes, pos: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The keys of the three maps of the scored item whose fixed part starts at ``pos``."""
    if buf[pos] or buf[pos + 1]:
        raise _Unhandled  # features or item_features not empty
    pos += 2
    keys = []
    for _ in range(3):
        count, pos = _read_count(buf, pos)
        map_keys = []
        for _ in range(count):
            key, pos = _read_string(buf, pos)
            map_keys.append(key)
            pos += 8
        if count:
            if buf[pos]:
                raise _Unhandled  # a second block
            pos += 1
        if len(set(map_keys)) != len(map_keys):
            raise _Unhandled  # a repeated key: fastavro keeps the last value
        keys.append(tuple(map_keys))
    return keys[0], keys[1], keys[2]
