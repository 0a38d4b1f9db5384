"""Tests of ``evaluation.datasets``, and the one shared way they reach the Open Bandit Dataset.

The sample is fetched (once, idempotent) into the cache folder ``make obd`` fills; a test that
needs it is skipped only when the fetch fails because PyPI cannot be reached. Any other fetch
failure (wrong hash, pip error) fails the test. Logs are parsed once per session.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from evaluation.datasets.errors import DatasetUnreachable
from evaluation.datasets.obd import Behavior, Campaign, OBDLog, load_obd
from evaluation.datasets.obd_fetch import fetch_obd

#: Where ``make obd`` puts the sample (the Makefile's ``obd`` target).
OBD_CACHE = Path.home() / ".cache" / "banditlp" / "obd"


@functools.cache
def _fetched() -> Path | str:
    try:
        return fetch_obd(OBD_CACHE)
    except DatasetUnreachable as exc:
        return str(exc).splitlines()[0]


def obd_root() -> Path:
    """The dataset's root, fetched if needed; skips the calling test if PyPI is unreachable."""
    root = _fetched()
    if isinstance(root, str):
        pytest.skip(f"Open Bandit Dataset not available: PyPI unreachable ({root})")
    return root


@functools.cache
def obd_log(behavior: Behavior, campaign: Campaign) -> OBDLog:
    """One parsed log of the real sample (read-only, shared by the tests)."""
    return load_obd(obd_root(), behavior, campaign)
