"""The columnar codec of ``scores`` (written by the scorer, read by the allocator, per user).

fastavro handles every map entry as a Python object, about 0.3 µs each; a record of 20 scored
items carries some 240 entries. This codec reads and writes the same Avro binary encoding with
numpy (``streams.avro.columns``, ``streams.avro.scored_parts``): an item is its two ids and a
part of fixed length, its ``d`` pair features (float32) and its maps of doubles. The scorer
encodes the fixed parts of a whole batch's items at once (``ScoredItems.split``); the
allocator's decoder tries the layout (map keys and feature width) of the last record first
(consecutive records nearly always share it) and checks every item against it. It returns None
for anything else (a plain list of dicts, maps whose keys or features whose widths differ
between items, non-empty ``item_features``, bytes that do not parse), and ``AvroSerde`` runs
fastavro. Bound to the structure of ``SCHEMA``:
when ``schemas/scores.avsc`` changes, ``implements`` says no and the serde uses fastavro alone.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from fastavro import parse_schema

from streams.avro.columns import Columns, item_strings
from streams.avro.scored_parts import Keys, ScoredLayout, read_item_layout, scored_layout, scored_part
from streams.avro.wire import (
    DOUBLE,
    END,
    F4,
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
        {"name": "policy", "type": "string", "default": "banditlp"},
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


class ScoredItems(Columns):
    """The ``items`` array of one ``scores`` record, as columns.

    Every item has ``d`` pair features (the same width in every item; 0 when the scorer did not
    copy them), empty ``item_features`` and the same keys in each of its maps; ``draws``
    (Thompson draws 2..K) has the same number of maps in every item.

    Attributes:
        item_ids, provider_ids: ``(n,)`` tuples of strings.
        keys: the keys of the samples, means and stds maps, then of each further draw's map.
        values: ``(n, m)`` float64, the three maps' values side by side, in key order
            (a read-only view).
        features: ``(n, d)`` float32, the pair features scored (a read-only view; ``d`` may be 0).
    """

    def __init__(
        self,
        item_ids: tuple[str, ...],
        provider_ids: tuple[str, ...],
        keys: Keys,
        values: np.ndarray,
        tails: np.ndarray | None = None,
        features: np.ndarray | None = None,
    ) -> None:
        n = len(item_ids)
        if len(keys) < 3 or len(provider_ids) != n or values.shape != (n, sum(map(len, keys))):
            raise ValueError(f"ScoredItems: {n} item ids, but ids or values of other shapes")
        if not all(type(k) is str for ks in keys for k in ks) or any(len(set(ks)) != len(ks) for ks in keys):
            raise ValueError("ScoredItems: map keys must be distinct strings")
        self.item_ids, self.provider_ids, self.keys = item_ids, provider_ids, keys
        self.values = values.view()
        self.values.flags.writeable = False  # the encoded parts below are computed from it once
        self.features = _features(features, n)
        self._tails = tails  # (n, width) uint8: the items' encoded fixed parts, when known

    @classmethod
    def _of_layout(
        cls,
        item_ids: tuple[str, ...],
        provider_ids: tuple[str, ...],
        keys: Keys,
        values: np.ndarray,
        features: np.ndarray,
    ) -> ScoredItems:
        """The decoder's constructor: ``keys`` come from a checked layout, ``values`` is
        ``(len(item_ids), m)`` float64 and ``features`` ``(len(item_ids), d)`` float32, so the
        per-record checks of ``__init__`` are skipped."""
        self = cls.__new__(cls)
        self.item_ids, self.provider_ids, self.keys = item_ids, provider_ids, keys
        self.values = values.view()
        self.values.flags.writeable = False
        self.features = features.view()
        self.features.flags.writeable = False
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
        features: np.ndarray | None = None,
    ) -> ScoredItems:
        """From ``{outcome: (n,)}`` columns per map (dict order is map order) and, optionally,
        the further draws ``{outcome: (D, n)}`` and the pair features ``(n, d)``."""
        keys, values = cls._stack(samples, means, stds, len(item_ids), draws)
        return cls(item_ids, provider_ids, keys, values, features=features)

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
        features: np.ndarray | None = None,
    ) -> list[ScoredItems]:
        """One ``ScoredItems`` per record from ``{outcome: (n_pairs,)}`` columns over all pairs
        of many records (``draws``: ``{outcome: (D, n_pairs)}``; ``features``: ``(n_pairs, d)``,
        None for none); record ``r`` owns pairs ``offsets[r]:offsets[r + 1]``.

        The fixed parts of all items are encoded here, in one pass; each record keeps views.
        """
        n_pairs = int(offsets[-1])
        keys, values = cls._stack(samples, means, stds, n_pairs, draws)
        feats = _features(features, n_pairs)
        tails = scored_part(keys, feats.shape[1]).fill(values, feats)
        return [
            cls(items, providers, keys, values[a:b], tails[a:b], feats[a:b])
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
        features = self.features.tolist()
        return [
            {
                "item_id": item,
                "provider_id": provider,
                "features": features[j],
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
        part = scored_part(self.keys, self.features.shape[1])
        if self._tails is None:
            self._tails = part.fill(self.values, self.features)
        parts = [write_long(n)]
        item_strings(parts, self.item_ids, self.provider_ids, self._tails.tobytes(), part.width, strings)
        parts.append(END)
        return b"".join(parts)


def _features(features: np.ndarray | None, n: int) -> np.ndarray:
    """``features`` as a read-only ``(n, d)`` float32 view, ``(n, 0)`` for None.

    A float beyond float32's range becomes infinity, as fastavro writes it.

    Raises:
        ValueError: not ``n`` rows of one width.
    """
    if features is None:
        out = np.zeros((n, 0), dtype=F4)
    else:
        with np.errstate(over="ignore"):
            out = np.asarray(features, dtype=F4).view()
        if out.ndim != 2 or out.shape[0] != n:
            raise ValueError(f"ScoredItems: {n} items, but features of shape {out.shape}")
    out.flags.writeable = False
    return out


class ScoresCodec:
    """Encodes and decodes ``scores`` bodies; owns the last decoded layout and the id cache."""

    subject = "scores"

    def __init__(self, strings: StringCache) -> None:
        self.strings = strings
        self.last_layout: ScoredLayout | None = None

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

        The ``items`` entry is a :class:`ScoredItems` when every item has the first item's
        feature width and map keys and empty ``item_features``; other records are left to fastavro.
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
                write_string(value.get("policy", "banditlp")),
                items.encoded(strings),
            )
        )
    except (Unhandled, KeyError, TypeError, AttributeError, struct.error, OverflowError):
        return None


def _decode(codec: ScoresCodec, buf: bytes, pos: int = 0) -> dict[str, Any] | None:
    """A ``scores`` value from the Avro body at ``buf[pos:]``, or None to leave it to fastavro.

    The ``items`` entry is a :class:`ScoredItems` when every item has the first item's
    feature width and map keys and empty ``item_features``; other records are left to fastavro.
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
    value["policy"], pos = read_string(buf, pos)
    count, pos = read_count(buf, pos)
    if not count:
        raise Unhandled
    layout = codec.last_layout
    if layout is not None:  # the usual case: this record's layout is the last record's
        try:
            value["items"] = _read_scored_items(codec, buf, pos, count, layout)
            return value
        except (Unhandled, IndexError, ValueError):
            pass  # another layout than the last record's (or bad bytes): read the first item's
    value["items"] = _read_scored_items(codec, buf, pos, count, None)
    return value


