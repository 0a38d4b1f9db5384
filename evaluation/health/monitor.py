"""The health of a run batch after batch: metrics against a reference window, and their alarms.

:class:`HealthMonitor` is fed one :class:`BatchObservation` per closed batch, in order, and returns
its :class:`BatchHealth`: every metric of :mod:`evaluation.health.metrics` by name, and the
:class:`~evaluation.health.alarms.Alarm` values of the thresholds crossed. It keeps what the
metrics compare against:

* the reference (training) window of the features: given (the rows the model was trained on),
  else the features of the first ``reference_batches`` batches;
* the reference of the exploration metrics: their means over the first ``reference_batches``
  batches (no collapse alarm is raised inside them);
* the reference of the predictions: the reference rows' features, scored by each batch's own
  model (a least-squares read-out of the logits of its predictions on the batch's pair features),
  so the prediction drift alarm sees what the population moved and not what a retrain moved
  (``prediction_shift_psi.<outcome>``; :mod:`evaluation.health.alarms`). The PSI of the predictions
  against those of the previous ``reference_batches`` batches is kept as a series
  (``prediction_psi.<outcome>``): a learning model moves it by more than any shift of the world;
* the previous batch's plan (overlap@K), the last ``calibration_window`` outcomes of each
  outcome (calibration) and the likelihood-ratio CUSUM of each outcome rate
  (:mod:`evaluation.health.rates`), whose threshold is solved for batches like the ones seen
  by the end of the reference window. The CUSUM starts after the reference batches: a model
  fitted on a small warm start is miscalibrated on the pairs its LP picks first (the winner's
  curse of the LP), which is not a change of the world;
* the frozen read-out of each outcome's model (:mod:`evaluation.health.reference`): fitted on the
  last reference batch's pairs and predictions, then kept, and a second likelihood-ratio CUSUM of
  the sent pairs' outcomes against its predictions (``rate_shift_ref.<outcome>``): a model
  retrained every batch absorbs a shift of the rate within a few retrains, the frozen read-out
  does not. The read-out is biased on the pairs later, better-trained policies send, by an odds
  ratio that differs from run to run (0.95-2.0 over five unshifted runs, README) but is steady
  within one; so the chart's null odds are the run's own: the maximum-likelihood ratio of the
  outcomes over the read-out's predictions over the monitored batches up to ``reference_lag``
  batches back (a shift enters it only after the chart has had ``reference_lag`` batches to see
  it at full size, and then diluted by the window), and the chart starts once that window holds
  ``reference_calibration`` batches. It needs the sent pairs' features (``BatchObservation.sent``).

Metric names (the keys of :attr:`BatchHealth.values`): ``selection_entropy``, ``item_coverage``,
``overlap_at_k``, ``allocation_variance``, ``feature_psi_max``, ``feature_psi.<j>``,
``prediction_psi.<outcome>``, ``prediction_shift_psi.<outcome>``, ``prediction_fit_r2.<outcome>``,
``ece.<outcome>``, ``ece_threshold.<outcome>``, ``gap.<outcome>``, ``gap_se.<outcome>``,
``rate_z.<outcome>``, ``rate_expected.<outcome>`` (sum of the sent pairs' predictions),
``rate_observed.<outcome>`` (their outcomes), ``rate_llr.<outcome>`` (the batch's log-likelihood
ratio of odds x ratio), ``rate_cusum.<outcome>``, ``rate_h.<outcome>``, ``rate_ref_expected.<outcome>``
(sum of the frozen read-out's predictions of the sent pairs), ``rate_ref_cusum.<outcome>``,
``rate_ref_h.<outcome>``, ``rate_ref_null_odds.<outcome>`` (the run's null odds of the chart),
``reference_fit_r2.<outcome>`` (the read-out's R²), ``outcomes.<outcome>``
(nan where a batch had nothing to measure).
Alarm names: ``feature_drift``, ``prediction_drift.<outcome>``, ``rate_shift.<outcome>``,
``rate_shift_ref.<outcome>``,
``calibration.<outcome>``, ``entropy_collapse``, ``coverage_collapse``, ``overlap_collapse``,
``variance_collapse``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray, IntArray
from evaluation.errors import EvaluationInputError
from evaluation.health.alarms import Alarm, HealthThresholds, standardised_residual
from evaluation.health.metrics import (
    allocation_variance,
    calibration,
    item_coverage,
    overlap_at_k,
    psi,
    selection_entropy,
    send_variance,
)
from evaluation.health.rates import (
    RateCusum,
    null_odds_mle,
    null_probability,
    odds_llr,
    poisson_like,
    rate_threshold,
)
from evaluation.health.reference import FrozenReadout, fit_readout

#: The outcomes whose rates and calibration are watched.
OUTCOMES = ("conversion", "unsubscription")
#: Every alarm the monitor raises, in a fixed order.
ALARM_NAMES = (
    "feature_drift",
    *(f"prediction_drift.{o}" for o in OUTCOMES),
    *(f"rate_shift.{o}" for o in OUTCOMES),
    *(f"rate_shift_ref.{o}" for o in OUTCOMES),
    *(f"calibration.{o}" for o in OUTCOMES),
    "entropy_collapse",
    "coverage_collapse",
    "overlap_collapse",
    "variance_collapse",
)
#: Exploration metrics and the alarm each raises when it falls below its reference fraction.
_COLLAPSES = (
    ("selection_entropy", "entropy_collapse", "entropy_ratio"),
    ("item_coverage", "coverage_collapse", "coverage_ratio"),
    ("overlap_at_k", "overlap_collapse", "overlap_ratio"),
    ("allocation_variance", "variance_collapse", "variance_ratio"),
)


@dataclass(frozen=True, eq=False)
class BatchObservation:
    """What one closed batch shows the monitor. ``E`` pairs, ``n_o`` observed sends of outcome ``o``.

    Attributes:
        batch: The batch's index in the run.
        pair_user: ``(E,)`` int user ids.
        pair_item: ``(E,)`` int item ids.
        propensity: ``(E,)`` send probabilities (the plan's ``x`` when there is nothing else).
        plans: ``(R, E)`` other plans of the same batch and model (for the allocation variance),
            or None to take it from the propensities (:func:`~evaluation.health.metrics.send_variance`).
        features: ``(n, d)`` the pair features the model saw (every pair's, or those known), or None.
        predicted: Outcome -> ``(n,)`` the model's calibrated prediction of the pairs (for the
            prediction drift); absent outcomes are not measured.
        outcomes: Outcome -> ``(predicted (n_o,), observed (n_o,) 0/1)`` of the sends observed.
        tie: ``(E,)`` ints that order equal propensities in a user's top K (the item id when None;
            the worker passes the rank of the item's name, so ties follow the names).
        sent: ``(n_o,)`` the rows of ``features`` of the observed sends, in the order of
            ``outcomes`` (every outcome's), or None: then no frozen-reference rate chart.
    """

    batch: int
    pair_user: IntArray
    pair_item: IntArray
    propensity: FloatArray
    plans: FloatArray | None = None
    features: FloatArray | None = None
    predicted: Mapping[str, FloatArray] = field(default_factory=dict)
    outcomes: Mapping[str, tuple[FloatArray, FloatArray]] = field(default_factory=dict)
    tie: IntArray | None = None
    sent: IntArray | None = None


@dataclass(frozen=True)
class BatchHealth:
    """The health of one batch.

    Attributes:
        batch: The batch's index.
        values: Metric name -> value (nan where not measured); see the module docstring.
        alarms: The thresholds crossed in this batch.
    """

    batch: int
    values: dict[str, float]
    alarms: tuple[Alarm, ...]


@dataclass(frozen=True)
class MonitorConfig:
    """How the monitor measures.

    Attributes:
        thresholds: The alarm thresholds.
        overlap_k: K of overlap@K.
        reference_batches: Batches that form the reference of the predictions and exploration metrics.
        calibration_window: Last outcomes the calibration error is computed over.
        calibration_bins: Equal-mass bins of the ECE.
        readout_degree: Polynomial degree of the frozen read-out (1 or 2).
        reference_lag: The frozen-reference chart's null odds at batch ``t`` are estimated from the
            monitored batches up to ``t - reference_lag``.
        reference_calibration: Batches that null-odds window must hold before that chart starts.
    """

    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    overlap_k: int = 1
    reference_batches: int = 3
    calibration_window: int = 2000
    calibration_bins: int = 10
    readout_degree: int = 2
    reference_lag: int = 3
    reference_calibration: int = 3

    def __post_init__(self) -> None:
        """Reject sizes that cannot measure.

        Raises:
            EvaluationInputError: naming the first offending field.
        """
        if self.overlap_k < 1 or self.reference_batches < 1 or self.calibration_window < 1 or self.calibration_bins < 1:
            raise EvaluationInputError(
                "overlap_k, reference_batches, calibration_window and calibration_bins must be >= 1, got "
                f"{self.overlap_k}, {self.reference_batches}, {self.calibration_window}, {self.calibration_bins}"
            )
        if self.readout_degree not in (1, 2) or self.reference_lag < 0 or self.reference_calibration < 1:
            raise EvaluationInputError(
                "readout_degree must be 1 or 2, reference_lag >= 0 and reference_calibration >= 1, got "
                f"{self.readout_degree}, {self.reference_lag}, {self.reference_calibration}"
            )


class HealthMonitor:
    """Batch health against a reference window (see the module docstring).

    Args:
        config: How to measure.
        reference_features: ``(n, d)`` the training window's features, or None to take the first
            ``reference_batches`` batches' features.
    """

    def __init__(self, config: MonitorConfig | None = None, reference_features: ArrayLike | None = None) -> None:
        self.config = config if config is not None else MonitorConfig()
        self._reference_features = None if reference_features is None else np.asarray(reference_features, dtype=float)
        self._fixed_features = reference_features is not None
        self._pending_features: list[FloatArray] = []
        self._recent_predicted: dict[str, deque[FloatArray]] = {
            o: deque(maxlen=self.config.reference_batches) for o in OUTCOMES
        }
        self._reference_exploration: dict[str, float] = {}
        self._pending_exploration: dict[str, list[float]] = {}
        self._seen = 0
        self._previous: tuple[np.ndarray, ...] | None = None
        self._rate = {o: RateCusum() for o in OUTCOMES}
        self._rate_h: dict[str, float | None] = {o: self.config.thresholds.rate_h for o in OUTCOMES}
        # (sends, expected count under the null) of every batch with outcomes, until h is solved
        self._rate_batches: dict[str, list[tuple[int, float]]] = {o: [] for o in OUTCOMES}
        self._readout: dict[str, FrozenReadout | None] = {o: None for o in OUTCOMES}
        self._ref_rate = {o: RateCusum() for o in OUTCOMES}
        self._ref_h: dict[str, float | None] = {o: None for o in OUTCOMES}
        # per monitored batch with sends: (frozen predictions, outcomes) of the sent pairs, the null odds' window
        self._ref_seen: dict[str, list[tuple[FloatArray, FloatArray]]] = {o: [] for o in OUTCOMES}
        window = self.config.calibration_window
        self._recent: dict[str, tuple[deque[float], deque[float]]] = {
            o: (deque(maxlen=window), deque(maxlen=window)) for o in OUTCOMES
        }

    def observe(self, obs: BatchObservation) -> BatchHealth:
        """The health of the next batch (batches must come in order, each once)."""
        c, t = self.config, self.config.thresholds
        in_reference = self._seen < c.reference_batches
        values: dict[str, float] = {}
        alarms: list[Alarm] = []
        current: tuple[np.ndarray, ...] = (obs.pair_user, obs.pair_item, obs.propensity)
        if obs.tie is not None:
            current += (obs.tie,)
        values["selection_entropy"] = selection_entropy(obs.pair_item, obs.propensity)
        values["item_coverage"] = item_coverage(obs.pair_item, obs.propensity)
        values["overlap_at_k"] = (
            math.nan if self._previous is None else overlap_at_k(self._previous, current, c.overlap_k)
        )
        values["allocation_variance"] = (
            allocation_variance(obs.plans) if obs.plans is not None else send_variance(obs.propensity)
        )
        self._previous = current

        values.update(self._feature_drift(obs, in_reference, alarms))
        for outcome in OUTCOMES:
            values.update(self._prediction_drift(obs, outcome, in_reference, alarms))
            values.update(self._outcome_health(obs, outcome, in_reference, alarms))
            values.update(self._reference_rate(obs, outcome, in_reference, alarms))

        for metric, alarm, ratio_name in _COLLAPSES:
            value = values[metric]
            if in_reference:
                if not math.isnan(value):
                    self._pending_exploration.setdefault(metric, []).append(value)
                continue
            ref = self._reference_exploration.get(metric, math.nan)
            threshold = getattr(t, ratio_name) * ref
            if not math.isnan(value) and not math.isnan(threshold) and value < threshold:
                alarms.append(Alarm(alarm, obs.batch, value, threshold))
        self._seen += 1
        if self._seen == c.reference_batches:
            self._close_reference()
        return BatchHealth(obs.batch, values, tuple(alarms))

    def _close_reference(self) -> None:
        self._reference_exploration = {k: float(np.mean(v)) for k, v in self._pending_exploration.items()}
        if not self._fixed_features and self._pending_features:
            self._reference_features = np.concatenate(self._pending_features)

    def _feature_drift(self, obs: BatchObservation, in_reference: bool, alarms: list[Alarm]) -> dict[str, float]:
        if obs.features is None:
            return {"feature_psi_max": math.nan}
        features = np.asarray(obs.features, dtype=float)
        if not self._fixed_features and in_reference:
            self._pending_features.append(features)
        if self._reference_features is None or (in_reference and not self._fixed_features):
            return {"feature_psi_max": math.nan}
        values = psi(self._reference_features, features)
        out = {f"feature_psi.{j}": float(v) for j, v in enumerate(values)}
        worst = float(values.max())
        out["feature_psi_max"] = worst
        if worst > self.config.thresholds.psi:
            alarms.append(Alarm("feature_drift", obs.batch, worst, self.config.thresholds.psi))
        return out

    def _prediction_drift(
        self, obs: BatchObservation, outcome: str, in_reference: bool, alarms: list[Alarm]
    ) -> dict[str, float]:
        key = f"prediction_psi.{outcome}"
        predicted = obs.predicted.get(outcome)
        out = {key: math.nan, f"prediction_shift_psi.{outcome}": math.nan, f"prediction_fit_r2.{outcome}": math.nan}
        if predicted is None:
            return out
        recent = self._recent_predicted[outcome]
        if len(recent) == recent.maxlen:
            out[key] = float(psi(np.concatenate(recent), predicted)[0])
        recent.append(np.asarray(predicted, dtype=float))
        reference = self._reference_features
        if in_reference or reference is None or obs.features is None or len(obs.features) != len(predicted):
            return out
        shift, r2 = model_scored_psi(reference, obs.features, predicted)
        out[f"prediction_shift_psi.{outcome}"], out[f"prediction_fit_r2.{outcome}"] = shift, r2
        limit = self.config.thresholds.prediction_psi
        if shift > limit:
            alarms.append(Alarm(f"prediction_drift.{outcome}", obs.batch, shift, limit))
        return out

    def _outcome_health(
        self, obs: BatchObservation, outcome: str, in_reference: bool, alarms: list[Alarm]
    ) -> dict[str, float]:
        t = self.config.thresholds
        pair = obs.outcomes.get(outcome)
        p, y = (np.zeros(0), np.zeros(0)) if pair is None else (np.asarray(pair[0], float), np.asarray(pair[1], float))
        recent_p, recent_y = self._recent[outcome]
        recent_p.extend(p.tolist())
        recent_y.extend(y.tolist())
        z = standardised_residual(p, y)
        c = t.null_odds(outcome)
        llr_value = float(odds_llr(p, y, t.rate_ratio, c)) if p.size else math.nan
        stat, fired = math.nan, False
        h = self._rate_h[outcome]
        if p.size and h is None:
            self._rate_batches[outcome].append((p.size, float(null_probability(p, c).sum())))
        if not in_reference and p.size:
            if h is None:
                h = self._rate_h[outcome] = self._solve_rate_h(outcome)
            self._rate[outcome], stat, fired = self._rate[outcome].step(p, y, t.rate_ratio, c, h)
        if fired:
            alarms.append(Alarm(f"rate_shift.{outcome}", obs.batch, stat, float(self._rate_h[outcome] or 0.0)))
        cal = calibration(np.fromiter(recent_p, float), np.fromiter(recent_y, float), self.config.calibration_bins)
        ece_threshold = cal.ece_null_mean + t.ece_z * cal.ece_null_std
        if cal.n and cal.ece > ece_threshold:
            alarms.append(Alarm(f"calibration.{outcome}", obs.batch, cal.ece, ece_threshold))
        return {
            f"outcomes.{outcome}": float(p.size),
            f"rate_z.{outcome}": z,
            f"rate_expected.{outcome}": float(p.sum()),
            f"rate_observed.{outcome}": float(y.sum()),
            f"rate_llr.{outcome}": llr_value,
            f"rate_cusum.{outcome}": stat,
            f"rate_h.{outcome}": math.nan if h is None else float(h),
            f"ece.{outcome}": cal.ece,
            f"ece_threshold.{outcome}": ece_threshold,
            f"gap.{outcome}": cal.gap,
            f"gap_se.{outcome}": cal.gap_se,
        }

    def _solve_rate_h(self, outcome: str) -> float:
        # h for batches like those seen so far: their mean sends with their mean expected count.
        seen = self._rate_batches[outcome]
        sends = max(2, round(float(np.mean([n for n, _ in seen]))))
        expected = float(np.mean([m for _, m in seen]))
        expected = min(max(expected, 1e-3), 0.5 * sends)
        t = self.config.thresholds
        return rate_threshold(poisson_like(expected, sends), t.rate_ratio, t.rate_arl0)

    def _reference_rate(
        self, obs: BatchObservation, outcome: str, in_reference: bool, alarms: list[Alarm]
    ) -> dict[str, float]:
        # The chart of the sent pairs' outcomes against the frozen read-out (module docstring).
        t, c = self.config.thresholds, self.config
        predicted = obs.predicted.get(outcome)
        features = None if obs.features is None else np.asarray(obs.features, dtype=float)
        rows = (features, predicted) if predicted is not None and features is not None else None
        if rows is not None and len(rows[0]) != len(rows[1]):
            rows = None
        if in_reference and rows is not None:
            # the last reference batch's model: the best trained one before the reference closes
            self._readout[outcome] = fit_readout(*rows, c.readout_degree)
        readout = self._readout[outcome]
        out = {
            f"rate_ref_expected.{outcome}": math.nan,
            f"rate_ref_cusum.{outcome}": math.nan,
            f"rate_ref_h.{outcome}": math.nan,
            f"rate_ref_null_odds.{outcome}": math.nan,
            f"reference_fit_r2.{outcome}": math.nan if readout is None else readout.r2,
        }
        pair = obs.outcomes.get(outcome)
        if in_reference or readout is None or pair is None or obs.sent is None or features is None:
            return out
        y = np.asarray(pair[1], dtype=float)
        if y.size == 0:
            return out
        q = readout.predict(features[np.asarray(obs.sent)])
        out[f"rate_ref_expected.{outcome}"] = float(q.sum())
        seen = self._ref_seen[outcome]
        seen.append((q, y))
        window = seen[: len(seen) - c.reference_lag] if c.reference_lag else seen
        if len(window) < c.reference_calibration:
            return out
        q_window, y_window = np.concatenate([w[0] for w in window]), np.concatenate([w[1] for w in window])
        null = null_odds_mle(q_window, y_window)
        h = self._ref_h[outcome] if t.rate_h is None else t.rate_h
        if h is None:
            # h for batches like the window's: their mean sends and mean expected count at the null
            sends = max(2, round(q_window.size / len(window)))
            expected = min(max(float(null_probability(q_window, null).sum()) / len(window), 1e-3), 0.5 * sends)
            h = self._ref_h[outcome] = rate_threshold(poisson_like(expected, sends), t.rate_ratio, t.rate_arl0)
        self._ref_rate[outcome], stat, fired = self._ref_rate[outcome].step(q, y, t.rate_ratio, null, h)
        if fired:
            alarms.append(Alarm(f"rate_shift_ref.{outcome}", obs.batch, stat, h))
        out[f"rate_ref_cusum.{outcome}"] = stat
        out[f"rate_ref_h.{outcome}"] = h
        out[f"rate_ref_null_odds.{outcome}"] = null
        return out


def model_scored_psi(reference: ArrayLike, features: ArrayLike, predicted: ArrayLike) -> tuple[float, float]:
    """PSI of one model's scores of the batch's rows against its scores of the reference rows.

    The model is read from its predictions: the least-squares fit of ``logit(predicted)`` on
    ``[1, features]``, applied to both sets of rows (see :mod:`evaluation.health.alarms`).

    Args:
        reference: ``(n, d)`` the reference rows' features.
        features: ``(m, d)`` the batch's pair features.
        predicted: ``(m,)`` the model's predictions of those pairs, in (0, 1).

    Returns:
        ``(PSI, R^2 of the fit)``; the R^2 is nan when the predictions do not vary.
    """
    ref = np.asarray(reference, dtype=float)
    x = np.asarray(features, dtype=float)
    p = np.clip(np.asarray(predicted, dtype=float), 1e-9, 1.0 - 1e-9)
    if ref.ndim != 2 or x.ndim != 2 or ref.shape[1] != x.shape[1] or p.shape != (x.shape[0],):
        raise EvaluationInputError(
            f"need (n, d) and (m, d) features and (m,) predictions: {ref.shape}, {x.shape}, {p.shape}"
        )
    logits = np.log(p) - np.log1p(-p)
    design = np.c_[np.ones(x.shape[0]), x]
    beta = np.linalg.lstsq(design, logits, rcond=None)[0]
    fitted = design @ beta
    spread = float(((logits - logits.mean()) ** 2).sum())
    r2 = 1.0 - float(((logits - fitted) ** 2).sum()) / spread if spread > 0 else math.nan
    scored_reference = np.c_[np.ones(ref.shape[0]), ref] @ beta
    return float(psi(scored_reference, fitted)[0]), r2
