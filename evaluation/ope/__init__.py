"""Off-policy evaluation: a target policy's value estimated from a behaviour policy's log, with bootstrap intervals.

Pure numpy: :mod:`.data` holds the log and its checks, :mod:`.estimators` the estimators (IPS,
SNIPS, DM, DR, Switch-DR, DRos) and :mod:`.bootstrap` the percentile intervals and :func:`evaluate`.
"""

from __future__ import annotations

from evaluation.ope.bootstrap import Estimate, bootstrap_counts, evaluate, percentile_interval
from evaluation.ope.data import LoggedPairs, OutcomePairs, outcome_pairs
from evaluation.ope.estimators import (
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SNIPS,
    DRos,
    Estimator,
    SwitchDR,
    logged_value,
)

__all__ = [
    "DM",
    "DR",
    "ESTIMATORS",
    "IPS",
    "SNIPS",
    "DRos",
    "Estimate",
    "Estimator",
    "LoggedPairs",
    "OutcomePairs",
    "SwitchDR",
    "bootstrap_counts",
    "evaluate",
    "logged_value",
    "outcome_pairs",
    "percentile_interval",
]
