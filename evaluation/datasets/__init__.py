"""Public logged-bandit datasets as inputs to off-policy evaluation.

* :mod:`evaluation.datasets.obd` — the Open Bandit Dataset (ZOZOTOWN, CC BY 4.0): fetch the
  sample once (:func:`fetch_obd`), parse a log (:func:`load_obd`), hand it to ``evaluation.ope``
  as candidate pairs (:func:`obd_logged_pairs`, :func:`obd_target`).
* :mod:`evaluation.datasets.bts` — the dataset's two policies as action distributions over
  (item, position): uniform, and Bernoulli Thompson sampling from ZOZOTOWN's prior.
* :mod:`evaluation.datasets.obd_model` — the cross-fitted click model DM and DR need.
* :mod:`evaluation.datasets.obd_fetch` — the download; :mod:`evaluation.datasets.csv_table` the
  CSV reading; :mod:`evaluation.datasets.errors` the typed errors.
* :mod:`evaluation.datasets.obd_benchmark` — "BTS from random logs": every estimator against the
  click rate the BTS logs observed, beside Open Bandit Pipeline's published errors.

The names below are loaded on first use (PEP 562), so that ``python -m evaluation.datasets.obd``
does not import its own module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evaluation.datasets.bts import BTSPrior, bts_action_dist, load_bts_prior, uniform_action_dist
    from evaluation.datasets.errors import (
        DatasetError,
        DatasetFetchError,
        DatasetFormatError,
        DatasetMissingFile,
        DatasetUnreachable,
    )
    from evaluation.datasets.obd import OBDLog, candidate_items, load_obd, obd_logged_pairs, obd_target
    from evaluation.datasets.obd_fetch import fetch_obd
    from evaluation.datasets.obd_model import cross_fit_click_model

_MODULE_OF = {
    "BTSPrior": "bts",
    "bts_action_dist": "bts",
    "load_bts_prior": "bts",
    "uniform_action_dist": "bts",
    "DatasetError": "errors",
    "DatasetFetchError": "errors",
    "DatasetFormatError": "errors",
    "DatasetMissingFile": "errors",
    "DatasetUnreachable": "errors",
    "OBDLog": "obd",
    "candidate_items": "obd",
    "load_obd": "obd",
    "obd_logged_pairs": "obd",
    "obd_target": "obd",
    "fetch_obd": "obd_fetch",
    "cross_fit_click_model": "obd_model",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "BTSPrior",
    "DatasetError",
    "DatasetFetchError",
    "DatasetFormatError",
    "DatasetMissingFile",
    "DatasetUnreachable",
    "OBDLog",
    "bts_action_dist",
    "candidate_items",
    "cross_fit_click_model",
    "fetch_obd",
    "load_bts_prior",
    "load_obd",
    "obd_logged_pairs",
    "obd_target",
    "uniform_action_dist",
]
