"""Versioned, self-describing snapshot bytes for every model, posterior and calibrator.

The trainer publishes these bytes as the ``payload`` of a ``model-snapshots`` record
(schemas/model-snapshots.avsc: name, version, kind, created_at_ms, n_observations, payload);
the scorer loads them back with :func:`load_snapshot`. The header carries the same fields, so
a consumer can check a payload against its Avro envelope.

Byte layout (all integers little-endian)::

    MAGIC (8 bytes, b"BLPSNAP\\x00")
    format version (uint16)
    header length H (uint32)
    header (H bytes, UTF-8 JSON, sorted keys): kind, name, version, created_at_ms, config,
        arrays = [{name, dtype, shape, offset, nbytes}, ...]
    array payload (raw C-order little-endian bytes, concatenated in header order)
    CRC-32 of everything above (uint32)

Why our own container and not ``np.savez``/``torch.save``: zip entries carry timestamps (the
same model would give different bytes on each dump) and ``torch.load`` unpickles. Raw arrays
with a JSON table are deterministic — dumping a loaded snapshot with the same header gives the
same bytes — and loading them runs no code. Torch weights travel as numpy arrays.

Every failure to decode — wrong magic, truncated bytes, checksum mismatch, another format
version, unknown kind, a malformed header or array table — raises :class:`SnapshotError`.
"""

from __future__ import annotations

import importlib
import json
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

import numpy as np

from models.errors import SnapshotError

MAGIC = b"BLPSNAP\x00"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<HI")  # format version, header length
_CRC = struct.Struct("<I")

# dtypes a snapshot may hold; anything else (object arrays above all) is refused both ways.
_ALLOWED_DTYPES = frozenset({"<f8", "<f4", "<i8", "<i4", "|u1", "|b1"})

# Modules whose classes register snapshot kinds; imported lazily by load_snapshot so that
# snapshot.py itself imports none of them (they import it).
_KIND_MODULES = ("models.posterior", "models.logistic", "models.calibration", "models.neural")


@dataclass(frozen=True)
class SnapshotHeader:
    """The self-describing part of a snapshot.

    Attributes:
        kind: snapshot kind, dispatches loading (e.g. ``"neural_thompson"``).
        name: model name (the ``model-snapshots`` compaction key).
        version: monotone model version; scorers ignore older ones.
        created_at_ms: trainer wall-clock time, ms since the Unix epoch.
        config: the object's configuration as JSON values.
        format_version: the byte-layout version (:data:`FORMAT_VERSION`).
    """

    kind: str
    name: str = ""
    version: int = 0
    created_at_ms: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


