"""The contract every method of the experiment speaks, and what a method returns for a batch.

A method is built from its frozen configuration and a :class:`MethodContext`, then driven by
the experiment loop (:mod:`evaluation.experiment.runner`):

* :meth:`Method.learn` once with the warm-start history and after every batch with that batch's
  sends and their outcomes (the rows are new ones; a method keeps what it needs);
* :meth:`Method.plan` once per batch: the fractional allocation ``x`` its sends are drawn from,
  the coefficients it decided on, and, for a method with a model, what the model believed
  (:class:`Estimates`, for the diagnostics). A stochastic method is planned again with other
  generators on the same model to measure its allocation variance, so ``plan`` must not change
  the method's state.

Every array is over the batch's ``E`` candidate pairs, in the batch's order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.email_batch import BatchConstraints, CandidateBatch
from evaluation.email_world import EmailWorld
from evaluation.experiment.batches import Rows


@dataclass(frozen=True, eq=False)
class Estimates:
    """What a method's model believed about each pair of a batch, each ``(E,)`` float64.

    Attributes:
        unsub_predicted: The model's uncalibrated mean unsubscription probability.
        unsub_calibrated: Its calibrated mean (the uncalibrated one when there is no calibration).
        unsub_decision: The unsubscription cost the decision used (the calibrated Thompson
            sample for BanditLP, the calibrated mean for NN-LP).
        conversion: The calibrated mean conversion probability, or None when the method does not
            model conversion (LinUCB models the reward of a send directly).
        version_spread: Outcome -> RMS change of the mean logit between the previous model
            version and this one over the batch's pairs, divided by the RMS posterior std of the
            logit (this version's); empty when there is no previous version.
    """

    unsub_predicted: FloatArray
    unsub_calibrated: FloatArray
    unsub_decision: FloatArray
    conversion: FloatArray | None = None
    version_spread: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Plan:
    """A method's decision for one batch.

    Attributes:
        x: ``(E,)`` plan in [0, 1]: each pair's send probability (the sends are drawn from it by
            systematic sampling, ``allocator.round_allocation(..., "sample")``).
        reward: ``(E,)`` the reward coefficients the decision maximised.
        cost: ``(E,)`` the unsubscription cost estimates the budget holds on (before a pacing
            factor; the estimates of a method that does not budget). The sent pairs' values come
            back to the method as :attr:`Rows.budgeted_cost <evaluation.experiment.batches.Rows>`.
        elastic: True when the LP was infeasible on the method's coefficients and solved elastic.
        estimates: The model's beliefs, or None for a method without a model.
        policy: Scalars of the decision rule worth a series of their own (a pacing factor, a
            budget scale), by name; they become the measures ``policy.<name>``. Every plan of a
            method must report the same names.
    """

    x: FloatArray
    reward: FloatArray
    cost: FloatArray
    elastic: bool = False
    estimates: Estimates | None = None
    policy: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class MethodContext:
    """What a method may know about the world it runs in.

    Attributes:
        feature_dim: Width of the pair features.
        world: The simulated world; only the oracle may read its truth.
    """

    feature_dim: int
    world: EmailWorld


class Method(Protocol):
    """One decision policy with its learner (see the module docstring)."""

    #: True when :meth:`plan` depends on its generator (its allocation variance is measured).
    stochastic: bool

    def learn(self, rows: Rows, rng: np.random.Generator) -> None:
        """Absorb new observed sends, oldest first.

        Args:
            rows: The new rows.
            rng: This step's generator (e.g. the training seed).
        """
        ...

    def plan(self, batch: CandidateBatch, constraints: BatchConstraints, rng: np.random.Generator) -> Plan:
        """Decide one batch without changing the method's state.

        Args:
            batch: The candidates.
            constraints: The batch's right-hand sides.
            rng: This plan's generator.

        Returns:
            The plan.
        """
        ...
