"""``linucb_lp``: LinUCB scores in the batch's LP.

Two linear-Gaussian heads (:class:`models.posterior.BayesianLinearHead`) on the pair features
with an intercept, ``phi = [features, 1]``: one for the realised reward of a send (value, 0 when
no conversion), one for the unsubscription indicator. The LP maximises the reward's upper
confidence bound ``phi' theta_r + alpha sqrt(phi' A_r^-1 phi)`` (chapter eq. 16.2, clipped at 0)
under the budget on the cost head's posterior mean (clipped to [0, 1]): optimism on the
objective only, as LinUCB is usually put in front of an LP.

The noise variances are set once from the warm start: the sample variance of the reward per
send and ``p (1 - p)`` of its unsubscription rate (each at least 1e-6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.email_batch import BatchConstraints, CandidateBatch
from evaluation.errors import EvaluationInputError
from evaluation.experiment.batches import Rows
from evaluation.experiment.lp import solve_lp
from evaluation.experiment.methods.base import Estimates, MethodContext, Plan
from models.posterior import BayesianLinearHead, LinearHeadConfig

_MIN_VARIANCE = 1e-6


@dataclass(frozen=True, kw_only=True)
class LinUCBConfig:
    """LinUCB-LP's settings.

    Attributes:
        alpha: Width of the upper confidence bound (>= 0).
        prior_precision: lambda of the heads' ``N(0, lambda^-1 I)`` prior (> 0).
    """

    alpha: float = 1.0
    prior_precision: float = 1.0

    def __post_init__(self) -> None:
        """Raises EvaluationInputError for a negative width or a non-positive precision."""
        if not (np.isfinite(self.alpha) and self.alpha >= 0):
            raise EvaluationInputError(f"alpha must be finite and >= 0, got {self.alpha}")
        if not (np.isfinite(self.prior_precision) and self.prior_precision > 0):
            raise EvaluationInputError(f"prior_precision must be positive, got {self.prior_precision}")


def with_intercept(features: np.ndarray) -> FloatArray:
    """``(n, d)`` features -> ``(n, d + 1)`` float64 ``[features, 1]``."""
    f = np.asarray(features, dtype=np.float64)
    return np.concatenate([f, np.ones((f.shape[0], 1))], axis=1)


class LinUCBMethod:
    """LinUCB-LP (see the module docstring); speaks :class:`~evaluation.experiment.methods.base.Method`.

    Args:
        config: Its settings.
        context: The world's sizes.
    """

    stochastic = False

    def __init__(self, config: LinUCBConfig, context: MethodContext) -> None:
        self.config = config
        self.dim = context.feature_dim + 1
        self.reward_head: BayesianLinearHead | None = None
        self.cost_head: BayesianLinearHead | None = None

    def learn(self, rows: Rows, rng: np.random.Generator) -> None:
        """Exact posterior update of both heads with the new rows (the first call sets the noise)."""
        if rows.n == 0:
            return
        if self.reward_head is None or self.cost_head is None:
            p = float(rows.unsubscribed.mean())
            reward_var = max(float(rows.value.var()), _MIN_VARIANCE)
            cost_var = max(p * (1.0 - p), _MIN_VARIANCE)
            lam = self.config.prior_precision
            self.reward_head = BayesianLinearHead(LinearHeadConfig(self.dim, lam, reward_var))
            self.cost_head = BayesianLinearHead(LinearHeadConfig(self.dim, lam, cost_var))
        phi = with_intercept(rows.features)
        self.reward_head.update_batch(phi, rows.value)
        self.cost_head.update_batch(phi, rows.unsubscribed)

    def plan(self, batch: CandidateBatch, constraints: BatchConstraints, rng: np.random.Generator) -> Plan:
        """UCB rewards and mean costs in the LP.

        Raises:
            EvaluationInputError: if the method has not learnt from any row yet.
        """
        if self.reward_head is None or self.cost_head is None:
            raise EvaluationInputError("linucb_lp must learn from the warm start before it plans")
        phi = with_intercept(batch.features)
        reward = np.maximum(self.reward_head.ucb(phi, self.config.alpha), 0.0)
        cost = np.clip(self.cost_head.predictive_mean(phi), 0.0, 1.0)
        solved = solve_lp(batch, constraints, reward, cost)
        estimates = Estimates(unsub_predicted=cost, unsub_calibrated=cost, unsub_decision=cost)
        return Plan(x=solved.x, reward=reward, cost=cost, elastic=solved.elastic, estimates=estimates)
