"""Errors of the replay (``streams.replay``); each kind has one fixed response.

- :class:`ReplayInputError` — the logs cannot be replayed as asked: no decision has all it needs
  (context, batch constraints, feedback), an unknown target policy or dataset, a target that needs
  what the log lacks (calibrated means, positions): stop with a one-line message (exit code 2).

Records that cannot be decoded or validated are not errors of the replay: they are
``streams.errors.DecodeError`` / ``ValidationError``, dead-lettered and counted in the join report.
"""

from __future__ import annotations

from streams.errors import StreamError


class ReplayError(StreamError):
    """Base of the replay's errors."""


class ReplayInputError(ReplayError):
    """The logs, the dataset or an option do not allow the replay asked for (stop)."""
