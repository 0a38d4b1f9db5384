"""Cost pacing: the bias of the budgeted cost on the policy's own sends, learnt from feedback.

The LP spends its budget on the pairs whose estimated cost is low, so the cost of what it
sends is under-estimated even by a calibrated model (the optimizer's curse: the calibration
holdout is not selected by the next plan). Pacing measures that bias where it arises: over the
sends of the deployed policy, the realised unsubscriptions ``R`` against the costs its plans
budgeted for them ``C``. With a Poisson likelihood ``R ~ Poisson(rho C)`` and a
``Gamma(a, a)`` prior (``a`` pseudo-events at rho = 1), rho's posterior is
``Gamma(a + R, a + C)``; the budgeted costs of the next plan are multiplied by its
``quantile`` (0.5: the median; higher is warier). ``memory`` discounts older batches by
gamma per update, so the factor follows a model whose bias changes as it retrains.

Used by the offline ``banditlp`` method and by the streams' trainer, which publishes the
factor with every model version for the scorer to apply to the cost outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scipy import stats

from models.errors import ModelInputError


@dataclass(frozen=True, kw_only=True)
class PacingConfig:
    """The prior, discount and quantile of cost pacing.

    Attributes:
        prior_events: ``a`` > 0, the prior's pseudo-events at rho = 1 (0 turns pacing off).
        memory: Discount gamma in (0, 1] applied to the counts before each update.
        quantile: Posterior quantile of rho used, in (0, 1).
    """

    prior_events: float = 20.0
    memory: float = 1.0
    quantile: float = 0.5

    def __post_init__(self) -> None:
        """Reject settings that describe no posterior.

        Raises:
            ModelInputError: naming the field.
        """
        if not (math.isfinite(self.prior_events) and self.prior_events >= 0):
            raise ModelInputError(f"prior_events must be finite and >= 0, got {self.prior_events}")
        if not 0.0 < self.memory <= 1.0:
            raise ModelInputError(f"memory must be in (0, 1], got {self.memory}")
        if not 0.0 < self.quantile < 1.0:
            raise ModelInputError(f"quantile must be in (0, 1), got {self.quantile}")


@dataclass(frozen=True)
class CostPacing:
    """The pacing counts and the factor they give (a value: ``update`` returns a new one).

    Attributes:
        config: Prior, discount, quantile.
        realised: Discounted realised events of the policy's sends.
        budgeted: Discounted budgeted costs of the same sends.
    """

    config: PacingConfig = PacingConfig()
    realised: float = 0.0
    budgeted: float = 0.0

    def update(self, realised: float, budgeted: float) -> CostPacing:
        """The counts after one batch of sends: ``realised`` events against ``budgeted`` costs.

        Raises:
            ModelInputError: on a negative or non-finite count.
        """
        if not (math.isfinite(realised) and math.isfinite(budgeted) and realised >= 0 and budgeted >= 0):
            raise ModelInputError(f"pacing counts must be finite and >= 0, got {realised}, {budgeted}")
        g = self.config.memory
        return replace(self, realised=g * self.realised + realised, budgeted=g * self.budgeted + budgeted)

    @property
    def shape(self) -> float:
        """Shape ``a + R`` of rho's Gamma posterior."""
        return self.config.prior_events + self.realised

    @property
    def rate(self) -> float:
        """Rate ``a + C`` of rho's Gamma posterior."""
        return self.config.prior_events + self.budgeted

    def factor(self) -> float:
        """The posterior ``quantile`` of rho (1 when pacing is off, ``prior_events`` = 0)."""
        if self.config.prior_events <= 0:
            return 1.0
        return float(stats.gamma.ppf(self.config.quantile, self.shape, scale=1.0 / self.rate))
