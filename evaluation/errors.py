"""Errors raised by the ``evaluation`` package.

Each kind has one fixed response where the stream layer meets it:

* :class:`EvaluationInputError` — a configuration or a per-batch record handed to the
  evaluation code is invalid (bad sizes, shapes, NaN/inf): stop (the simulator or the run
  driver is misconfigured; this is not a data error from the wire).
* :class:`OracleInfeasible` — the oracle LP of a simulated batch has no feasible point or HiGHS
  failed on it: stop (the simulated world was configured with constraints that cannot hold).
* :class:`OPEInputError` — a log, a target policy, an outcome model or an option handed to
  ``evaluation.ope`` is invalid or does not identify the target's value: stop.
"""

from __future__ import annotations

from banditlp.errors import BanditLPError


class EvaluationError(BanditLPError):
    """Base of every error the ``evaluation`` package raises on purpose."""


class EvaluationInputError(EvaluationError, ValueError):
    """A configuration value or an array at a public edge of ``evaluation`` is invalid."""


class OPEInputError(EvaluationInputError):
    """A logged-pairs record, target, outcome model or option of off-policy evaluation is invalid."""


class OracleInfeasible(EvaluationError):
    """The oracle LP is infeasible, unbounded, or the solver failed on it."""
