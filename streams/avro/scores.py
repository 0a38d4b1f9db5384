"""The columnar codec of ``scores`` (written by the scorer, read by the allocator, per user).

fastavro handles every map entry as a Python object, about 0.3 µs each; a record of 20 scored
items carries some 240 entries. This codec reads and writes the same Avro binary encoding with
numpy (``streams.avro.columns``). The scorer encodes the fixed parts of a whole batch's items at
once (``ScoredItems.split``); the allocator's decoder tries the map keys of the last record
first (consecutive records nearly always share them) and checks every item against them. It
returns None for anything else (a plain list of dicts, maps whose keys differ between items,
bytes that do not parse), and ``AvroSerde`` runs fastavro. Bound to the structure of ``SCHEMA``:
when ``schemas/scores.avsc`` changes, ``implements`` says no and the serde uses fastavro alone.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from fastavro import parse_schema

from streams.avro.columns import Columns, Tail, item_strings
from streams.avro.wire import (
    DOUBLE,
    END,
    F8,
    StringCache,
    Unhandled,
    checked_long,
    nullable_int,
    read_count,
    read_long,
    read_nullable_int,
    read_string,
    signature,
    write_double,
    write_long,
    write_string,
)

_FLOATS = {"type": "array", "items": "float"}
_DOUBLES = {"type": "map", "values": "double"}
# schemas/scores.avsc without its docs. Defaults are part of it (the writers rely on them).
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Scores",
    "namespace": "banditlp",
    "fields": [
        {"name": "batch_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "user_cap", "type": ["null", "int"], "default": None},
        {"name": "scored_at_ms", "type": "long"},
        {"name": "model_name", "type": "string"},
        {"name": "model_version", "type": "long"},
        {"name": "parameter_version", "type": "string", "default": "default"},
        {"name": "tau", "type": "double"},
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "ScoredItem",
                    "fields": [
                        {"name": "item_id", "type": "string"},
                        {"name": "provider_id", "type": "string"},
                        {"name": "features", "type": _FLOATS, "default": []},
                        {"name": "item_features", "type": _FLOATS, "default": []},
                        {"name": "samples", "type": _DOUBLES},
                        {"name": "means", "type": _DOUBLES},
                        {"name": "stds", "type": _DOUBLES},
                        {"name": "draws", "type": {"type": "array", "items": _DOUBLES}, "default": []},
                    ],
                },
            },
        },
    ],
}
_SIGNATURE = signature(parse_schema(SCHEMA))

Keys = tuple[tuple[str, ...], ...]
"""The keys of an item's maps, in map order: samples, means, stds, then one map per further draw."""


