"""Columnar values of the hot subjects: a read-only sequence of record dicts backed by numpy
columns, and the fixed-length part of an item that numpy encodes and decodes for many items at once.

An item of ``candidates`` or ``scores`` is two id strings followed by a part of fixed length
and structure (candidates: two float arrays of the same widths in every item; scored items: two
empty arrays and three maps with the same keys in every item). Only the strings are handled in
Python, a few steps per item; the fixed parts of a whole record (or, when encoding scores, of a
whole batch) are checked, read or written by numpy gathers and scatters (``Tail``).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from streams.avro.wire import StringCache, Unhandled


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

    def __getitem__(self, index):  # Sequence's overloaded signature
        return self.rows()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, Columns)):
            return self.rows() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} records)"


class Tail:
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
        self.value_bytes = (np.asarray(number_at, dtype=np.intp)[:, None] + np.arange(dtype.itemsize)).reshape(-1)
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
            Unhandled: a part's structure differs from the template's (another width or
                other keys than the first item's).
        """
        at = np.asarray(starts, dtype=np.intp)[:, None]
        if np.any(u8[at + self.structure_bytes] != self.structure):
            raise Unhandled
        return u8[at + self.value_bytes].view(self.dtype)


def item_strings(
    parts: list[bytes],
    item_ids: Sequence[str],
    provider_ids: Sequence[str],
    tails: bytes,
    width: int,
    strings: StringCache,
) -> None:
    """Append every item's two strings and its encoded part (``tails[j * width:(j + 1) * width]``)."""
    for j, (item, provider) in enumerate(zip(item_ids, provider_ids)):
        parts += (strings.encode(item), strings.encode(provider), tails[j * width : (j + 1) * width])
