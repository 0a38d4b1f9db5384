"""Version guard: budgeted costs held to the warier of the last few model versions.

Every retrain moves the unsubscription model by more than its last-layer posterior admits: the
chosen pairs' true cost swings from 0.35 to 1.43 of the budget between consecutive batches of
one run (README, "The version guard"), and the LP spends its budget where the newest version
happens to put costs low. The versions' disagreement is a measure of what the model does not
know that costs nothing to get: the guard compares the calibrated mean costs that the last
``versions`` model versions give the newest sends (the pairs the next plan is most like) and
scales the next plan's costs by the largest ratio to the newest version's, never below 1:

    g = max(1, max_m sum_e c_m(e) / sum_e c_newest(e)),   m over the last ``versions`` versions.

Used by the offline ``banditlp`` variants and by the streams' trainer, which multiplies it into
the cost scale it publishes with every version (with the pacing factor, ``models.pacing``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from banditlp.arrays import FloatArray
from models.errors import ModelInputError

M = TypeVar("M")


@dataclass(frozen=True, kw_only=True)
class VersionGuardConfig:
    """How many versions the guard compares.

    Attributes:
        versions: The newest version and the ``versions - 1`` before it; 1 turns the guard off.
    """

    versions: int = 1

    def __post_init__(self) -> None:
        """Raises ModelInputError unless ``versions`` >= 1."""
        if self.versions < 1:
            raise ModelInputError(f"versions must be >= 1, got {self.versions}")


def version_factor(cost_sums: Sequence[float]) -> float:
    """``max(1, max(cost_sums) / cost_sums[-1])``: the newest version's sum is the last.

    Args:
        cost_sums: Each version's total calibrated cost of the same pairs, oldest first.

    Returns:
        The factor, 1 for a single version.

    Raises:
        ModelInputError: if a sum is negative or not finite, or the newest is 0 while an older
            one is positive (no finite ratio).
    """
    sums = [float(s) for s in cost_sums]
    if not sums:
        raise ModelInputError("version_factor needs at least one version's cost")
    if not all(math.isfinite(s) and s >= 0 for s in sums):
        raise ModelInputError(f"cost sums must be finite and >= 0, got {sums}")
    newest, most = sums[-1], max(sums)
    if newest == 0.0:
        if most > 0.0:
            raise ModelInputError("the newest version costs nothing where an older one does: no finite ratio")
        return 1.0
    return max(1.0, most / newest)


class VersionGuard(Generic[M]):
    """The last ``versions`` models and the factor they give on a set of pairs.

    Args:
        config: How many versions are kept.
        cost: ``(model, X (n, d)) -> (n,)`` a model's calibrated mean cost of each pair.
    """

    def __init__(self, config: VersionGuardConfig, cost: Callable[[M, np.ndarray], FloatArray]) -> None:
        self.config = config
        self.cost = cost
        self.models: deque[M] = deque(maxlen=config.versions)

    def push(self, model: M) -> None:
        """Keep ``model`` as the newest version (the oldest kept leaves when full)."""
        self.models.append(model)

    def factor(self, features: np.ndarray) -> float:
        """:func:`version_factor` of the kept versions' costs of ``features`` ``(n, d)``; 1 when
        the guard is off, no version is kept, or there are no pairs."""
        if self.config.versions == 1 or len(self.models) < 2 or len(features) == 0:
            return 1.0
        return version_factor([float(np.sum(self.cost(m, features))) for m in self.models])
