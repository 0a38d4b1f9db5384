"""Synthetic worlds for the chapter's experiment: a linear-Gaussian one and a nonlinear one.

Both draw a fresh feature row per action every round, ``x_{a,t} ~ N(0, I_d / d)``·scale, and
keep the world's parameters (fixed by ``world_seed``) apart from the episode's randomness (fixed
by ``reset(seed)``), so seeds repeat the policy's randomness on the same world.

* :class:`LinearGaussianWorld`: ``r = x_aᵀθ + ε``, ``ε ~ N(0, noise²)``, θ shared by every action
  (the model of chapter §4) or, with ``per_arm=True``, one θ_a per action (§2).
* :class:`NonlinearWorld`: a single-index model through a nonlinear link ``g``:
  ``P(r = 1) = g(x_aᵀθ)`` with Bernoulli rewards (``link="logistic"``, chapter §5 "Binary
  rewards", ``g(u) = σ(scale·u)``), or ``r = sin(scale·x_aᵀθ) + ε`` (``link="sin"``, a reward
  that no linear model ranks correctly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.bandits.environment import Round
from evaluation.errors import EvaluationInputError


def _check(n_actions: int, dim: int) -> None:
    if int(n_actions) < 2:
        raise EvaluationInputError(f"n_actions must be >= 2, got {n_actions}")
    if int(dim) < 1:
        raise EvaluationInputError(f"dim must be >= 1, got {dim}")


@dataclass
class LinearGaussianWorld:
    """Linear rewards with Gaussian noise (module docstring).

    Attributes:
        n_actions: K actions per round.
        dim: d features per row.
        noise: std of the reward noise.
        per_arm: one θ_a per action instead of one shared θ.
        world_seed: fixes θ.
    """

    n_actions: int = 10
    dim: int = 5
    noise: float = 0.5
    per_arm: bool = False
    world_seed: int = 0
    _theta: FloatArray = field(init=False, repr=False)
    _gen: np.random.Generator = field(init=False, repr=False)
    _expected: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check(self.n_actions, self.dim)
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise EvaluationInputError(f"noise must be finite and >= 0, got {self.noise}")
        shape = (self.n_actions, self.dim) if self.per_arm else (self.dim,)
        self._theta = np.random.default_rng([self.world_seed, 0]).normal(size=shape)
        self.reset(0)

    def reset(self, seed: int) -> None:
        """Restart the episode's rounds and rewards from ``seed``."""
        self._gen = np.random.default_rng([self.world_seed, 1, seed])
        self._expected = np.zeros(self.n_actions)

    def next_round(self) -> Round:
        """(K, d) features and their (K,) expected rewards."""
        X = self._gen.normal(size=(self.n_actions, self.dim)) / np.sqrt(self.dim)
        mu = np.einsum("kd,kd->k", X, self._theta) if self.per_arm else X @ self._theta
        self._expected = mu
        return Round(features=X, expected=mu)

    def reward(self, action: int) -> float:
        """``x_aᵀθ + ε``."""
        return float(self._expected[action] + self.noise * self._gen.standard_normal())


@dataclass
class NonlinearWorld:
    """A single-index model through a logistic or sine link (module docstring).

    Attributes:
        n_actions: K actions per round.
        dim: d features per row.
        link: ``"logistic"`` (Bernoulli rewards) or ``"sin"`` (Gaussian noise).
        scale: the slope applied to ``x_aᵀθ`` before the link.
        noise: std of the noise of the ``"sin"`` link.
        world_seed: fixes θ.
    """

    n_actions: int = 10
    dim: int = 5
    link: str = "logistic"
    scale: float = 3.0
    noise: float = 0.5
    world_seed: int = 0
    _theta: FloatArray = field(init=False, repr=False)
    _gen: np.random.Generator = field(init=False, repr=False)
    _expected: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check(self.n_actions, self.dim)
        if self.link not in ("logistic", "sin"):
            raise EvaluationInputError(f"link must be 'logistic' or 'sin', got {self.link!r}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise EvaluationInputError(f"scale must be finite and > 0, got {self.scale}")
        theta = np.random.default_rng([self.world_seed, 0]).normal(size=self.dim)
        self._theta = theta / np.linalg.norm(theta)
        self.reset(0)

    def reset(self, seed: int) -> None:
        """Restart the episode's rounds and rewards from ``seed``."""
        self._gen = np.random.default_rng([self.world_seed, 1, seed])
        self._expected = np.zeros(self.n_actions)

    def next_round(self) -> Round:
        """(K, d) features and their (K,) expected rewards ``g(x_aᵀθ)``."""
        X = self._gen.normal(size=(self.n_actions, self.dim))
        u = self.scale * (X @ self._theta)
        mu = 1.0 / (1.0 + np.exp(-u)) if self.link == "logistic" else np.sin(u)
        self._expected = mu
        return Round(features=X, expected=mu)

    def reward(self, action: int) -> float:
        """A Bernoulli draw of ``g(x_aᵀθ)`` (logistic) or ``sin(·) + ε``."""
        p = float(self._expected[action])
        if self.link == "logistic":
            return float(self._gen.random() < p)
        return p + self.noise * float(self._gen.standard_normal())


def linear_gaussian(**kwargs: object) -> LinearGaussianWorld:
    """Factory for ``--env evaluation.bandits.worlds:linear_gaussian``."""
    return LinearGaussianWorld(**kwargs)  # type: ignore[arg-type]


def nonlinear(**kwargs: object) -> NonlinearWorld:
    """Factory for ``--env evaluation.bandits.worlds:nonlinear``."""
    return NonlinearWorld(**kwargs)  # type: ignore[arg-type]
