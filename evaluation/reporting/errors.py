"""Errors raised by ``evaluation.reporting``.

Each kind has one fixed response where the command line meets it: one line on stderr and exit
code 2 (``streams.cli.common.fail``); a report is never written half-way from bad input.

* :class:`ReportInputError` — the run directory is missing, holds neither an experiment's
  ``results.json`` nor a demo's ``summary.json``, or one of its files is malformed.
* :class:`ReportWriteError` — the page could not be written where it was asked to go.
"""

from __future__ import annotations

from evaluation.errors import EvaluationError


class ReportError(EvaluationError):
    """Base of every error ``evaluation.reporting`` raises on purpose."""


class ReportInputError(ReportError, ValueError):
    """A run directory, or a file in it, cannot be read as a run."""


class ReportWriteError(ReportError, OSError):
    """The report page could not be written."""
