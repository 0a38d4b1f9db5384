"""Reading a CSV table into typed numpy columns, with :class:`DatasetFormatError` for every defect.

The files are small (10,000 rows), so a table is read whole with the standard library's ``csv``
reader into a ``(rows, columns)`` array of strings, and each column is converted on request.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from evaluation.datasets.errors import DatasetFormatError, DatasetMissingFile


def read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """Header and ``(rows, columns)`` string cells of a CSV whose rows all have the header's width."""
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = list(reader)
    except FileNotFoundError as exc:
        raise DatasetMissingFile(f"no {path.name} at {path}: run fetch_obd first") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetFormatError(f"cannot read {path} as CSV: {exc}") from exc
    if header is None or not rows:
        raise DatasetFormatError(f"{path} has no header or no rows")
    for lineno, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DatasetFormatError(f"{path}:{lineno}: {len(row)} fields, the header has {len(header)}")
    return header, np.array(rows, dtype=str)


def column(path: Path, header: list[str], cells: np.ndarray, name: str) -> np.ndarray:
    if name not in header:
        raise DatasetFormatError(f"{path} has no column {name!r}")
    return cells[:, header.index(name)]


def numbers(path: Path, name: str, values: np.ndarray) -> FloatArray:
    try:
        out = values.astype(np.float64)
    except ValueError as exc:
        raise DatasetFormatError(f"{path}: column {name!r} holds a value that is not a number") from exc
    if not np.all(np.isfinite(out)):
        raise DatasetFormatError(f"{path}: column {name!r} holds NaN or inf")
    return out


def integers(path: Path, name: str, values: np.ndarray, low: int, high: int) -> IntArray:
    values_ = numbers(path, name, values)
    if np.any(values_ != np.round(values_)) or values_.min() < low or values_.max() > high:
        raise DatasetFormatError(f"{path}: column {name!r} must hold integers in [{low}, {high}]")
    return values_.astype(np.int64)


def one_hot(columns: dict[str, np.ndarray]) -> tuple[FloatArray, tuple[str, ...]]:
    """One-hot of categorical string columns, levels sorted and the first of each dropped."""
    blocks: list[FloatArray] = []
    names: list[str] = []
    for name, values in columns.items():
        levels, codes = np.unique(values, return_inverse=True)
        blocks.append((codes[:, None] == np.arange(1, levels.size)[None, :]).astype(np.float64))
        names.extend(f"{name}={level}" for level in levels[1:])
    width = sum(block.shape[1] for block in blocks)
    rows = next(iter(columns.values())).shape[0]
    return (np.hstack(blocks) if blocks else np.zeros((rows, width))), tuple(names)


def numbered(header: list[str], prefix: str) -> list[str]:
    """Columns named ``prefix<k>``, in the order of ``k``."""
    found = [name for name in header if name.startswith(prefix)]
    if any(not name[len(prefix) :].isdigit() for name in found):
        raise DatasetFormatError(f"columns {found} do not all end in a number after {prefix!r}")
    return sorted(found, key=lambda name: int(name[len(prefix) :]))


__all__ = ["column", "integers", "numbered", "numbers", "one_hot", "read_table"]
