"""Reading decoded JSON values: per-seed, per-batch lists of numbers, and what a value is.

Shared by the readers of ``results.json`` (``experiment_results``) and of its sweeps (``sweeps``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.reporting.errors import ReportInputError


def per_seed_matrix(value: Any, where: str) -> FloatArray:
    """Read a list of per-seed lists of numbers into an ``(S, B)`` float array.

    Args:
        value: A list of equal-length lists of numbers (``None`` for a missing value), or one
            flat list of numbers (a single seed).
        where: The value's place in the file, for messages.

    Returns:
        The ``(S, B)`` array, nan where the file holds ``null``; read-only.

    Raises:
        ReportInputError: on any other shape, a non-number, or lists of unequal length.
    """
    if not isinstance(value, list) or not value:
        raise ReportInputError(
            f"{where} must be a non-empty list of per-seed lists of numbers (one per batch), got {json_kind(value)}"
        )
    rows = value if all(isinstance(v, list) for v in value) else [value]
    matrix = []
    for seed, row in enumerate(rows):
        if not isinstance(row, list):
            raise ReportInputError(f"{where}: seed {seed} must be a list of numbers, got {json_kind(row)}")
        numbers = []
        for batch, item in enumerate(row):
            if item is None:
                numbers.append(math.nan)
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                numbers.append(float(item))
            else:
                raise ReportInputError(
                    f"{where}: seed {seed}, batch {batch + 1} must be a number, got {json_kind(item)} {item!r:.40}"
                )
        matrix.append(numbers)
    lengths = {len(r) for r in matrix}
    if len(lengths) != 1 or 0 in lengths:
        raise ReportInputError(
            f"{where}: every seed must hold the same number of batches (at least one), got lengths "
            f"{[len(r) for r in matrix]}"
        )
    array = np.array(matrix, dtype=float)
    array.flags.writeable = False
    return array


def json_kind(value: Any) -> str:
    """The JSON kind of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, dict):
        return "an empty object" if not value else "an object"
    return type(value).__name__
