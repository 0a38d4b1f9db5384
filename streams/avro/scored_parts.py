"""The fixed-length part of one scored item of ``scores``, written and checked for many items at once.

After its two id strings, a scored item of ``schemas/scores.avsc`` is

    features        array<float>: count d, d little-endian float32, END (or END alone when d = 0)
    item_features   END (empty: the scorer keeps the per-user head's features in its own table)
    samples, means, stds   three maps of doubles: count, (key, 8 bytes) per entry, END (or END alone)
    draws           array of maps, one per further Thompson draw: count, maps, END (or END alone)

For one record whose items all have ``d`` features and maps with the same keys, that part has the
same length and the same structure bytes (counts, keys, ENDs) in every item; only the numbers
differ. :class:`ScoredPart` is that part as a template, with the byte offsets of its doubles and
of its features, so a whole batch's parts are filled by two numpy scatters, and a decoded record's
parts are checked by one masked comparison and read by one gather (:class:`ScoredLayout`).
"""

from __future__ import annotations

import functools

import numpy as np

from streams.avro.columns import Tail
from streams.avro.wire import END, F4, F8, Unhandled, read_count, read_string, write_long, write_string

Keys = tuple[tuple[str, ...], ...]
"""The keys of an item's maps, in map order: samples, means, stds, then one map per further draw."""


class ScoredPart:
    """The encoded part after the ids of a scored item with ``d`` features and maps with ``keys``.

    Attributes:
        keys: samples', means' and stds' keys, then each further draw's.
        d: the width of the features array (0: an empty array).
        width: the part's length in bytes.
        numbers: the maps' doubles as a :class:`Tail` (``value_bytes`` are their offsets);
            its template has zeros in place of the features too.
        features_at: the slice of the part that holds the ``4 d`` bytes of the features.
        structure_bytes: ``(s,)`` offsets of the bytes that are neither a double nor a feature.
    """

    def __init__(self, keys: Keys, d: int) -> None:
        if d < 0:
            raise ValueError(f"ScoredPart: feature width {d} is negative")
        count = write_long(d)
        template = bytearray(count + bytes(4 * d) + END if d else END)  # features
        self.features_at = slice(len(count), len(count) + 4 * d)
        template += END  # item_features
        number_at: list[int] = []

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
        self.keys, self.d = keys, d
        self.numbers = Tail(bytes(template), number_at, F8)
        self.width = self.numbers.width
        mask = np.ones(self.width, dtype=bool)
        mask[self.numbers.value_bytes] = False
        mask[self.features_at] = False
        self.structure_bytes = np.flatnonzero(mask)

    def fill(self, values: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Encoded parts ``(n, width)`` uint8 of ``values (n, m)`` float64 (the maps' numbers in key
        order) and ``features (n, d)`` float32."""
        out = self.numbers.fill(values)
        if self.d:
            n = features.shape[0]
            out[:, self.features_at] = np.ascontiguousarray(features, dtype=F4).view(np.uint8).reshape(n, 4 * self.d)
        return out

    def features(self, parts: np.ndarray) -> np.ndarray:
        """The features ``(n, d)`` float32 of encoded parts ``(n, width)`` uint8 (a new array)."""
        if not self.d:
            return np.zeros((parts.shape[0], 0), dtype=F4)
        return np.ascontiguousarray(parts[:, self.features_at]).view(F4)

    def values(self, parts: np.ndarray) -> np.ndarray:
        """The maps' numbers ``(n, m)`` float64 of encoded parts ``(n, width)`` uint8 (a new array)."""
        return parts.take(self.numbers.value_bytes, axis=1).view(F8)


@functools.lru_cache(maxsize=64)
def scored_part(keys: Keys, d: int) -> ScoredPart:
    """:class:`ScoredPart` of ``(keys, d)``, built once per layout."""
    return ScoredPart(keys, d)


class ScoredLayout:
    """What checks a whole record's fixed parts against one ``(keys, d)`` at once: ``mask`` keeps
    the structure bytes (not the numbers, not the features), ``expected`` is the template there."""

    def __init__(self, keys: Keys, d: int) -> None:
        self.keys, self.d = keys, d
        self.part = part = scored_part(keys, d)
        self.mask = np.zeros(part.width, dtype=np.uint8)
        self.mask[part.structure_bytes] = 0xFF
        self.expected = (part.numbers.template & self.mask).tobytes()
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
def scored_layout(keys: Keys, d: int) -> ScoredLayout:
    return ScoredLayout(keys, d)


def read_item_layout(buf: bytes, pos: int) -> tuple[Keys, int]:
    """The map keys and the feature width of the scored item whose fixed part starts at ``pos``.

    Raises:
        Unhandled, IndexError, ValueError: a layout these codecs leave to fastavro (non-empty
            item_features, a second block, a repeated map key) or bytes that do not parse.
    """
    d, pos = read_count(buf, pos)  # d = 0: that count was the empty array's END
    if d:
        pos += 4 * d
        if buf[pos]:
            raise Unhandled  # a second block of features
        pos += 1
    if buf[pos]:
        raise Unhandled  # item_features not empty
    pos += 1
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
    return tuple(keys), d
