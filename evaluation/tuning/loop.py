"""The tuning loop at a fixed budget, and the two scores of each method on each seed.

A run spends ``budget`` observations in ``rounds`` equal rounds: each round the method proposes its
settings (:mod:`evaluation.tuning.methods`) and observes their noisy metrics; after the last round the
method states its final distribution. Scores, against the grid truth (:func:`~evaluation.tuning.problem.grid_truth`):

* ``mass_near_best_feasible``: the probability the final distribution puts on settings that are truly
  feasible and within ``near`` (5%) of the best feasible primary value f*.
* ``best_feasible_found``: the true primary value of the best truly feasible setting among those observed
  (``None`` when no observed setting was feasible): how close the search came, whatever it ships.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.errors import EvaluationInputError
from evaluation.tuning.methods import TunerMethod, make_method
from evaluation.tuning.problem import GridTruth, SyntheticProblem, near_best_feasible
from models.tuner.config import TunerConfig
from models.tuner.thompson import ParameterDistribution


@dataclass(frozen=True)
class LoopConfig:
    """The budget and the tuner's Thompson settings.

    Attributes:
        budget: observations per run (every method gets the same).
        rounds: rounds the budget is spent in (``budget`` must be a multiple).
        lam: λ of the tuner's utility.
        n_samples: S, the tuner's joint draws per step.
        n_candidates: the tuner's Sobol candidates.
    """

    budget: int = 64
    rounds: int = 8
    lam: float = 100.0
    n_samples: int = 1024
    n_candidates: int = 512

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.budget < self.rounds or self.budget % self.rounds:
            raise EvaluationInputError(f"budget ({self.budget}) must be a positive multiple of rounds ({self.rounds})")

    def tuner_config(self, problem: SyntheticProblem, seed: int) -> TunerConfig:
        """The tuner's configuration on ``problem`` (noise learned, not given)."""
        return TunerConfig(
            bounds=problem.bounds,
            guardrails=problem.guardrails,
            lam=self.lam,
            n_samples=self.n_samples,
            n_candidates=self.n_candidates,
            seed=seed,
        )


@dataclass(frozen=True, eq=False)
class MethodRun:
    """One method's run on one seed.

    Attributes:
        X: (budget, 2) the observed settings, in order.
        Y: (budget, 3) their noisy metrics.
        final: the distribution the method ships.
        history: the tuner's distribution at every step, the final one last (empty for the baselines).
    """

    method: str
    seed: int
    X: FloatArray
    Y: FloatArray
    final: ParameterDistribution
    history: tuple[ParameterDistribution, ...] = ()


@dataclass(frozen=True)
class SeedScore:
    """The two scores of one run (see the module docstring)."""

    mass_near_best_feasible: float
    best_feasible_found: float | None


def run_method(
    problem: SyntheticProblem,
    method: str,
    seed: int,
    config: LoopConfig,
    on_round: Callable[[int], None] | None = None,
) -> MethodRun:
    """Spend the budget in rounds with one method; the observation noise is seeded by ``seed`` alone.

    Args:
        on_round: called with the round's index after each round (a progress bar).
    """
    m = make_method(method, problem, config.tuner_config(problem, seed), config.budget, seed)
    noise = np.random.default_rng([seed, 99])
    per_round = config.budget // config.rounds
    X = np.empty((0, 2))
    Y = np.empty((0, 3))
    for r in range(config.rounds):
        x_new = m.propose(X, Y, per_round)
        X = np.vstack([X, x_new])
        Y = np.vstack([Y, problem.observe(x_new, noise)])
        if on_round is not None:
            on_round(r)
    final = m.final(X, Y)
    history = tuple(m.history) if isinstance(m, TunerMethod) else ()
    return MethodRun(method, seed, X, Y, final, history)


def score(problem: SyntheticProblem, truth: GridTruth, run: MethodRun) -> SeedScore:
    """The run's mass near the best feasible value and the best feasible primary it observed."""
    near = near_best_feasible(problem, truth, run.final.points)
    mass = float(run.final.probs[near].sum())
    feas = problem.feasible(run.X)
    best = float(problem.metrics(run.X[feas])[:, 0].max()) if feas.any() else None
    return SeedScore(mass_near_best_feasible=mass, best_feasible_found=best)
