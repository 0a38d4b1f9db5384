"""The two reference methods: ``random_lp`` (random scores in the LP) and ``oracle_lp`` (the truth in it).

``random_lp`` learns nothing but the scale of what it draws: the mean reward per send ``r`` and
the unsubscription rate ``c`` of every send it has seen; its scores are uniform on ``[0, 2r]``
and ``[0, 2c]``, drawn anew for every batch. The LP then keeps the budget and the provider rows
on random costs: a baseline of what constraints alone achieve without a model.

``oracle_lp`` solves each batch's LP on the true expected rewards and costs (the regret
benchmark), through the same LP path as every other method; its oracle fraction is 1 up to
the LP's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.email_world import BatchConstraints, CandidateBatch, EmailWorld
from evaluation.errors import EvaluationInputError
from evaluation.experiment.batches import Rows
from evaluation.experiment.lp import solve_lp
from evaluation.experiment.methods.base import MethodContext, Plan


@dataclass(frozen=True, kw_only=True)
class RandomLPConfig:
    """random_lp's settings (none: the scale of its scores is learnt)."""


@dataclass(frozen=True, kw_only=True)
class OracleLPConfig:
    """oracle_lp's settings (none)."""


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
