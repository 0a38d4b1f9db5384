"""Errors raised by the ``models`` package.

Each kind has one fixed response in the stream layer:

* :class:`ShapeError` / :class:`ModelInputError` — a record's features or outcomes are
  malformed (wrong shape, NaN/inf where a number is needed): dead-letter the record.
* :class:`SnapshotError` — snapshot bytes cannot be decoded (bad magic, checksum, format
  version, kind): dead-letter the snapshot and keep serving the previous version.
* :class:`NotFittedError` — a model was asked to score before it was fitted: stop (a
  deployment error, not a data error).
"""

from __future__ import annotations

from banditlp.errors import BanditLPError


class ModelError(BanditLPError):
    """Base of every error the ``models`` package raises on purpose."""


class ModelInputError(ModelError, ValueError):
    """An input at a public edge is invalid (non-finite values, out-of-range labels, ...)."""


class ShapeError(ModelInputError):
    """An array at a public edge has the wrong number of dimensions or the wrong width."""


class NotFittedError(ModelError):
    """A model was used before it was fitted."""


class SnapshotError(ModelError):
    """Snapshot bytes are corrupt, truncated, of an unknown kind or of another format version."""
