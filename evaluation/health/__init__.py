"""Exploration and model health per batch, with drift alarms (pure numpy).

* ``metrics`` — the closed forms: selection entropy, item coverage, overlap@K, allocation
  variance, calibration (ECE over equal-mass bins, the gap and its SE), population stability index;
* ``alarms`` — :class:`Alarm`, the documented thresholds (:class:`HealthThresholds`) and the CUSUM
  behind the outcome-rate alarms;
* ``monitor`` — :class:`HealthMonitor`: one :class:`BatchHealth` per batch against a reference window;
"""

from evaluation.health.alarms import Alarm, Cusum, HealthThresholds, cusum_threshold, siegmund_arl
from evaluation.health.monitor import OUTCOMES, BatchHealth, BatchObservation, HealthMonitor, MonitorConfig

__all__ = [
    "OUTCOMES",
    "Alarm",
    "BatchHealth",
    "BatchObservation",
    "Cusum",
    "HealthMonitor",
    "HealthThresholds",
    "MonitorConfig",
    "cusum_threshold",
    "siegmund_arl",
]
