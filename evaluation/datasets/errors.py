"""Errors raised by ``evaluation.datasets``.

Each kind has one fixed response where a command line or a test meets it:

* :class:`DatasetUnreachable` — the package index could not be reached to download a dataset:
  a test that needs the data skips with that reason; a command prints one line and exits 2.
* :class:`DatasetFetchError` — the download ran but failed otherwise, or the archive is not the
  one pinned (wrong hash, missing members): stop; the cache is left as it was.
* :class:`DatasetMissingFile` — a file the loader needs is not under the dataset's root: stop
  (fetch the data first, or point the loader at the folder :func:`fetch_obd` returned).
* :class:`DatasetFormatError` — a file is there but its columns or values are not what the
  dataset's documentation says: stop (a corrupted or foreign file, never repaired silently).

Bad arguments (an unknown campaign, a non-positive simulation count) raise the package's
:class:`~evaluation.errors.EvaluationInputError`.
"""

from __future__ import annotations

from evaluation.errors import EvaluationError


class DatasetError(EvaluationError):
    """Base of every error ``evaluation.datasets`` raises on purpose."""


class DatasetFetchError(DatasetError):
    """Downloading or unpacking a dataset failed; ``stderr`` holds the downloader's own words."""

    def __init__(self, message: str, *, stderr: str = "") -> None:
        super().__init__(f"{message}\n{stderr.strip()}" if stderr.strip() else message)
        self.stderr = stderr


class DatasetUnreachable(DatasetFetchError):
    """The package index that serves the dataset could not be reached (no network, DNS, proxy)."""


class DatasetMissingFile(DatasetError, FileNotFoundError):
    """A file of the dataset is not where the loader looks for it."""


class DatasetFormatError(DatasetError, ValueError):
    """A dataset file has missing or unexpected columns, or values outside their documented range."""
