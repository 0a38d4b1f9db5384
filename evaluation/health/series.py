"""The batch health inside the offline experiment: what the monitor is shown of a planned batch,
and the per-batch series an experiment's results hold.

The experiment's results get, per batch, the metrics of :data:`SERIES_METRICS` as
``health.<metric>`` and one 0/1 series ``alarm.<name>`` per alarm of
:data:`~evaluation.health.monitor.ALARM_NAMES` (1 in the batches where it fired); the full
record (every metric, each alarm with its value and threshold) is :class:`BatchHealth`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import BoolArray, FloatArray, IntArray
from evaluation.health.monitor import ALARM_NAMES, OUTCOMES, BatchHealth, BatchObservation

#: The metrics an experiment writes as series (``health.<name>``).
SERIES_METRICS = (
    "selection_entropy",
    "item_coverage",
    "overlap_at_k",
    "allocation_variance",
    "feature_psi_max",
    *(f"prediction_psi.{o}" for o in OUTCOMES),
    *(f"prediction_shift_psi.{o}" for o in OUTCOMES),
    *(f"rate_z.{o}" for o in OUTCOMES),
    *(f"rate_expected.{o}" for o in OUTCOMES),
    *(f"rate_observed.{o}" for o in OUTCOMES),
    *(f"rate_cusum.{o}" for o in OUTCOMES),
    *(f"rate_h.{o}" for o in OUTCOMES),
    *(f"rate_ref_expected.{o}" for o in OUTCOMES),
    *(f"rate_ref_cusum.{o}" for o in OUTCOMES),
    *(f"rate_ref_h.{o}" for o in OUTCOMES),
    *(f"rate_ref_null_odds.{o}" for o in OUTCOMES),
    *(f"reference_fit_r2.{o}" for o in OUTCOMES),
    *(f"ece.{o}" for o in OUTCOMES),
    *(f"gap.{o}" for o in OUTCOMES),
)


def health_series(health: BatchHealth) -> dict[str, float]:
    """One batch's series values: ``health.<metric>`` and ``alarm.<name>`` (0/1)."""
    row = {f"health.{m}": float(health.values.get(m, math.nan)) for m in SERIES_METRICS}
    fired = {a.name for a in health.alarms}
    row.update({f"alarm.{name}": float(name in fired) for name in ALARM_NAMES})
    return row


def planned_batch(
    batch: int,
    pair_user: IntArray,
    pair_item: IntArray,
    features: ArrayLike,
    plans: list[FloatArray],
    sent: IntArray,
    converted: BoolArray,
    unsubscribed: BoolArray,
    conversion: FloatArray | None,
    unsubscription: FloatArray | None,
) -> BatchObservation:
    """What the monitor sees of one batch of the experiment.

    Args:
        batch: The batch index.
        pair_user: ``(E,)`` user ids.
        pair_item: ``(E,)`` item ids.
        features: ``(E, d)`` pair features.
        plans: The plan sent from first, then the extra plans of the same model (``(E,)`` each).
        sent: ``(n,)`` indices of the sent pairs.
        converted: ``(E,)`` whether each pair would convert (only the sent ones are read).
        unsubscribed: ``(E,)`` the same for unsubscription.
        conversion: ``(E,)`` the model's calibrated mean conversion, or None (no model).
        unsubscription: ``(E,)`` its calibrated mean unsubscription, or None.

    Returns:
        The observation: propensities are the plan's ``x``; the allocation variance is across
        the plans when there are several.
    """
    predicted: dict[str, FloatArray] = {}
    outcomes: dict[str, tuple[FloatArray, FloatArray]] = {}
    for name, p, y in (("conversion", conversion, converted), ("unsubscription", unsubscription, unsubscribed)):
        if p is not None:
            predicted[name] = np.asarray(p, dtype=float)
            outcomes[name] = (predicted[name][sent], np.asarray(y[sent], dtype=float))
    return BatchObservation(
        batch=batch,
        pair_user=pair_user,
        pair_item=pair_item,
        propensity=np.clip(plans[0], 0.0, 1.0),
        plans=np.stack(plans) if len(plans) > 1 else None,
        features=np.asarray(features, dtype=float),
        predicted=predicted,
        outcomes=outcomes,
        sent=np.asarray(sent, dtype=np.int64),
    )
