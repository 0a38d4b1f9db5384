"""What a method's model believed against the truth: the measures behind the budget overrun.

Per batch, for a method that reports :class:`~evaluation.experiment.methods.base.Estimates`:

* ``chosen_unsub.{true,predicted,calibrated,decision}``: the mean unsubscription probability of
  the chosen pairs (weights ``x``) under the truth, the model's uncalibrated mean, its
  calibrated mean, and the cost the decision used (the calibrated Thompson sample for
  BanditLP). ``decision < true`` on the chosen pairs is the winner's curse: the LP picks the
  pairs whose estimated cost errs low.
* ``calibration_error.{conversion,unsubscription}_{all,chosen}``: expected calibration error of
  the calibrated means against the true probabilities, on all candidates and on the chosen
  pairs (:func:`evaluation.experiment.metrics.calibration_error`).
* ``version_spread.{conversion,unsubscription}``: how far consecutive model versions moved,
  in posterior stds (nan in the first batch).

:class:`CurveBook` pools the calibrated means of all batches of a seed into calibration curves.
"""

from __future__ import annotations

import math

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.experiment.batches import BatchTruth
from evaluation.experiment.methods.base import Estimates
from evaluation.experiment.metrics import calibration_curve, calibration_error, weighted_mean

#: The outcomes whose calibration is measured.
OUTCOMES = ("conversion", "unsubscription")


def estimate_measures(truth: BatchTruth, x: FloatArray, estimates: Estimates | None) -> dict[str, float]:
    """The diagnostics of one batch (see the module docstring); nan where a method has no value.

    Args:
        truth: The batch and its truth.
        x: ``(E,)`` the method's plan.
        estimates: The model's beliefs, or None.

    Returns:
        Dotted measure name -> value.
    """
    keys = [f"chosen_unsub.{k}" for k in ("true", "predicted", "calibrated", "decision")]
    keys += [f"calibration_error.{o}_{w}" for o in OUTCOMES for w in ("all", "chosen")]
    keys += [f"version_spread.{o}" for o in OUTCOMES]
    out = dict.fromkeys(keys, math.nan)
    out["chosen_unsub.true"] = weighted_mean(truth.p_unsub, x)
    if estimates is None:
        return out
    out["chosen_unsub.predicted"] = weighted_mean(estimates.unsub_predicted, x)
    out["chosen_unsub.calibrated"] = weighted_mean(estimates.unsub_calibrated, x)
    out["chosen_unsub.decision"] = weighted_mean(estimates.unsub_decision, x)
    believed = {"conversion": estimates.conversion, "unsubscription": estimates.unsub_calibrated}
    true = {"conversion": truth.p_conversion, "unsubscription": truth.p_unsub}
    for outcome in OUTCOMES:
        pred = believed[outcome]
        if pred is not None:
            out[f"calibration_error.{outcome}_all"] = calibration_error(pred, true[outcome])
            out[f"calibration_error.{outcome}_chosen"] = calibration_error(pred, true[outcome], x)
        out[f"version_spread.{outcome}"] = float(estimates.version_spread.get(outcome, math.nan))
    return out


class CurveBook:
    """Calibrated means, truths and plan weights of every batch of one seed, for its curves."""

    def __init__(self) -> None:
        self._pred: dict[str, list[FloatArray]] = {o: [] for o in OUTCOMES}
        self._true: dict[str, list[FloatArray]] = {o: [] for o in OUTCOMES}
        self._x: list[FloatArray] = []

    def add(self, truth: BatchTruth, x: FloatArray, estimates: Estimates | None) -> None:
        """Keep one batch's beliefs (nothing for a method without estimates)."""
        if estimates is None:
            return
        self._x.append(x)
        believed = {"conversion": estimates.conversion, "unsubscription": estimates.unsub_calibrated}
        true = {"conversion": truth.p_conversion, "unsubscription": truth.p_unsub}
        for outcome in OUTCOMES:
            pred = believed[outcome]
            self._pred[outcome].append(np.full(x.shape, math.nan) if pred is None else pred)
            self._true[outcome].append(true[outcome])

    def curves(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        """``{outcome_all, outcome_chosen}`` -> ``(mean predicted (B,), mean true (B,))`` per
        equal-mass bin, over every batch kept; empty for a method without estimates (or whose
        model does not predict the outcome)."""
        if not self._x:
            return {}
        x = np.concatenate(self._x)
        out: dict[str, tuple[FloatArray, FloatArray]] = {}
        for outcome in OUTCOMES:
            pred = np.concatenate(self._pred[outcome])
            if np.isnan(pred).any():
                continue
            true = np.concatenate(self._true[outcome])
            out[f"{outcome}_all"] = calibration_curve(pred, true)
            out[f"{outcome}_chosen"] = calibration_curve(pred, true, x)
        return out
