"""Validation of arrays at the public edges of ``models`` (and the read-only views models hand out).

Every public method that takes features or outcomes from outside (a decoded Kafka record, a
trainer's arrays) passes them through these checks, so a malformed record fails with one typed
error (:class:`~models.errors.ShapeError` / :class:`~models.errors.ModelInputError`) that the
stream layer dead-letters, instead of a numpy broadcasting surprise deep inside a solver.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from banditlp.arrays import FloatArray
from models.errors import ModelInputError, ShapeError

_S = TypeVar("_S", bound=np.generic)


def as_matrix(X: ArrayLike, dim: int, name: str = "X") -> FloatArray:
    """Return ``X`` as a finite float64 matrix of width ``dim``.

    Args:
        X: (n, dim) array-like; a single (dim,) row is accepted and promoted to (1, dim).
        dim: the expected number of columns.
        name: the argument's name, for the error message.

    Returns:
        (n, dim) float64 array (a view when no conversion was needed).

    Raises:
        ShapeError: wrong number of dimensions or columns.
        ModelInputError: NaN or inf entries.
    """
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ShapeError(f"{name} must have shape (n, {dim}), got {np.shape(X)}")
    if not np.all(np.isfinite(arr)):
        raise ModelInputError(f"{name} contains NaN or inf")
    return arr


def as_vector(x: ArrayLike, dim: int, name: str = "x") -> FloatArray:
    """Return ``x`` as a finite float64 vector of length ``dim``.

    Raises:
        ShapeError: not of shape (dim,).
        ModelInputError: NaN or inf entries.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != (dim,):
        raise ShapeError(f"{name} must have shape ({dim},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ModelInputError(f"{name} contains NaN or inf")
    return arr


def as_targets(y: ArrayLike, n: int, name: str = "y", *, binary: bool = False) -> FloatArray:
    """Return ``y`` as a finite float64 vector of length ``n``.

    Args:
        y: (n,) array-like (a scalar is accepted when ``n == 1``).
        n: the number of rows it must match.
        name: the argument's name, for the error message.
        binary: require every entry to be 0 or 1.

    Raises:
        ShapeError: length differs from ``n``.
        ModelInputError: NaN/inf, or a non-binary entry when ``binary``.
    """
    arr = np.asarray(y, dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise ShapeError(f"{name} must have shape ({n},), got {np.shape(y)}")
    if not np.all(np.isfinite(arr)):
        raise ModelInputError(f"{name} contains NaN or inf")
    if binary and not np.all((arr == 0.0) | (arr == 1.0)):
        raise ModelInputError(f"{name} must be 0/1 outcomes")
    return arr


def check_positive(value: float, name: str) -> None:
    """Raise :class:`ModelInputError` unless ``value`` is a finite number > 0."""
    if not (np.isfinite(value) and value > 0):
        raise ModelInputError(f"{name} must be finite and > 0, got {value!r}")


def check_discount(gamma: float) -> None:
    """Raise :class:`ModelInputError` unless the discount ``gamma`` lies in (0, 1]."""
    if not (np.isfinite(gamma) and 0.0 < gamma <= 1.0):
        raise ModelInputError(f"gamma must lie in (0, 1], got {gamma!r}")


def read_only_view(array: NDArray[_S]) -> NDArray[_S]:
    """A view of ``array`` that cannot be written through: a model hands out its state without
    copying it and without letting a caller change it behind the model's back."""
    view = array.view()
    view.flags.writeable = False
    return view
