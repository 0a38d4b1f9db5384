"""Compact bytes for the values kept in the workers' RocksDB tables.

A value is a small JSON header (names, dtypes, shapes, scalars) followed by the raw array
bytes. It is ~10x faster than ``np.savez`` for the tiny per-user posteriors written on
every feedback, and it never unpickles anything read back from a changelog.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from streams.errors import DecodeError

_LEN = struct.Struct(">I")


def pack(arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> bytes:
    """Serialise ``arrays`` (any shapes; numeric dtypes) and a JSON-able ``meta`` dict."""
    specs = []
    chunks = []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        specs.append([name, a.dtype.str, list(a.shape)])
        chunks.append(a.tobytes())
    header = json.dumps({"a": specs, "m": meta or {}}, separators=(",", ":")).encode()
    return _LEN.pack(len(header)) + header + b"".join(chunks)


def _header(data: bytes) -> tuple[dict[str, Any], int]:
    """The JSON header of a packed value and where its array bytes start."""
    (n,) = _LEN.unpack_from(data)
    return json.loads(data[_LEN.size : _LEN.size + n]), _LEN.size + n


def unpack(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of ``pack``; arrays are read-only views over ``data`` copied to be writable."""
    try:
        header, pos = _header(data)
        arrays = {}
        for name, dtype, shape in header["a"]:
            dt = np.dtype(dtype)
            count = math.prod(shape)  # not np.prod: this runs per table read, and np.prod costs ~10 µs
            arrays[name] = np.frombuffer(data, dtype=dt, count=count, offset=pos).reshape(shape).copy()
            pos += count * dt.itemsize
        if pos != len(data):
            raise ValueError(f"{len(data) - pos} trailing bytes")
        return arrays, header["m"]
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise DecodeError("state", f"bad table value: {exc}") from exc


def unpack_meta(data: bytes) -> dict[str, Any]:
    """Only the ``meta`` dict of a packed value (its arrays are not read or copied)."""
    try:
        return _header(data)[0]["m"]
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise DecodeError("state", f"bad table value header: {exc}") from exc
