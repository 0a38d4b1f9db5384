"""The two reference methods: ``random_lp`` (random scores in the LP) and ``oracle_lp`` (the truth in it).

``random_lp`` learns nothing but the scale of what it draws: the mean reward per send ``r`` and
the unsubscription rate ``c`` of every send it has seen; its scores are uniform on ``[0, 2r]``
and ``[0, 2c]``, drawn anew for every batch. The LP then keeps the budget and the provider rows
on random costs: a baseline of what constraints alone achieve without a model.

``oracle_lp`` solves each batch's LP on the true expected rewards and costs (the regret
benchmark), through the same LP path as every other method; its oracle fraction is 1 up to
the LP's tolerance.

``oracle_level_lp`` is the information bound of the budget: it knows the true rewards and the
true *relative* unsubscription probabilities, and only the level of the latter is unknown, a
factor ``rho`` learnt from the unsubscriptions it observes (a Poisson likelihood, the conjugate
``Gamma(a, a)`` prior). Its budget usage under the truth is ``1 / rho_q`` whenever the budget
binds, so how often it goes over 1.05 is what a single scalar learnt from this many events
costs: no learner that must also learn the shape of the cost can do better at the same
quantile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.email_batch import BatchConstraints, CandidateBatch
from evaluation.email_world import EmailWorld
from evaluation.errors import EvaluationInputError
from evaluation.experiment.batches import Rows
from evaluation.experiment.lp import solve_lp
from evaluation.experiment.methods.base import MethodContext, Plan
from models.pacing import CostPacing, PacingConfig


@dataclass(frozen=True, kw_only=True)
class RandomLPConfig:
    """random_lp's settings (none: the scale of its scores is learnt)."""


@dataclass(frozen=True, kw_only=True)
class OracleLPConfig:
    """oracle_lp's settings (none)."""


@dataclass(frozen=True, kw_only=True)
class OracleLevelLPConfig:
    """oracle_level_lp's settings.

    Attributes:
        prior: ``a`` of the ``Gamma(a, a)`` prior of ``rho`` (pseudo-unsubscriptions at ``rho = 1``).
        quantile: The posterior quantile of ``rho`` the costs are scaled by (0.5: the median;
            higher keeps the budget more often, at the price of reward).
    """

    prior: float = 1.0
    quantile: float = 0.5

    def __post_init__(self) -> None:
        """Reject settings that describe no method.

        Raises:
            EvaluationInputError: naming the field.
        """
        if not (np.isfinite(self.prior) and self.prior > 0):
            raise EvaluationInputError(f"prior must be finite and > 0, got {self.prior}")
        if not 0.0 < self.quantile < 1.0:
            raise EvaluationInputError(f"quantile must be in (0, 1), got {self.quantile}")


class RandomLPMethod:
    """Random scores in the LP; speaks :class:`~evaluation.experiment.methods.base.Method`.

    Args:
        config: Its (empty) settings.
        context: The world's sizes.
    """

    stochastic = True

    def __init__(self, config: RandomLPConfig, context: MethodContext) -> None:
        self.config = config
        self._sends = 0
        self._reward_sum = 0.0
        self._unsub_sum = 0.0

    def learn(self, rows: Rows, rng: np.random.Generator) -> None:
        """Count the sends, their reward and their unsubscriptions."""
        self._sends += rows.n
        self._reward_sum += float(rows.value.sum())
        self._unsub_sum += float(rows.unsubscribed.sum())

    def plan(self, batch: CandidateBatch, constraints: BatchConstraints, rng: np.random.Generator) -> Plan:
        """Uniform scores on twice the observed means, in the LP.

        Raises:
            EvaluationInputError: if the method has seen no send yet.
        """
        if self._sends == 0:
            raise EvaluationInputError("random_lp must learn from the warm start before it plans")
        mean_reward = max(self._reward_sum / self._sends, 1e-9)
        mean_unsub = max(self._unsub_sum / self._sends, 1e-9)
        reward = rng.uniform(0.0, 2.0 * mean_reward, batch.n_pairs)
        cost = rng.uniform(0.0, 2.0 * mean_unsub, batch.n_pairs)
        solved = solve_lp(batch, constraints, reward, cost)
        return Plan(x=solved.x, reward=reward, cost=cost, elastic=solved.elastic)


class OracleLPMethod:
    """The true expected rewards and costs in the LP; speaks :class:`~evaluation.experiment.methods.base.Method`.

    Args:
        config: Its (empty) settings.
        context: Holds the world whose truth it reads.
    """

    stochastic = False

    def __init__(self, config: OracleLPConfig, context: MethodContext) -> None:
        self.config = config
        self.world: EmailWorld = context.world

    def learn(self, rows: Rows, rng: np.random.Generator) -> None:
        """Nothing to learn."""

    def plan(self, batch: CandidateBatch, constraints: BatchConstraints, rng: np.random.Generator) -> Plan:
        """The LP on the truth."""
        reward, cost = self.world.expected_reward_and_cost(batch)
        solved = solve_lp(batch, constraints, reward, cost[:, 0])
        return Plan(x=solved.x, reward=reward, cost=cost[:, 0], elastic=solved.elastic)


class OracleLevelLPMethod:
    """The truth up to the level of the unsubscription probabilities, learnt from feedback.

    Speaks :class:`~evaluation.experiment.methods.base.Method`. The warm start's sends are
    uniformly random candidates, whose expected unsubscription is the world's base rate
    (``EmailWorldConfig.unsub_rate``, the mean over all pairs); the method's own sends count at
    the true probabilities its plans budgeted for them.

    Args:
        config: Its prior and quantile.
        context: Holds the world whose truth it reads.
    """

    stochastic = False

    def __init__(self, config: OracleLevelLPConfig, context: MethodContext) -> None:
        self.config = config
        self.world: EmailWorld = context.world
        self.pacing = CostPacing(PacingConfig(prior_events=config.prior, quantile=config.quantile))

    def learn(self, rows: Rows, rng: np.random.Generator) -> None:
        """Count the rows' unsubscriptions against their expected number at ``rho = 1``."""
        expected = rows.n * self.world.config.unsub_rate if rows.budgeted_cost is None else rows.budgeted_cost.sum()
        self.pacing = self.pacing.update(float(rows.unsubscribed.sum()), float(expected))

    def level(self) -> float:
        """``rho_q``: the ``quantile`` of ``Gamma(a + R, a + C)``, R realised and C expected
        unsubscriptions (:class:`models.pacing.CostPacing`)."""
        return self.pacing.factor()

    def plan(self, batch: CandidateBatch, constraints: BatchConstraints, rng: np.random.Generator) -> Plan:
        """The LP on the true rewards and ``rho_q`` times the true costs."""
        reward, cost = self.world.expected_reward_and_cost(batch)
        rho = self.level()
        solved = solve_lp(batch, constraints, reward, rho * cost[:, 0])
        return Plan(x=solved.x, reward=reward, cost=cost[:, 0], elastic=solved.elastic, policy={"level": rho})