def _read_scored_items(
    codec: ScoresCodec, buf: bytes, pos: int, count: int, layout: ScoredLayout | None
) -> ScoredItems:
    """The ``items`` array whose first block of ``count`` items starts at ``buf[pos]``.

    ``layout``: the map keys and feature width to expect, or None to read them from the first item.

    Raises:
        Unhandled, IndexError, ValueError: the bytes are not an items array of ``layout``
            (or of any layout these codecs handle) that ends at the end of ``buf``.
    """
    ids: list[tuple[str, str]] = []  # (item_id, provider_id) of each item
    tails: list[bytes] = []  # each item's fixed part, copied out
    width = 0 if layout is None else layout.part.width
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
            if layout is None:  # the first item's map keys and feature width fix the layout
                layout = scored_layout(*read_item_layout(buf, pos))
                width = layout.part.width
            end = pos + width
            tails.append(buf[pos:end])  # a slice past the end is short: the reshape below fails
            pos = end
        count, pos = read_count(buf, pos)
    if pos != len(buf) or layout is None:
        raise Unhandled
    # All fixed parts as one (n, width) array: one check of their structure, one gather of the numbers.
    parts = np.frombuffer(b"".join(tails), dtype=np.uint8).reshape(len(tails), width)
    if not layout.matches(parts):
        raise Unhandled  # an item with another structure (other keys or width) than the layout's
    codec.last_layout = layout
    items, providers = zip(*ids)
    return ScoredItems._of_layout(items, providers, layout.keys, layout.part.values(parts), layout.part.features(parts))
