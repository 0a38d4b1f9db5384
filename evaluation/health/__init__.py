"""Exploration and model health per batch, with drift alarms (pure numpy).

* ``metrics`` — the closed forms: selection entropy, item coverage, overlap@K, allocation
  variance, calibration (ECE over equal-mass bins, the gap and its SE), population stability index;
* ``alarms`` — :class:`Alarm`, the documented thresholds (:class:`HealthThresholds`) and a CUSUM
  of normal increments;
* ``rates`` — the outcome-rate alarms' likelihood-ratio CUSUM and its ARL (a Markov chain);
* ``reference`` — the frozen read-out of a model from its predictions, the reference of the second
  rate chart (``rate_shift_ref``), which a retrained model cannot absorb a shift into;
* ``monitor`` — :class:`HealthMonitor`: one :class:`BatchHealth` per batch against a reference window;
* ``series`` — the monitor inside the offline experiment, and the series its results hold;
* ``report`` — an experiment's ``health.json`` and ``health.png``;
* ``shift`` — :class:`~evaluation.health.shift.ShiftedWorld`: the email world with a feature or
  base-rate shift from a batch on (the drift experiment's world);
* ``drift`` — alarm delays and false-alarm rates of the drift experiment over seeds.
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
