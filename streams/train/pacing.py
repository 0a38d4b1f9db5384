"""The trainer's cost pacing: realised unsubscriptions of the policy's sends against their budgeted costs.

Every training row the learner writes from a scored send carries ``budgeted_unsub``, the
calibrated mean unsubscription probability the scorer gave the item before pacing (what the
plan budgeted for it); logged warm-start rows and rows of older writers carry none and do not
count. The trainer adds each row it reads to ``PacingLedger`` and folds the rows since the last
retrain into the ``CostPacing`` posterior once per retrain (``models.pacing``: with the default
``memory`` = 1 the order of the rows does not matter, so a restarted trainer, which re-reads the
topic from its beginning, rebuilds the same counts). Each published version carries the factor
(``cost_scale``) and the counts (``cost_pacing``) for the scorer (``streams.score.model_feed``).
"""

from __future__ import annotations

from typing import Any

from models.pacing import CostPacing, PacingConfig
from streams.score.model_feed import PacingCounts

#: The outcome pacing scales: the unsubscription budget's cost.
PACED_OUTCOME = "unsubscription"


class PacingLedger:
    """Counts of the rows read since the last retrain, and the posterior up to it."""

    def __init__(self, config: PacingConfig) -> None:
        self.pacing = CostPacing(config)
        self.n_rows = 0
        self._realised = 0.0
        self._budgeted = 0.0
        self._pending = 0

    def add(self, unsubscribed: bool, budgeted: float | None) -> None:
        """One training row: its outcome and the cost budgeted for it (None: not budgeted, skipped)."""
        if budgeted is None:
            return
        self._realised += float(unsubscribed)
        self._budgeted += budgeted
        self._pending += 1

    def fold(self) -> PacingCounts:
        """Fold the rows since the last call into the posterior (one ``CostPacing.update``)."""
        self.pacing = self.pacing.update(self._realised, self._budgeted)
        self.n_rows += self._pending
        self._realised = self._budgeted = 0.0
        self._pending = 0
        return PacingCounts(PACED_OUTCOME, self.pacing, self.n_rows)


def snapshot_fields(counts: PacingCounts, version_factor: float = 1.0) -> dict[str, Any]:
    """The ``model-snapshots`` fields of ``counts``: the cost scale, the pacing factor times the
    version guard's ``version_factor`` (``models.version_guard``; none when pacing is off and the
    guard gives 1, so the scorer applies 1), and the counts."""
    on = counts.pacing.config.prior_events > 0
    scale = (counts.pacing.factor() if on else 1.0) * version_factor
    return {
        "cost_scale": {counts.outcome: scale} if on or version_factor != 1.0 else {},
        "cost_pacing": counts.to_avro(),
    }
