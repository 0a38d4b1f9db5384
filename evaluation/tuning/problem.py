"""A synthetic constrained tuning problem with known metric functions, shaped like the seed's notification case.

x = (a, γ) in the box [0, 2] × [0, 1]: a weight between two model scores and a send threshold. With
``s = a / 2`` and ``t = γ`` (the unit square):

    primary    f_1(x) = exp(−((s − s₀)² + (t − t₀)²) / (2 w²))            (sessions; maximise)
    guardrail  f_2(x) = 0.3 + 0.5 t − 0.15 s²            ≥ c_2            (CTR-like: a higher threshold helps)
    guardrail  f_3(x) = s + 0.5 (1 − t)²                  ≤ c_3            (send-volume-like)

The primary has one smooth optimum, at (s₀, t₀) = (0.75, 0.25) by default, where both guardrails fail: the
best feasible setting lies on the guardrails' boundary, where the primary is still steep, the realistic
and hard case (a primary whose optimum were feasible and flat would make "within 5%" a large region). Each
observation adds independent Gaussian noise to every metric. The truth (best feasible primary value, the
feasible and near-best regions) is computed on a dense grid, never from a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import BoolArray, FloatArray
from evaluation.errors import EvaluationInputError
from models.tuner.config import Guardrail


@dataclass(frozen=True)
class SyntheticProblem:
    """The problem's constants; the defaults are the ones ``banditlp tune --synthetic`` runs.

    Attributes:
        peak: (s₀, t₀), the primary's unconstrained optimum in unit coordinates.
        width: w, the primary's length scale in unit coordinates.
        c_ctr: c_2, the floor of the CTR-like guardrail.
        c_volume: c_3, the ceiling of the send-volume-like guardrail.
        noise_sd: the observation noise's standard deviation of (f_1, f_2, f_3).
        near: the tolerance of "near the best": f_1(x) ≥ (1 − near) · f*.
        grid: points per axis of the dense grid the truth is computed on.
    """

    peak: tuple[float, float] = (0.75, 0.25)
    width: float = 0.35
    c_ctr: float = 0.38
    c_volume: float = 1.0
    noise_sd: tuple[float, float, float] = (0.03, 0.01, 0.02)
    near: float = 0.05
    grid: int = 801

    def __post_init__(self) -> None:
        if not (self.width > 0 and 0 < self.near < 1 and self.grid >= 11):
            raise EvaluationInputError("width must be > 0, near in (0, 1), grid >= 11")
        if len(self.noise_sd) != 3 or any(not (math.isfinite(s) and s >= 0) for s in self.noise_sd):
            raise EvaluationInputError(f"noise_sd must be three non-negative values, got {self.noise_sd}")

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        """The box of x = (a, γ)."""
        return ((0.0, 2.0), (0.0, 1.0))

    @property
    def guardrails(self) -> tuple[Guardrail, ...]:
        """The two constraints, as the tuner is told them."""
        return (Guardrail(self.c_ctr, ">="), Guardrail(self.c_volume, "<="))

    def metrics(self, X: ArrayLike) -> FloatArray:
        """(n, 3) the true (f_1, f_2, f_3) at (n, 2) settings."""
        Xa = np.asarray(X, dtype=np.float64).reshape(-1, 2)
        s, t = Xa[:, 0] / 2.0, Xa[:, 1]
        f1 = np.exp(-((s - self.peak[0]) ** 2 + (t - self.peak[1]) ** 2) / (2.0 * self.width**2))
        f2 = 0.3 + 0.5 * t - 0.15 * s**2
        f3 = s + 0.5 * (1.0 - t) ** 2
        return np.column_stack([f1, f2, f3])

    def feasible(self, X: ArrayLike) -> BoolArray:
        """(n,) whether each setting truly meets both guardrails."""
        m = self.metrics(X)
        ok: BoolArray = (m[:, 1] >= self.c_ctr) & (m[:, 2] <= self.c_volume)
        return ok

    def observe(self, X: ArrayLike, rng: np.random.Generator) -> FloatArray:
        """(n, 3) noisy metrics at (n, 2) settings: the truth plus independent Gaussian noise."""
        m = self.metrics(X)
        return m + rng.standard_normal(m.shape) * np.asarray(self.noise_sd)

    def grid_points(self) -> FloatArray:
        """(grid², 2) the dense grid over the box."""
        a = np.linspace(0.0, 2.0, self.grid)
        g = np.linspace(0.0, 1.0, self.grid)
        A, G = np.meshgrid(a, g, indexing="ij")
        return np.column_stack([A.ravel(), G.ravel()])


@dataclass(frozen=True)
class GridTruth:
    """The problem's answer on the dense grid.

    Attributes:
        best_value: f*, the best feasible primary value.
        best_x: (2,) where it is attained.
        feasible_share: the share of the box that is feasible.
        near_share: the share of the box that is feasible and within ``near`` of f*.
        unconstrained_best: the primary's maximum over the box, ignoring the guardrails.
    """

    best_value: float
    best_x: tuple[float, float]
    feasible_share: float
    near_share: float
    unconstrained_best: float


def grid_truth(problem: SyntheticProblem) -> GridTruth:
    """The best feasible primary value and the regions' sizes, by evaluating every grid point."""
    pts = problem.grid_points()
    f1 = problem.metrics(pts)[:, 0]
    feas = problem.feasible(pts)
    if not feas.any():
        raise EvaluationInputError("no grid point is feasible: the guardrails exclude the whole box")
    masked = np.where(feas, f1, -np.inf)
    k = int(np.argmax(masked))
    best = float(masked[k])
    near = feas & (f1 >= best - problem.near * abs(best))
    return GridTruth(
        best_value=best,
        best_x=(float(pts[k, 0]), float(pts[k, 1])),
        feasible_share=float(feas.mean()),
        near_share=float(near.mean()),
        unconstrained_best=float(f1.max()),
    )


def near_best_feasible(problem: SyntheticProblem, truth: GridTruth, X: ArrayLike) -> BoolArray:
    """(n,) whether each setting is truly feasible and has ``f_1 ≥ f* − near · |f*|``."""
    f1 = problem.metrics(X)[:, 0]
    ok: BoolArray = problem.feasible(X) & (f1 >= truth.best_value - problem.near * abs(truth.best_value))
    return ok
