"""Array type aliases shared by the packages: numpy arrays of one dtype, of any shape.

The shape of each array is stated where it is used, in the docstring (``(n_pairs,)``,
``(n_budgets, n_pairs)``, ...); the alias states its dtype, so that arithmetic on it keeps a
precise type under mypy instead of decaying to ``Any``.
"""

from __future__ import annotations

from typing import TypeAlias, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: float64 values: rewards, costs, bounds, allocations, posterior parameters.
FloatArray: TypeAlias = NDArray[np.float64]
#: float32 values: model features and network inputs.
Float32Array: TypeAlias = NDArray[np.float32]
#: int64 values: user, item and provider ids, offsets, permutations and other indices.
IntArray: TypeAlias = NDArray[np.int64]
#: booleans: masks.
BoolArray: TypeAlias = NDArray[np.bool_]


def weighted_bincount(x: ArrayLike, weights: ArrayLike, minlength: int = 0) -> FloatArray:
    """``np.bincount(x, weights=weights, minlength=minlength)``: the float64 sum of ``weights`` per value of ``x``.

    numpy's stub types every ``bincount`` as an integer count; with weights it returns float64 sums,
    which is the type this wrapper states.

    Args:
        x: (n,) non-negative integers.
        weights: (n,) weights.
        minlength: least length of the result.

    Returns:
        (max(x.max() + 1, minlength),) float64 sums.
    """
    return cast(FloatArray, np.bincount(x, weights=weights, minlength=minlength))


__all__ = ["BoolArray", "Float32Array", "FloatArray", "IntArray", "weighted_bincount"]