@runtime_checkable
class Snapshottable(Protocol):
    """What an object needs to be dumped by :func:`dump_snapshot`."""

    snapshot_kind: ClassVar[str]

    def snapshot_config(self) -> dict[str, Any]:
        """The constructor configuration as JSON values."""
        ...

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """The learned state as named numpy arrays."""
        ...

    @classmethod
    def from_snapshot_parts(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        """Rebuild an object from :meth:`snapshot_config` and :meth:`snapshot_arrays` output."""
        ...


_REGISTRY: dict[str, type[Snapshottable]] = {}
_S = TypeVar("_S", bound=Snapshottable)


def register_kind(cls: type[_S]) -> type[_S]:
    """Class decorator: make ``cls.snapshot_kind`` loadable by :func:`load_snapshot`."""
    kind = cls.snapshot_kind
    if kind in _REGISTRY and _REGISTRY[kind] is not cls:
        raise ValueError(f"snapshot kind {kind!r} registered twice")
    _REGISTRY[kind] = cls
    return cls


def encode_snapshot(header: SnapshotHeader, arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise a header and named arrays to snapshot bytes.

    Args:
        header: kind, name, version, created_at_ms and config (JSON values only).
        arrays: name -> array of an allowed dtype (float32/64, int32/64, uint8, bool).

    Returns:
        The snapshot bytes (layout in the module docstring).

    Raises:
        SnapshotError: a config value is not JSON, or an array has a disallowed dtype.
    """
    table = []
    chunks = []
    offset = 0
    for name in sorted(arrays):
        arr = np.asarray(arrays[name])
        # astype(order="C") and not ascontiguousarray, which turns 0-d arrays into 1-d ones.
        little = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)
        if little.dtype.str not in _ALLOWED_DTYPES:
            raise SnapshotError(f"array {name!r} has unsupported dtype {arr.dtype}")
        raw = little.tobytes(order="C")
        table.append(
            {"name": name, "dtype": little.dtype.str, "shape": list(little.shape), "offset": offset, "nbytes": len(raw)}
        )
        chunks.append(raw)
        offset += len(raw)
    doc = {
        "kind": header.kind,
        "name": header.name,
        "version": int(header.version),
        "created_at_ms": int(header.created_at_ms),
        "config": dict(header.config),
        "arrays": table,
    }
    try:
        head = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"snapshot config is not plain JSON: {exc}") from exc
    body = b"".join([MAGIC, _PREFIX.pack(FORMAT_VERSION, len(head)), head, *chunks])
    return body + _CRC.pack(zlib.crc32(body))


def decode_snapshot(data: bytes) -> tuple[SnapshotHeader, dict[str, np.ndarray]]:
    """Parse snapshot bytes into their header and arrays (copies, writable).

    Raises:
        SnapshotError: bad magic, truncation, checksum mismatch, other format version,
            malformed header or array table.
    """
    header, doc, payload_start = _parse_prefix(data)
    payload_end = len(data) - _CRC.size
    arrays: dict[str, np.ndarray] = {}
    try:
        for entry in doc["arrays"]:
            dtype = str(entry["dtype"])
            if dtype not in _ALLOWED_DTYPES:
                raise SnapshotError(f"array {entry['name']!r} has unsupported dtype {dtype}")
            shape = tuple(int(s) for s in entry["shape"])
            start = payload_start + int(entry["offset"])
            nbytes = int(entry["nbytes"])
            dt = np.dtype(dtype)
            if nbytes != dt.itemsize * int(np.prod(shape, dtype=np.int64)) or start + nbytes > payload_end:
                raise SnapshotError(f"array {entry['name']!r} does not fit the payload")
            flat = np.frombuffer(data, dtype=dt, count=nbytes // dt.itemsize, offset=start)
            arrays[str(entry["name"])] = flat.reshape(shape).astype(dt.newbyteorder("="), copy=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"malformed snapshot array table: {exc}") from exc
    return header, arrays


def read_header(data: bytes) -> SnapshotHeader:
    """Validate snapshot bytes (magic, checksum, version) and return only the header.

    Raises:
        SnapshotError: as :func:`decode_snapshot`.
    """
    return _parse_prefix(data)[0]


def dump_snapshot(obj: Snapshottable, *, name: str = "", version: int = 0, created_at_ms: int | None = None) -> bytes:
    """Serialise any registered model, posterior or calibrator.

    Args:
        obj: an object of a registered snapshot kind.
        name: model name (compaction key on ``model-snapshots``).
        version: monotone model version.
        created_at_ms: ms since the epoch; the current wall clock when None.

    Returns:
        Snapshot bytes; :func:`load_snapshot` rebuilds an equal object from them.
    """
    if not isinstance(obj, Snapshottable):
        raise SnapshotError(f"{type(obj).__name__} cannot be snapshotted")
    when = int(time.time() * 1000) if created_at_ms is None else int(created_at_ms)
    header = SnapshotHeader(
        kind=obj.snapshot_kind, name=name, version=int(version), created_at_ms=when, config=obj.snapshot_config()
    )
    return encode_snapshot(header, obj.snapshot_arrays())


def load_snapshot(data: bytes) -> Any:
    """Rebuild the object serialised in ``data``, dispatching on its kind.

    Raises:
        SnapshotError: corrupt bytes, unknown kind, or state that does not fit its config.
    """
    return load_snapshot_with_header(data)[1]


def load_snapshot_with_header(data: bytes) -> tuple[SnapshotHeader, Any]:
    """Like :func:`load_snapshot`, also returning the header (name, version, created_at_ms).

    Raises:
        SnapshotError: corrupt bytes, unknown kind, or state that does not fit its config.
    """
    header, arrays = decode_snapshot(data)
    cls = _lookup(header.kind)
    try:
        obj = cls.from_snapshot_parts(header.config, arrays)
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        # RuntimeError: torch's load_state_dict on mismatched shapes.
        raise SnapshotError(f"snapshot of kind {header.kind!r} does not fit its config: {exc}") from exc
    return header, obj


def _lookup(kind: str) -> type[Snapshottable]:
    if kind not in _REGISTRY:
        for module in _KIND_MODULES:
            importlib.import_module(module)
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise SnapshotError(f"unknown snapshot kind {kind!r}") from None


def _parse_prefix(data: bytes) -> tuple[SnapshotHeader, dict[str, Any], int]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SnapshotError(f"snapshot must be bytes, got {type(data).__name__}")
    data = bytes(data)
    fixed = len(MAGIC) + _PREFIX.size
    if len(data) < fixed + _CRC.size:
        raise SnapshotError(f"{len(data)} bytes is too short for a snapshot")
    if data[: len(MAGIC)] != MAGIC:
        raise SnapshotError("not a models snapshot (bad magic)")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise SnapshotError("snapshot checksum mismatch (corrupt or truncated bytes)")
    fmt, head_len = _PREFIX.unpack_from(data, len(MAGIC))
    if fmt != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format version {fmt}, this reader understands {FORMAT_VERSION}")
    if fixed + head_len > len(data) - _CRC.size:
        raise SnapshotError("snapshot header overruns the bytes")
    try:
        doc = json.loads(data[fixed : fixed + head_len].decode("utf-8"))
        header = SnapshotHeader(
            kind=str(doc["kind"]),
            name=str(doc["name"]),
            version=int(doc["version"]),
            created_at_ms=int(doc["created_at_ms"]),
            config=dict(doc["config"]),
            format_version=fmt,
        )
        if not isinstance(doc["arrays"], list):
            raise TypeError("arrays is not a list")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"malformed snapshot header: {exc}") from exc
    return header, doc, fixed + head_len


class SnapshotMixin:
    """Gives a registered class ``to_bytes()`` / ``from_bytes()`` on top of the snapshot format."""

    def to_bytes(self: Snapshottable, *, name: str = "", version: int = 0, created_at_ms: int | None = None) -> bytes:
        """Serialise ``self``; see :func:`dump_snapshot`."""
        return dump_snapshot(self, name=name, version=version, created_at_ms=created_at_ms)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Load snapshot bytes that must hold an object of this class.

        Raises:
            SnapshotError: corrupt bytes, or a snapshot of another kind.
        """
        obj = load_snapshot(data)
        if not isinstance(obj, cls):
            raise SnapshotError(f"snapshot holds {type(obj).__name__}, expected {cls.__name__}")
        return obj
