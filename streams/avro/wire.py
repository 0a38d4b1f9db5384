"""Avro binary encoding primitives shared by the columnar codecs: varints, strings, doubles,
float arrays, their readers, and the signature of a schema's structure.

Writers raise ``Unhandled`` for a Python value of a type or range they were not written for, and
readers for bytes they do not parse; the codecs then leave the record to fastavro.
"""

from __future__ import annotations

import functools
import json
import struct
from typing import Any

import numpy as np

F4 = np.dtype("<f4")
F8 = np.dtype("<f8")
DOUBLE = struct.Struct("<d")
INT_RANGE = (-(1 << 31), (1 << 31) - 1)
LONG_RANGE = (-(1 << 63), (1 << 63) - 1)
END = b"\x00"  # a zero block count: end of an array or map, or an empty one


class Unhandled(Exception):
    """Inside a codec: leave this value or these bytes to fastavro."""


def signature(schema: Any) -> str:
    """A parsed schema as canonical JSON without docs and fastavro's bookkeeping keys."""

    def strip(s: Any) -> Any:
        if isinstance(s, dict):
            return {k: strip(v) for k, v in s.items() if k != "doc" and not k.startswith("__")}
        if isinstance(s, list):
            return [strip(v) for v in s]
        return s

    return json.dumps(strip(schema), sort_keys=True)


def write_long(n: int) -> bytes:
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


def checked_long(n: Any, bounds: tuple[int, int] = LONG_RANGE) -> bytes:
    if type(n) is not int or not bounds[0] <= n <= bounds[1]:
        raise Unhandled
    return write_long(n)


def write_string(s: Any) -> bytes:
    """Avro ``string``: byte length, UTF-8 bytes."""
    if type(s) is not str:
        raise Unhandled
    raw = s.encode()
    return write_long(len(raw)) + raw


def write_double(x: Any) -> bytes:
    if type(x) is not float and type(x) is not int:
        raise Unhandled
    return DOUBLE.pack(x)


def nullable_int(x: Any) -> bytes:
    """The ``["null", "int"]`` union: branch index, then the int."""
    return b"\x00" if x is None else b"\x02" + checked_long(x, INT_RANGE)


@functools.lru_cache(maxsize=64)
def _floats_struct(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}f")


def float_array(values: Any) -> bytes:
    """An ``array<float>`` from a Python list or tuple, in one block."""
    if type(values) is not list and type(values) is not tuple:
        raise Unhandled
    if not values:
        return END
    return write_long(len(values)) + _floats_struct(len(values)).pack(*values) + END


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Inverse of :func:`write_long` at ``buf[pos]``; returns (value, next position)."""
    b = buf[pos]
    pos += 1
    z, shift = b & 0x7F, 7
    while b & 0x80:
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise Unhandled  # longer than a 64-bit varint (10 bytes)
    z &= 0xFFFF_FFFF_FFFF_FFFF  # a 10th byte's high bits fall off, as in Avro's (and fastavro's) 64-bit reader
    return (z >> 1) ^ -(z & 1), pos


def read_string(buf: bytes, pos: int) -> tuple[str, int]:
    n = buf[pos]
    if n < 0x80 and not n & 1:  # the usual short id: a one-byte length
        end = pos + 1 + (n >> 1)
        pos += 1
    else:
        n, pos = read_long(buf, pos)
        end = pos + n
        if n < 0:
            raise Unhandled
    if end > len(buf):
        raise Unhandled
    return buf[pos:end].decode(), end


def read_nullable_int(buf: bytes, pos: int) -> tuple[int | None, int]:
    branch, pos = read_long(buf, pos)
    if branch == 0:
        return None, pos
    if branch == 1:
        return read_long(buf, pos)
    raise Unhandled


def read_count(buf: bytes, pos: int) -> tuple[int, int]:
    """A block count; size-prefixed blocks (negative counts) are left to fastavro."""
    n, pos = read_long(buf, pos)
    if n < 0:
        raise Unhandled
    return n, pos


class StringCache:
    """Encodings of the ids that repeat across records (items, providers), and the id pairs
    they decode to; at most ``limit`` entries each (cleared when full).

    One per serde: the cache is the state of the object that owns it, not of the module.
    """

    def __init__(self, limit: int = 1 << 16) -> None:
        self.limit = limit
        self._strings: dict[str, bytes] = {}
        self._pairs: dict[bytes, tuple[str, str]] = {}

    def encode(self, s: Any) -> bytes:
        """``write_string(s)``, cached."""
        b = self._strings.get(s) if type(s) is str else None
        if b is None:
            b = write_string(s)
            if len(self._strings) >= self.limit:
                self._strings.clear()
            self._strings[s] = b
        return b

    def pair(self, encoded: bytes) -> tuple[str, str] | None:
        """The (item_id, provider_id) whose two encoded strings are ``encoded``, when known."""
        return self._pairs.get(encoded)

    def remember_pair(self, encoded: bytes, item: str, provider: str) -> tuple[str, str]:
        if len(self._pairs) >= self.limit:
            self._pairs.clear()
        pair = self._pairs[encoded] = (item, provider)
        return pair
