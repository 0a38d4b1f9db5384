"""The three tuning methods compared at the same budget: the GP Thompson tuner, random search, grid search.

Each method, given the observations so far, proposes the settings of the next round and, at the end,
states its final distribution over settings (the traffic split it would ship):

* ``tuner``: the first round is uniform random over the box (no model yet); every later round draws its
  settings from the Thompson distribution of :func:`models.tuner.thompson.thompson_distribution` on all
  observations so far (the seed's loop: split the traffic by F_t, observe, refit). Its final distribution
  is that distribution on all observations.
* ``random_search``: every round is uniform random over the box.
* ``grid_search``: a ``k × k`` grid with ``k = ⌊√budget⌋`` (the rest of the budget at random when the budget
  is not a square), one point per cell at the same offset in every cell, the offset drawn uniformly per
  seed (a randomly shifted grid), in a seeded random order across rounds. Whether a grid finds the
  near-best region depends on where the optimum sits relative to its points: a fixed cell-centred grid
  wins every seed or loses every seed by that accident of placement; the shift averages over it.

The baselines' final distribution is a point mass on the observed setting with the best *observed*
primary among those whose *observed* guardrails pass: what an engineer reading the A/B results would
ship. It is the fair counterpart of the tuner's distribution (both use only the noisy observations) and the
strongest simple choice: a uniform split over every observed-feasible setting would put most of its mass
far from the optimum. The mass near the best is then 1 or 0 per seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.errors import EvaluationInputError
from evaluation.tuning.problem import SyntheticProblem
from models.tuner.config import TunerConfig
from models.tuner.thompson import ParameterDistribution, satisfied, thompson_distribution

METHODS = ("tuner", "random_search", "grid_search")


class Method(Protocol):
    """A tuning method on one problem and one seed."""

    def propose(self, X: FloatArray, Y: FloatArray, k: int) -> FloatArray:
        """(k, d) the settings of the next round, given the (n, d) settings and (n, 3) metrics observed so far."""
        ...

    def final(self, X: FloatArray, Y: FloatArray) -> ParameterDistribution:
        """The distribution the method ships after the budget."""
        ...


def _uniform(problem: SyntheticProblem, k: int, rng: np.random.Generator) -> FloatArray:
    lo = np.array([b[0] for b in problem.bounds])
    hi = np.array([b[1] for b in problem.bounds])
    pts: FloatArray = lo + rng.uniform(size=(k, len(lo))) * (hi - lo)
    return pts


def best_observed_feasible(problem: SyntheticProblem, X: FloatArray, Y: FloatArray) -> ParameterDistribution:
    """A point mass on the setting with the best observed primary among the observed-feasible ones
    (the best observed primary overall when none passes)."""
    ok = np.ones(X.shape[0], dtype=bool)
    for i, rail in enumerate(problem.guardrails):
        ok &= satisfied(Y[:, 1 + i], rail).astype(bool)
    score = np.where(ok, Y[:, 0], -np.inf) if ok.any() else Y[:, 0]
    k = int(np.argmax(score))
    return ParameterDistribution.of(X[k : k + 1], [1.0])


@dataclass
class TunerMethod:
    """The GP Thompson tuner (round 1 uniform, then settings drawn from the Thompson distribution).

    ``history`` keeps every step's distribution, in order (the last is the final one).
    """

    problem: SyntheticProblem
    config: TunerConfig
    rng: np.random.Generator
    history: list[ParameterDistribution] = field(default_factory=list)

    def _distribution(self, X: FloatArray, Y: FloatArray) -> ParameterDistribution:
        # fresh draws per step over the same Sobol candidates (config.seed fixed, config.step counting)
        dist = thompson_distribution(X, Y, replace(self.config, step=len(self.history) + 1))
        self.history.append(dist)
        return dist

    def propose(self, X: FloatArray, Y: FloatArray, k: int) -> FloatArray:
        if X.shape[0] == 0:
            return _uniform(self.problem, k, self.rng)
        return self._distribution(X, Y).sample(k, self.rng)

    def final(self, X: FloatArray, Y: FloatArray) -> ParameterDistribution:
        return self._distribution(X, Y)


@dataclass
class RandomSearch:
    """Uniform settings every round; ships the best observed-feasible one."""

    problem: SyntheticProblem
    rng: np.random.Generator

    def propose(self, X: FloatArray, Y: FloatArray, k: int) -> FloatArray:
        return _uniform(self.problem, k, self.rng)

    def final(self, X: FloatArray, Y: FloatArray) -> ParameterDistribution:
        return best_observed_feasible(self.problem, X, Y)


@dataclass
class GridSearch:
    """A randomly shifted grid of the budget, in a seeded order; ships the best observed-feasible setting."""

    problem: SyntheticProblem
    rng: np.random.Generator
    budget: int

    def __post_init__(self) -> None:
        side = math.isqrt(self.budget)
        lo = np.array([b[0] for b in self.problem.bounds])
        hi = np.array([b[1] for b in self.problem.bounds])
        offset = self.rng.uniform(size=2)
        A, G = np.meshgrid((np.arange(side) + offset[0]) / side, (np.arange(side) + offset[1]) / side, indexing="ij")
        grid = lo + np.column_stack([A.ravel(), G.ravel()]) * (hi - lo)
        extra = _uniform(self.problem, self.budget - side * side, self.rng)
        self._queue = np.vstack([grid[self.rng.permutation(grid.shape[0])], extra])

    def propose(self, X: FloatArray, Y: FloatArray, k: int) -> FloatArray:
        n = X.shape[0]
        if n + k > self._queue.shape[0]:
            raise EvaluationInputError(f"grid search has {self._queue.shape[0]} settings, asked for {n + k}")
        return np.asarray(self._queue[n : n + k])

    def final(self, X: FloatArray, Y: FloatArray) -> ParameterDistribution:
        return best_observed_feasible(self.problem, X, Y)


def make_method(
    name: str, problem: SyntheticProblem, config: TunerConfig, budget: int, seed: int
) -> TunerMethod | RandomSearch | GridSearch:
    """The named method with its own generator, seeded by (seed, method)."""
    if name not in METHODS:
        raise EvaluationInputError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    rng = np.random.default_rng([seed, METHODS.index(name)])
    if name == "tuner":
        return TunerMethod(problem, config, rng)
    if name == "random_search":
        return RandomSearch(problem, rng)
    if name == "grid_search":
        return GridSearch(problem, rng, budget)
    raise AssertionError(name)
