"""Shared and hybrid linear policies of the chapter (§4): one posterior over every action's row.

``shared_linucb`` and ``shared_lints`` are one :class:`~models.posterior.BayesianLinearHead`
over every row (chapter §4: arm features encoded in the row). ``hybrid_linucb`` is Li et al.
(2010), Algorithm 2, with the row as both the shared features z and the per-arm features x:
``r = zᵀβ + xᵀθ_a``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditlp.arrays import FloatArray
from models.errors import ModelInputError
from models.inputs import check_positive
from models.policies.base import Policy, PolicyParams, Scores, deterministic_propensity, mc_propensity
from models.policies.registry import register
from models.posterior import BayesianLinearHead, LinearHeadConfig


def _f64(x: Any) -> FloatArray:
    """``x`` as a float64 array (numpy's stubs type linalg results as ``floating[Any]``)."""
    return np.asarray(x, dtype=np.float64)


# -- shared models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedParams(PolicyParams):
    """Parameters of a shared head (models/posterior.py's :class:`LinearHeadConfig` fields).

    Attributes:
        prior_precision: λ > 0.
        noise_variance: σ² > 0.
        gamma: discount γ ∈ (0, 1].
        alpha: UCB width α ≥ 0 (``shared_linucb``).
        tau: Thompson temperature τ ≥ 0 (``shared_lints``).
    """

    prior_precision: float = 1.0
    noise_variance: float = 1.0
    gamma: float = 1.0
    alpha: float = 1.0
    tau: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        LinearHeadConfig(1, self.prior_precision, self.noise_variance, self.gamma)  # validates them
        for key in ("alpha", "tau"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= 0):
                raise ModelInputError(f"{key} must be finite and >= 0, got {value!r}")


class _Shared(Policy):
    """One :class:`BayesianLinearHead` over every row of the round."""

    Params = SharedParams
    params: SharedParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        p = self.params
        self.head = BayesianLinearHead(LinearHeadConfig(self.dim, p.prior_precision, p.noise_variance, p.gamma))

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Add the chosen row and its reward to the shared head."""
        action, features, reward = self.check_feedback(action, features, reward)
        self.head.update(features[action], reward)
        self.n_observations += 1

    def _moments(self, features: FloatArray) -> tuple[FloatArray, FloatArray]:
        return self.head.predictive_mean(features), self.head.predictive_std(features)

    def posterior(self) -> dict[str, FloatArray]:
        """Precision (d, d) and mean (d,)."""
        return {"precision": np.array(self.head.precision), "mean": np.array(self.head.mean)}

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
        """``A = λI + Σ γ^{n−s} x xᵀ/σ²``, ``θ̂ = A⁻¹b`` over the chosen rows."""
        p = SharedParams(**params)
        n = len(actions)
        rows = features[np.arange(n), actions]
        w = p.gamma ** np.arange(n - 1, -1, -1, dtype=np.float64) / p.noise_variance
        A = p.prior_precision * np.eye(dim) + rows.T @ (w[:, None] * rows)
        return {"precision": A, "mean": np.linalg.solve(A, rows.T @ (w * rewards))}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {f"head.{k}": v for k, v in self.head.snapshot_arrays().items()}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        parts = {k.removeprefix("head."): v for k, v in arrays.items() if k.startswith("head.")}
        self.head = BayesianLinearHead.from_snapshot_parts(self.head.snapshot_config(), parts)


@register
class SharedLinUCB(_Shared):
    """Shared LinUCB (chapter §4, Listing 16.3): one θ over every row, ``xᵀθ̂ + α sqrt(xᵀA⁻¹x)``."""

    name = "shared_linucb"

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Means, stds and UCB values; uses no randomness."""
        features = self.check_features(features)
        mean, std = self._moments(features)
        return Scores(mean=mean, uncertainty=std, value=mean + self.params.alpha * std)

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        return deterministic_propensity(scores.value, action)

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """α = 0."""
        return {"alpha": 0.0}


@register
class SharedLinTS(_Shared):
    """Shared LinTS (chapter Listing 16.2): one joint draw w ~ N(θ̂, τA⁻¹) scores every row.

    The rows' values are correlated through w, so the propensity is Monte Carlo over
    ``propensity_draws`` joint weight draws.
    """

    name = "shared_lints"
    closed_form_propensity = False

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Means, stds and the values ``X w`` of one joint weight draw."""
        features = self.check_features(features)
        mean, std = self._moments(features)
        w = self.head.sample_weights(1, rng, self.params.tau)[0]
        return Scores(mean=mean, uncertainty=std, value=features @ w)

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        if self.params.tau == 0.0:
            return deterministic_propensity(scores.value, action)
        W = self.head.sample_weights(self.params.propensity_draws, rng, self.params.tau)
        return mc_propensity(W @ features.T, action)

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """τ = 0."""
        return {"tau": 0.0}


# -- hybrid --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HybridParams(PolicyParams):
    """Attributes: alpha: UCB width α ≥ 0; prior_precision: λ > 0 for β and every θ_a."""

    alpha: float = 1.0
    prior_precision: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.prior_precision, "prior_precision")
        if not (np.isfinite(self.alpha) and self.alpha >= 0):
            raise ModelInputError(f"alpha must be finite and >= 0, got {self.alpha!r}")


@register
class HybridLinUCB(Policy):
    """LinUCB with hybrid linear models (Li et al. 2010, Algorithm 2): ``r = zᵀβ + xᵀθ_a``.

    z = x = the action's row (dim d): β is shared by every action, θ_a is action a's own
    correction. The statistics are the paper's (A₀ (d, d), b₀ (d,), A_a (K, d, d), B_a (K, d, d),
    b_a (K, d)), with ridge λ in place of the paper's identity. The paper's updates are exact
    block elimination of the joint ridge regression over (β, θ_1..θ_K), which is what
    :meth:`batch_posterior` solves directly.
    """

    name = "hybrid_linucb"
    Params = HybridParams
    params: HybridParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        lam, K, d = self.params.prior_precision, self.n_actions, self.dim
        self._A0 = lam * np.eye(d)
        self._b0 = np.zeros(d)
        self._A = np.repeat((lam * np.eye(d))[None], K, axis=0)
        self._B = np.zeros((K, d, d))
        self._b = np.zeros((K, d))

    def _solve(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(A₀⁻¹, β̂, A_a⁻¹ (K, d, d), θ̂ (K, d))``."""
        A0_inv = np.linalg.inv(self._A0)
        beta = A0_inv @ self._b0
        A_inv = np.linalg.inv(self._A)
        theta = np.einsum("kij,kj->ki", A_inv, self._b - self._B @ beta)
        return _f64(A0_inv), _f64(beta), _f64(A_inv), _f64(theta)

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Means ``zᵀβ̂ + xᵀθ̂_a``, stds ``sqrt(s_a)`` (the paper's s_{t,a}) and UCB values."""
        X = self.check_features(features)  # (K, d): z_a = x_a
        A0_inv, beta, A_inv, theta = self._solve()
        Ax = np.einsum("kij,kj->ki", A_inv, X)  # A_a⁻¹x_a
        BtAx = np.einsum("kji,kj->ki", self._B, Ax)  # B_aᵀA_a⁻¹x_a
        s = (
            np.einsum("ki,ij,kj->k", X, A0_inv, X)
            - 2.0 * np.einsum("ki,ij,kj->k", X, A0_inv, BtAx)
            + np.einsum("ki,ki->k", X, Ax)
            + np.einsum("ki,ij,kj->k", BtAx, A0_inv, BtAx)
        )
        mean = X @ beta + np.einsum("kd,kd->k", X, theta)
        std = np.sqrt(np.maximum(s, 0.0))
        return Scores(mean=mean, uncertainty=std, value=mean + self.params.alpha * std)

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """The paper's update of A₀, b₀, A_a, B_a, b_a for the chosen action."""
        a, X, r = self.check_feedback(action, features, reward)
        x = z = X[a]
        A_inv = np.linalg.inv(self._A[a])
        BtAi = self._B[a].T @ A_inv
        self._A0 += BtAi @ self._B[a]
        self._b0 += BtAi @ self._b[a]
        self._A[a] += np.outer(x, x)
        self._B[a] += np.outer(x, z)
        self._b[a] += r * x
        BtAi = self._B[a].T @ np.linalg.inv(self._A[a])
        self._A0 += np.outer(z, z) - BtAi @ self._B[a]
        self._b0 += r * z - BtAi @ self._b[a]
        self.n_observations += 1

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        return deterministic_propensity(scores.value, action)

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """α = 0."""
        return {"alpha": 0.0}

    def posterior(self) -> dict[str, FloatArray]:
        """β̂ (d,) and θ̂ (K, d)."""
        _, beta, _, theta = self._solve()
        return {"beta": beta, "theta": theta}

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
        """The joint ridge regression on rows ``[z, e_a ⊗ x]`` of dimension d(K + 1), prior λI."""
        p = HybridParams(**params)
        n, K, d = len(actions), n_actions, dim
        rows = features[np.arange(n), actions]
        design = np.zeros((n, d * (K + 1)))
        design[:, :d] = rows
        for i, a in enumerate(actions):
            design[i, d * (a + 1) : d * (a + 2)] = rows[i]
        A = p.prior_precision * np.eye(d * (K + 1)) + design.T @ design
        coef = np.linalg.solve(A, design.T @ rewards)
        return {"beta": _f64(coef[:d]), "theta": _f64(coef[d:].reshape(K, d))}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, f"_{key}").copy() for key in ("A0", "b0", "A", "B", "b")}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        for key in ("A0", "b0", "A", "B", "b"):
            value = np.asarray(arrays[key], dtype=np.float64)
            if value.shape != getattr(self, f"_{key}").shape:
                raise ValueError(f"{key} has shape {value.shape}")
            setattr(self, f"_{key}", value.copy())
