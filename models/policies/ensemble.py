"""``ensemble_ts``: a bootstrapped ensemble of linear heads (chapter §7.1) with randomised priors.

M ridge heads over every row of the round (a shared model, as chapter §4). Each observation
enters member m with a bootstrap weight ``w_m ~ Poisson(1)`` (the online bootstrap of Osband et
al. 2016), so the members see different resamples of the data; each member also starts from its
own prior mean ``θ₀_m ~ N(0, λ⁻¹I)`` (randomised prior functions, Osband et al. 2018), without
which all members would agree before the first observation and explore nothing:

    A_m = λI + Σ_s w_{m,s} x_s x_sᵀ/σ²,    b_m = λθ₀_m + Σ_s w_{m,s} r_s x_s/σ²,    θ_m = A_m⁻¹ b_m.

The weights of observation s are ``default_rng([seed, s]).poisson(1, M)`` (the contract's
learning generator), so :meth:`EnsembleTS.batch_posterior` rebuilds the same ensemble in one
batch. Rules: ``mode="ts"`` samples one member uniformly and takes its predictions (the
chapter's "Thompson Sampling variant"); ``mode="ucb"`` takes ``mean + β·std`` over the members.
Both propensities are closed form: ``(1/M) Σ_m 1[a ∈ argmax_m] / #ties_m`` for TS, the argmax
for UCB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditlp.arrays import FloatArray
from models.errors import ModelInputError
from models.inputs import check_positive
from models.policies.base import Policy, PolicyParams, Scores, argmax_set
from models.policies.registry import register


@dataclass(frozen=True)
class EnsembleParams(PolicyParams):
    """Attributes:
    members: M ≥ 2 heads.
    mode: ``"ts"`` (sample a member) or ``"ucb"`` (mean + β·spread).
    beta: UCB width β ≥ 0 (``mode="ucb"``).
    prior_precision: λ > 0 of every member's prior.
    noise_variance: σ² > 0.
    """

    members: int = 10
    mode: str = "ts"
    beta: float = 1.0
    prior_precision: float = 1.0
    noise_variance: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.members, bool) or int(self.members) != self.members or self.members < 2:
            raise ModelInputError(f"members must be an integer >= 2, got {self.members!r}")
        if self.mode not in ("ts", "ucb"):
            raise ModelInputError(f"mode must be 'ts' or 'ucb', got {self.mode!r}")
        if not (np.isfinite(self.beta) and self.beta >= 0):
            raise ModelInputError(f"beta must be finite and >= 0, got {self.beta!r}")
        check_positive(self.prior_precision, "prior_precision")
        check_positive(self.noise_variance, "noise_variance")


def _prior_means(seed: int, members: int, dim: int, prior_precision: float) -> FloatArray:
    """(M, d) members' prior means θ₀_m ~ N(0, λ⁻¹I), a function of the seed alone."""
    gen = np.random.default_rng([seed, 0, 7])  # 3 words: never equal to a learning generator's [seed, n]
    return np.asarray(gen.normal(size=(members, dim)) / np.sqrt(prior_precision), dtype=np.float64)


@register
class EnsembleTS(Policy):
    """Bootstrapped ensemble of linear heads (module docstring)."""

    name = "ensemble_ts"
    Params = EnsembleParams
    params: EnsembleParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        p = self.params
        self._A = np.repeat((p.prior_precision * np.eye(self.dim))[None], p.members, axis=0)  # (M, d, d)
        self._b = p.prior_precision * _prior_means(self.seed, p.members, self.dim, p.prior_precision)  # (M, d)

    def thetas(self) -> FloatArray:
        """(M, d) members' means θ_m."""
        return np.asarray(np.linalg.solve(self._A, self._b[:, :, None])[:, :, 0], dtype=np.float64)

    def member_predictions(self, features: FloatArray) -> FloatArray:
        """(M, n_actions) every member's prediction of every action."""
        return self.thetas() @ features.T

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Mean and spread over the members; the value is one member's (TS) or mean + β·spread (UCB)."""
        features = self.check_features(features)
        P = self.member_predictions(features)
        mean, std = P.mean(axis=0), P.std(axis=0)
        if self.params.mode == "ts":
            value = P[int(rng.integers(self.params.members))]
        else:
            value = mean + self.params.beta * std
        return Scores(mean=mean, uncertainty=std, value=np.array(value, dtype=np.float64))

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        if self.params.mode == "ucb":
            ties = argmax_set(scores.value)
            return 1.0 / ties.size if action in ties else 0.0
        P = self.member_predictions(features)
        best = P == P.max(axis=1, keepdims=True)  # (M, K) each member's argmax set
        return float(np.mean(best[:, action] / best.sum(axis=1)))

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Add the chosen row to every member with its Poisson(1) bootstrap weight."""
        action, features, reward = self.check_feedback(action, features, reward)
        x = features[action]
        w = self.learn_rng().poisson(1.0, self.params.members) / self.params.noise_variance  # (M,)
        self._A += w[:, None, None] * np.outer(x, x)[None]
        self._b += (w * reward)[:, None] * x[None]
        self.n_observations += 1

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """UCB with β = 0: the ensemble mean."""
        return {"mode": "ucb", "beta": 0.0}

    def posterior(self) -> dict[str, FloatArray]:
        """Members' precisions (M, d, d) and means (M, d)."""
        return {"precision": self._A.copy(), "mean": self.thetas()}

    @classmethod
    def batch_posterior(
        cls,
        n_actions: int,
        dim: int,
        actions: np.ndarray,
        features: FloatArray,
        rewards: FloatArray,
        *,
        seed: int = 0,
        **params: Any,
    ) -> dict[str, FloatArray] | None:
        """The ensemble of the whole history at once, with the same bootstrap weights."""
        p = EnsembleParams(**params)
        n = len(actions)
        rows = features[np.arange(n), actions]  # (n, d)
        W = np.stack([np.random.default_rng([seed, s]).poisson(1.0, p.members) for s in range(n)]) / p.noise_variance
        A = p.prior_precision * np.eye(dim)[None] + np.einsum("sm,si,sj->mij", W, rows, rows)
        b = p.prior_precision * _prior_means(seed, p.members, dim, p.prior_precision) + np.einsum(
            "sm,s,si->mi", W, rewards, rows
        )
        return {"precision": A, "mean": np.asarray(np.linalg.solve(A, b[:, :, None])[:, :, 0], dtype=np.float64)}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"A": self._A.copy(), "b": self._b.copy()}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        A, b = np.asarray(arrays["A"], dtype=np.float64), np.asarray(arrays["b"], dtype=np.float64)
        if A.shape != self._A.shape or b.shape != self._b.shape:
            raise ValueError(f"ensemble arrays of shapes {A.shape}, {b.shape} do not fit {self._A.shape}")
        self._A, self._b = A.copy(), b.copy()