class ScoredItems(Columns):
    """The ``items`` array of one ``scores`` record, as columns.

    Every item has empty ``features`` and ``item_features`` (the scorer does not copy them)
    and the same keys in each of its maps; ``draws`` (Thompson draws 2..K) has the same number of
    maps in every item.

    Attributes:
        item_ids, provider_ids: ``(n,)`` tuples of strings.
        keys: the keys of the samples, means and stds maps, then of each further draw's map.
        values: ``(n, m)`` float64, the three maps' values side by side, in key order
            (a read-only view).
    """

    def __init__(
        self,
        item_ids: tuple[str, ...],
        provider_ids: tuple[str, ...],
        keys: Keys,
        values: np.ndarray,
        tails: np.ndarray | None = None,
    ) -> None:
        n = len(item_ids)
        if len(keys) < 3 or len(provider_ids) != n or values.shape != (n, sum(map(len, keys))):
            raise ValueError(f"ScoredItems: {n} item ids, but ids or values of other shapes")
        if not all(type(k) is str for ks in keys for k in ks) or any(len(set(ks)) != len(ks) for ks in keys):
            raise ValueError("ScoredItems: map keys must be distinct strings")
        self.item_ids, self.provider_ids, self.keys = item_ids, provider_ids, keys
        self.values = values.view()
        self.values.flags.writeable = False  # the encoded parts below are computed from it once
        self._tails = tails  # (n, width) uint8: the items' encoded fixed parts, when known

    @classmethod
    def _of_layout(
        cls,
        item_ids: tuple[str, ...],
        provider_ids: tuple[str, ...],
        keys: Keys,
        values: np.ndarray,
    ) -> ScoredItems:
        """The decoder's constructor: ``keys`` come from a checked layout and ``values`` is
        ``(len(item_ids), m)``, so the per-record checks of ``__init__`` are skipped."""
        self = cls.__new__(cls)
        self.item_ids, self.provider_ids, self.keys = item_ids, provider_ids, keys
        self.values = values.view()
        self.values.flags.writeable = False
        self._tails = None
        return self

    @staticmethod
    def _stack(
        samples: Mapping[str, np.ndarray],
        means: Mapping[str, np.ndarray],
        stds: Mapping[str, np.ndarray],
        n: int,
        draws: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[Keys, np.ndarray]:
        """The keys of the maps and their ``n`` values side by side, ``(n, m)`` float64;
        ``draws`` ``{outcome: (D, n)}`` adds one map per further draw."""
        extra = dict(draws or {})
        n_extra = len(next(iter(extra.values()))) if extra else 0
        keys: Keys = (tuple(samples), tuple(means), tuple(stds)) + (tuple(extra),) * n_extra
        columns = [*samples.values(), *means.values(), *stds.values()]
        columns += [d[i] for i in range(n_extra) for d in extra.values()]
        if not columns:  # empty maps
            return keys, np.zeros((n, 0))
        return keys, np.stack(columns, axis=1).astype(np.float64, copy=False)

    @classmethod
    def from_maps(
        cls,
        item_ids: tuple[str, ...],
        provider_ids: tuple[str, ...],
        samples: Mapping[str, np.ndarray],
        means: Mapping[str, np.ndarray],
        stds: Mapping[str, np.ndarray],
        draws: Mapping[str, np.ndarray] | None = None,
    ) -> ScoredItems:
        """From ``{outcome: (n,)}`` columns per map (dict order is map order) and, optionally,
        the further draws ``{outcome: (D, n)}``."""
        keys, values = cls._stack(samples, means, stds, len(item_ids), draws)
        return cls(item_ids, provider_ids, keys, values)

    @classmethod
    def split(
        cls,
        item_ids: Sequence[tuple[str, ...]],
        provider_ids: Sequence[tuple[str, ...]],
        samples: Mapping[str, np.ndarray],
        means: Mapping[str, np.ndarray],
        stds: Mapping[str, np.ndarray],
        offsets: np.ndarray,
        draws: Mapping[str, np.ndarray] | None = None,
    ) -> list[ScoredItems]:
        """One ``ScoredItems`` per record from ``{outcome: (n_pairs,)}`` columns over all pairs
        of many records (``draws``: ``{outcome: (D, n_pairs)}``); record ``r`` owns pairs
        ``offsets[r]:offsets[r + 1]``.

        The fixed parts of all items are encoded here, in one pass; each record keeps views.
        """
        keys, values = cls._stack(samples, means, stds, int(offsets[-1]), draws)
        tails = _scored_tail(keys).fill(values)
        return [
            cls(items, providers, keys, values[a:b], tails[a:b])
            for items, providers, a, b in zip(item_ids, provider_ids, offsets[:-1].tolist(), offsets[1:].tolist())
        ]

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

    @property
    def n_draws(self) -> int:
        """K: the Thompson draws per pair (``samples`` and the further draws' maps)."""
        return len(self.keys) - 2

    @property
    def draws(self) -> dict[str, np.ndarray]:
        """``{outcome: (K, n) float64}``: ``samples`` as draw 0, then the further draws; the
        outcomes of ``samples`` that every further draw has."""
        maps = [self._map(0)] + [self._map(i) for i in range(3, len(self.keys))]
        return {o: np.stack([m[o] for m in maps]) for o in maps[0] if all(o in m for m in maps)}

    def __len__(self) -> int:
        return len(self.item_ids)

    def _build_rows(self) -> list[dict[str, Any]]:
        maps = [{k: v.tolist() for k, v in self._map(i).items()} for i in range(len(self.keys))]
        return [
            {
                "item_id": item,
                "provider_id": provider,
                "features": [],
                "item_features": [],
                "samples": {k: v[j] for k, v in maps[0].items()},
                "means": {k: v[j] for k, v in maps[1].items()},
                "stds": {k: v[j] for k, v in maps[2].items()},
                "draws": [{k: v[j] for k, v in m.items()} for m in maps[3:]],
            }
            for j, (item, provider) in enumerate(zip(self.item_ids, self.provider_ids))
        ]

    def encoded(self, strings: StringCache) -> bytes:
        """The Avro encoding of the array (count, items, end)."""
        n = len(self.item_ids)
        if not n:
            return END
        tail = _scored_tail(self.keys)
        if self._tails is None:
            self._tails = tail.fill(self.values)
        parts = [write_long(n)]
        item_strings(parts, self.item_ids, self.provider_ids, self._tails.tobytes(), tail.width, strings)
        parts.append(END)
        return b"".join(parts)


@functools.lru_cache(maxsize=64)
def _scored_tail(keys: Keys) -> Tail:
    """Empty features and item_features, the samples, means and stds maps with ``keys[:3]``,
    then the draws array of one map per ``keys[3:]``."""
    template, number_at = bytearray(END + END), list[int]()

    def write_map(map_keys: tuple[str, ...]) -> None:
        nonlocal template
        if map_keys:
            template += write_long(len(map_keys))
            for key in map_keys:
                template += write_string(key)
                number_at.append(len(template))
                template += bytes(8)
        template += END

    for map_keys in keys[:3]:
        write_map(map_keys)
    if len(keys) > 3:
        template += write_long(len(keys) - 3)
        for map_keys in keys[3:]:
            write_map(map_keys)
    template += END
    return Tail(bytes(template), number_at, F8)


class ScoresCodec:
    """Encodes and decodes ``scores`` bodies; owns the last decoded layout and the id cache."""

    subject = "scores"

    def __init__(self, strings: StringCache) -> None:
        self.strings = strings
        self.last_layout: _ScoredLayout | None = None

    @staticmethod
    def implements(parsed_schema: Any) -> bool:
        """True when this codec writes and reads ``parsed_schema``."""
        return signature(parsed_schema) == _SIGNATURE

    def encode(self, value: Mapping[str, Any]) -> bytes | None:
        """The Avro body of a ``scores`` value whose ``items`` is a :class:`ScoredItems`, or None
        to leave it to fastavro (plain lists of dicts go there too)."""
        return _encode(value, self.strings)

    def decode(self, buf: bytes, pos: int = 0) -> dict[str, Any] | None:
        """A ``scores`` value from the Avro body at ``buf[pos:]``, or None to leave it to fastavro.

        The ``items`` entry is a :class:`ScoredItems` when every item has empty feature arrays
        and the first item's map keys; other records are left to fastavro.
        """
        return _decode(self, buf, pos)


def _encode(value: Mapping[str, Any], strings: StringCache) -> bytes | None:
    """The Avro body of a ``scores`` value whose ``items`` is a :class:`ScoredItems`, or None
    to leave it to fastavro (plain lists of dicts go there too)."""
    try:
        items = value["items"]
        if not isinstance(items, ScoredItems) or items._rows is not None:
            raise Unhandled
        return b"".join(
            (
                write_string(value["batch_id"]),
                write_string(value["user_id"]),
                nullable_int(value.get("user_cap")),
                checked_long(value["scored_at_ms"]),
                write_string(value["model_name"]),
                checked_long(value["model_version"]),
                write_string(value.get("parameter_version", "default")),
                write_double(value["tau"]),
                items.encoded(strings),
            )
        )
    except (Unhandled, KeyError, TypeError, AttributeError, struct.error, OverflowError):
        return None


def _decode(codec: ScoresCodec, buf: bytes, pos: int = 0) -> dict[str, Any] | None:
    """A ``scores`` value from the Avro body at ``buf[pos:]``, or None to leave it to fastavro.

    The ``items`` entry is a :class:`ScoredItems` when every item has empty feature arrays
    and the first item's map keys; other records are left to fastavro.
    """
    try:
        return _decode_scores(codec, bytes(buf), pos)
    except (Unhandled, IndexError, ValueError, struct.error):
        return None


def _decode_scores(codec: ScoresCodec, buf: bytes, pos: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["batch_id"], pos = read_string(buf, pos)
    value["user_id"], pos = read_string(buf, pos)
    value["user_cap"], pos = read_nullable_int(buf, pos)
    value["scored_at_ms"], pos = read_long(buf, pos)
    value["model_name"], pos = read_string(buf, pos)
    value["model_version"], pos = read_long(buf, pos)
    value["parameter_version"], pos = read_string(buf, pos)
    (value["tau"],) = DOUBLE.unpack_from(buf, pos)
    pos += 8
    count, pos = read_count(buf, pos)
    if not count:
        raise Unhandled
    layout = codec.last_layout
    if layout is not None:  # the usual case: this record's map keys are the last record's
        try:
            value["items"] = _read_scored_items(codec, buf, pos, count, layout)
            return value
        except (Unhandled, IndexError, ValueError):
            pass  # other keys than the last record's (or bad bytes): read the first item's keys
    value["items"] = _read_scored_items(codec, buf, pos, count, None)
    return value


class _ScoredLayout:
    """The fixed part of every item of a scores record whose maps have ``keys``, and what
    checks a whole record's fixed parts against it at once (``mask`` keeps the bytes that
    are not numbers; ``expected`` is the template there)."""

    def __init__(self, keys: Keys) -> None:
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
def _scored_layout(keys: Keys) -> _ScoredLayout:
    return _ScoredLayout(keys)


def _read_scored_items(
    codec: ScoresCodec, buf: bytes, pos: int, count: int, layout: _ScoredLayout | None
) -> ScoredItems:
    """The ``items`` array whose first block of ``count`` items starts at ``buf[pos]``.

    ``layout``: the map keys to expect, or None to read them from the first item.

    Raises:
        Unhandled, IndexError, ValueError: the bytes are not an items array of ``layout``
            (or of any layout these codecs handle) that ends at the end of ``buf``.
    """
    ids: list[tuple[str, str]] = []  # (item_id, provider_id) of each item
    tails: list[bytes] = []  # each item's fixed part, copied out
    width = 0 if layout is None else layout.tail.width
    known = codec.strings.pair
    while count:
        for _ in range(count):
            # The usual item starts with two short ids (one-byte lengths): their encoding is
            # looked up whole, so a repeated pair costs one slice and no UTF-8 decoding.
            n = buf[pos]
            mid = pos + 1 + (n >> 1)
            if n & 0x81 or buf[mid] & 0x81:
                item, end = read_string(buf, pos)
                provider, end = read_string(buf, end)
                pair = (item, provider)
            else:
                end = mid + 1 + (buf[mid] >> 1)
                encoded = buf[pos:end]  # short past the end of buf: the next read fails
                seen = known(encoded)
                pair = (
                    seen
                    if seen is not None
                    else codec.strings.remember_pair(encoded, buf[pos + 1 : mid].decode(), buf[mid + 1 : end].decode())
                )
            ids.append(pair)
            pos = end
            if layout is None:  # the first item's map keys fix the layout
                layout = _scored_layout(_read_item_keys(buf, pos))
                width = layout.tail.width
            end = pos + width
            tails.append(buf[pos:end])  # a slice past the end is short: the reshape below fails
            pos = end
        count, pos = read_count(buf, pos)
    if pos != len(buf) or layout is None:
        raise Unhandled
    # All fixed parts as one (n, width) array: one check of their structure, one gather of the numbers.
    parts = np.frombuffer(b"".join(tails), dtype=np.uint8).reshape(len(tails), width)
    if not layout.matches(parts):
        raise Unhandled  # an item with another structure (other keys) than the layout's
    values = parts.take(layout.tail.value_bytes, axis=1).view(F8)  # (n, m)
    codec.last_layout = layout
    items, providers = zip(*ids)
    return ScoredItems._of_layout(items, providers, layout.keys, values)


def _read_item_keys(buf: bytes, pos: int) -> Keys:
    """The keys of the maps of the scored item whose fixed part starts at ``pos``: samples,
    means and stds, then one per map of its draws array."""
    if buf[pos] or buf[pos + 1]:
        raise Unhandled  # features or item_features not empty
    pos += 2
    keys = []

    def read_map(pos: int) -> tuple[tuple[str, ...], int]:
        count, pos = read_count(buf, pos)
        map_keys = []
        for _ in range(count):
            key, pos = read_string(buf, pos)
            map_keys.append(key)
            pos += 8
        if count:
            if buf[pos]:
                raise Unhandled  # a second block
            pos += 1
        if len(set(map_keys)) != len(map_keys):
            raise Unhandled  # a repeated key: fastavro keeps the last value
        return tuple(map_keys), pos

    for _ in range(3):
        map_keys, pos = read_map(pos)
        keys.append(map_keys)
    n_draws, pos = read_count(buf, pos)
    for _ in range(n_draws):
        map_keys, pos = read_map(pos)
        keys.append(map_keys)
    if n_draws and buf[pos]:
        raise Unhandled  # a second block of draws
    return tuple(keys)
