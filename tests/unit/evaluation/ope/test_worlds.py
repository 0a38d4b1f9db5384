"""Simulated logs with a known target value, shared by the OPE tests, and the checks that they follow the contract.

A world fixes the rounds, their candidates, the true mean outcome of each pair and both policies'
send probabilities; only the behaviour's sends and the outcomes are drawn per log. The target's
value is then known in closed form, ``(1/n) sum_e target_e mu_e``, for every log of the world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.ope import LoggedPairs, logged_value


@dataclass(frozen=True, eq=False)
class World:
    """Rounds of ``k`` candidates each; ``(n, k)`` arrays of true means and send probabilities.

    Attributes:
        mu: ``(n, k)`` true expected outcome of a pair if sent.
        behaviour: ``(n, k)`` behaviour's marginal send probability.
        target: ``(n, k)`` target's marginal send probability.
        predicted: ``(n, k)`` an outcome model: ``mu`` plus fixed noise.
        single_slot: exactly one pair is sent per round (``behaviour`` rows sum to 1); else each
            pair is sent independently.
    """

    mu: FloatArray
    behaviour: FloatArray
    target: FloatArray
    predicted: FloatArray
    single_slot: bool

    @property
    def n_rounds(self) -> int:
        return int(self.mu.shape[0])

    @property
    def value(self) -> float:
        """The target's expected total outcome per round."""
        return float(np.sum(self.target * self.mu)) / self.n_rounds

    @property
    def behaviour_value(self) -> float:
        return float(np.sum(self.behaviour * self.mu)) / self.n_rounds

    def log(self, rng: np.random.Generator) -> LoggedPairs:
        """One log of the behaviour policy: its sends and Bernoulli outcomes of the sent pairs (NaN elsewhere)."""
        n, k = self.mu.shape
        if self.single_slot:
            action = (rng.random((n, 1)) < np.cumsum(self.behaviour, axis=1)).argmax(axis=1)
            sent = np.zeros((n, k), dtype=bool)
            sent[np.arange(n), action] = True
        else:
            sent = rng.random((n, k)) < self.behaviour
        y = np.where(sent, (rng.random((n, k)) < self.mu).astype(float), np.nan)
        return LoggedPairs(
            round_index=np.repeat(np.arange(n, dtype=np.int64), k),
            n_rounds=n,
            sent=sent.ravel(),
            propensity=self.behaviour.ravel(),
            outcomes={"reward": y.ravel()},
        )

    @property
    def target_pairs(self) -> FloatArray:
        return self.target.ravel()

    @property
    def predicted_pairs(self) -> dict[str, FloatArray]:
        return {"reward": self.predicted.ravel()}


def single_slot_world(n: int, k: int = 4, *, seed: int = 0, model_noise: float = 0.05) -> World:
    """A single-slot world: ``k`` actions per round, behaviour and target drawn per round as softmaxes.

    The target prefers the actions with high ``mu`` (the behaviour does not), so the two policies'
    values differ and a biased estimator shows.
    """
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.05, 0.6, size=(n, k))
    behaviour = _softmax(rng.normal(size=(n, k)) * 0.5)
    behaviour = 0.2 / k + 0.8 * behaviour  # every action logged with probability >= 0.05
    target = _softmax(4.0 * mu + rng.normal(size=(n, k)) * 0.3)
    predicted = np.clip(mu + rng.normal(scale=model_noise, size=(n, k)), 0.0, 1.0)
    return World(mu=mu, behaviour=behaviour, target=target, predicted=predicted, single_slot=True)


def multi_send_world(n: int, k: int = 5, *, seed: int = 0) -> World:
    """Rounds of ``k`` candidates, each sent independently by the behaviour with its own probability."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.05, 0.5, size=(n, k))
    behaviour = rng.uniform(0.1, 0.7, size=(n, k))
    target = np.clip(2.0 * mu + rng.uniform(-0.1, 0.1, size=(n, k)), 0.0, 1.0)
    predicted = np.clip(mu + rng.normal(scale=0.05, size=(n, k)), 0.0, 1.0)
    return World(mu=mu, behaviour=behaviour, target=target, predicted=predicted, single_slot=False)


def _softmax(z: FloatArray) -> FloatArray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def test_single_slot_world_sends_one_pair_per_round_at_the_behaviour_rates() -> None:
    world = single_slot_world(50, seed=1)
    rng = np.random.default_rng(2)
    logs = [world.log(rng) for _ in range(2000)]
    sends = np.stack([log.sent.reshape(50, 4) for log in logs])
    assert (sends.sum(axis=2) == 1).all()
    # Binomial(2000, p) frequencies: 5 standard errors of the worst of 200 pairs.
    se = np.sqrt(world.behaviour * (1 - world.behaviour) / 2000)
    assert np.abs(sends.mean(axis=0) - world.behaviour).max() < 5 * se.max()


def test_multi_send_world_sends_pairs_independently_at_their_rates() -> None:
    world = multi_send_world(40, seed=3)
    rng = np.random.default_rng(4)
    sends = np.stack([world.log(rng).sent.reshape(40, 5) for _ in range(2000)])
    se = np.sqrt(world.behaviour * (1 - world.behaviour) / 2000)
    assert np.abs(sends.mean(axis=0) - world.behaviour).max() < 5 * se.max()
    # Independence within a round: P(both of the first two sent) = p0 p1.
    both = (sends[:, :, 0] & sends[:, :, 1]).mean(axis=0)
    expected = world.behaviour[:, 0] * world.behaviour[:, 1]
    assert np.abs(both - expected).max() < 5 * np.sqrt(expected * (1 - expected) / 2000).max()


def test_the_observed_value_of_the_logs_averages_to_the_behaviour_value() -> None:
    world = single_slot_world(200, seed=5)
    rng = np.random.default_rng(6)
    observed = np.array([logged_value(world.log(rng), "reward") for _ in range(500)])
    assert abs(observed.mean() - world.behaviour_value) < 3 * observed.std(ddof=1) / np.sqrt(500)
    assert abs(world.value - world.behaviour_value) > 0.05  # the target is worth evaluating
