"""What every method of an experiment shares: the batches with their truth and oracle, the
logged warm-start history, and the outcomes of every pair.

A batch's candidates, constraints, true coefficients and oracle depend on the world alone, so
they are computed once per batch index and shared by every seed and method (:class:`BatchBook`).
The warm start and the outcomes depend on the seed too, and are the same for every method of a
seed (the streams :data:`seeding.WARM_START` and :data:`seeding.OUTCOMES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditlp.arrays import BoolArray, Float32Array, FloatArray
from evaluation.email_batch import BatchConstraints, CandidateBatch
from evaluation.email_world import EmailWorld
from evaluation.errors import EvaluationInputError
from evaluation.experiment.seeding import OUTCOMES, WARM_START, generator
from evaluation.health.shift import world_at

#: Batch indices the warm start logs from: far from the ones a run plays (0, 1, ...); the same
#: as the streamed warm start's (streams.simulate.warm_start.FIRST_LOGGED_BATCH).
FIRST_LOGGED_BATCH = 1_000_000


@dataclass(frozen=True, eq=False)
class BatchTruth:
    """One batch with its constraints, true coefficients and oracle.

    Attributes:
        batch: The candidates (``E`` pairs).
        constraints: The right-hand sides every method's LP has.
        reward: ``(E,)`` true expected reward of a send (``p_conversion * value``).
        p_conversion: ``(E,)`` true conversion probability.
        p_unsub: ``(E,)`` true unsubscription probability.
        oracle_objective: The oracle LP's expected reward.
    """

    batch: CandidateBatch
    constraints: BatchConstraints
    reward: FloatArray
    p_conversion: FloatArray
    p_unsub: FloatArray
    oracle_objective: float


@dataclass(frozen=True, eq=False)
class Rows:
    """Observed sends, oldest first: what a method learns from. ``n`` rows.

    Attributes:
        features: ``(n, d)`` float32 pair features.
        converted: ``(n,)`` float64 0/1.
        unsubscribed: ``(n,)`` float64 0/1.
        value: ``(n,)`` float64 realised value (0 where not converted).
        budgeted_cost: ``(n,)`` float64 the unsubscription cost the deciding plan budgeted for
            each send (:attr:`Plan.cost <evaluation.experiment.methods.base.Plan>`), or None for
            logged sends no plan of the method chose.
    """

    features: Float32Array
    converted: FloatArray
    unsubscribed: FloatArray
    value: FloatArray
    budgeted_cost: FloatArray | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.converted.shape[0])

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        """The rows of ``parts`` one after the other (at least one part); budgeted costs only when
        every part has them."""
        costs = [p.budgeted_cost for p in parts]
        return Rows(
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.converted for p in parts]),
            np.concatenate([p.unsubscribed for p in parts]),
            np.concatenate([p.value for p in parts]),
            None if any(c is None for c in costs) else np.concatenate([c for c in costs if c is not None]),
        )

    def take(self, index: np.ndarray) -> Rows:
        """The rows at ``index`` (an int array or a boolean mask)."""
        cost = None if self.budgeted_cost is None else self.budgeted_cost[index]
        return Rows(self.features[index], self.converted[index], self.unsubscribed[index], self.value[index], cost)


@dataclass(frozen=True, eq=False)
class Outcomes:
    """What sending each pair of a batch would give, drawn once for all methods of a seed.

    Attributes:
        converted: ``(E,)`` bool.
        unsubscribed: ``(E,)`` bool.
        value: ``(E,)`` realised value (0 where not converted).
    """

    converted: BoolArray
    unsubscribed: BoolArray
    value: FloatArray


class BatchBook:
    """The batches of one world, each computed on first use and kept.

    Args:
        world: The simulated world.
    """

    def __init__(self, world: EmailWorld) -> None:
        self.world = world
        self._truth: dict[int, BatchTruth] = {}

    def truth(self, index: int) -> BatchTruth:
        """Batch ``index`` with its constraints, truth and oracle (the oracle solved once).

        Raises:
            OracleInfeasible: if the world's batch has no feasible allocation.
        """
        if index not in self._truth:
            # A shifted world (the drift experiment) plays this batch in the world of its index.
            world = world_at(self.world, index)
            batch = world.candidates(index)
            constraints = world.constraints(batch)
            p_conv, p_unsub, value = world.true_probabilities(batch.pair_user, batch.pair_item)
            oracle = world.oracle(batch, constraints)
            self._truth[index] = BatchTruth(batch, constraints, p_conv * value, p_conv, p_unsub, oracle.objective)
        return self._truth[index]

    def outcomes(self, seed: int, index: int) -> Outcomes:
        """The outcomes of every pair of batch ``index`` in seed ``seed``.

        Drawing them for every pair (not only the sent ones) is distributed as drawing them for
        the sent pairs alone, pair by pair independent, and makes them common to the methods.
        """
        batch = self.truth(index).batch
        converted, unsubscribed, value = world_at(self.world, index).draw_outcomes(
            batch.pair_user, batch.pair_item, generator(seed, OUTCOMES, index, "outcomes")
        )
        return Outcomes(converted, unsubscribed, value)

    def warm_start(self, seed: int, n_rows: int) -> Rows:
        """The logged history every method of seed ``seed`` starts from.

        One uniformly random candidate per user of the batches ``FIRST_LOGGED_BATCH, +1, ...``
        (as the streamed warm start logs), until ``n_rows`` sends; the last batch's users are
        taken in id order.

        Args:
            seed: The experiment seed.
            n_rows: Logged sends (>= 1).

        Returns:
            ``n_rows`` rows.

        Raises:
            EvaluationInputError: if ``n_rows < 1``.
        """
        if n_rows < 1:
            raise EvaluationInputError(f"the warm start needs at least one row, got {n_rows}")
        parts: list[Rows] = []
        have = 0
        b = 0
        while have < n_rows:
            batch = self.world.candidates(FIRST_LOGGED_BATCH + b)
            rng = generator(seed, WARM_START, b, "log")
            starts = np.flatnonzero(np.r_[True, np.diff(batch.pair_user) != 0])
            sizes = np.diff(np.r_[starts, batch.n_pairs])
            idx = starts + (rng.random(starts.size) * sizes).astype(np.int64)
            idx = idx[: n_rows - have]
            converted, unsubscribed, value = self.world.draw_outcomes(batch.pair_user[idx], batch.pair_item[idx], rng)
            parts.append(Rows(batch.features[idx], converted.astype(float), unsubscribed.astype(float), value))
            have += idx.size
            b += 1
        return Rows.concat(parts)
