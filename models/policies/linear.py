"""Per-arm linear policies of the chapter (§2–§5): LinUCB, LinTS and ε-greedy on ridge posteriors.

Per-arm policies (``linucb``, ``lints``, ``epsilon_greedy``) keep one ridge posterior per action,
stacked into arrays so every round is scored for all actions at once:

    A_a = λI + Σ_{s: a_s = a} w_s x_s x_sᵀ / σ²,     b_a = Σ_{s: a_s = a} w_s r_s x_s / σ²,
    θ̂_a = A_a⁻¹ b_a,   mean_a = x_aᵀθ̂_a,   std_a = sqrt(x_aᵀ A_a⁻¹ x_a),

the chapter's eq. 16.1–16.2 with σ² folded into A as in models/posterior.py (the prior is
exactly N(0, λ⁻¹I)). The weight ``w_s`` is 1, or ``γ^{n−s}`` with a discount γ < 1 (every arm
decays every round, the prior kept: "stabilised forgetting", see models/posterior.py), or 1 for
the last ``window`` rounds and 0 before (a sliding window; chapter §5, "Non-Stationarity").
Without discount or window, A_a⁻¹ is cached and updated by Sherman–Morrison (O(d²) per round,
chapter §2 "Computational Complexity"); with either, the touched arms are re-inverted (a
discounted update is not rank-1, and a downdate by Sherman–Morrison loses precision).

The shared and hybrid linear policies are in :mod:`models.policies.linear_shared`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditlp.arrays import FloatArray
from models.errors import ModelInputError
from models.inputs import check_discount, check_positive
from models.policies.base import Policy, PolicyParams, Scores, deterministic_propensity, mc_propensity
from models.policies.registry import register


def _f64(x: Any) -> FloatArray:
    """``x`` as a float64 array (numpy's stubs type linalg results as ``floating[Any]``)."""
    return np.asarray(x, dtype=np.float64)


# -- per-arm ridge posteriors ---------------------------------------------------------------------


@dataclass(frozen=True)
class RidgeParams(PolicyParams):
    """Parameters of a ridge posterior.

    Attributes:
        prior_precision: λ > 0 (the chapter's ridge; prior N(0, λ⁻¹I)).
        noise_variance: σ² > 0 of the reward noise.
        gamma: discount γ ∈ (0, 1]; 1 keeps every observation at weight 1.
        window: keep only the last ``window`` rounds (0: all); not together with γ < 1.
    """

    prior_precision: float = 1.0
    noise_variance: float = 1.0
    gamma: float = 1.0
    window: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.prior_precision, "prior_precision")
        check_positive(self.noise_variance, "noise_variance")
        check_discount(self.gamma)
        if isinstance(self.window, bool) or int(self.window) != self.window or self.window < 0:
            raise ModelInputError(f"window must be an integer >= 0, got {self.window!r}")
        if self.window and self.gamma != 1.0:
            raise ModelInputError("choose a discount gamma or a sliding window, not both")


class _PerArmRidge(Policy):
    """Stacked per-arm ridge posteriors (module docstring); subclasses define the value rule."""

    Params = RidgeParams
    params: RidgeParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        p = self.params
        eye = np.eye(self.dim)
        self._A = np.repeat((p.prior_precision * eye)[None], self.n_actions, axis=0)  # (K, d, d)
        self._A_inv = np.repeat((eye / p.prior_precision)[None], self.n_actions, axis=0)  # (K, d, d)
        self._b = np.zeros((self.n_actions, self.dim))  # (K, d)
        # Sliding-window ring buffer (length 0 without a window): arm, row, reward per round.
        self._win_arm = np.full(p.window, -1, dtype=np.int64)
        self._win_x = np.zeros((p.window, self.dim))
        self._win_r = np.zeros(p.window)

    def theta(self) -> FloatArray:
        """(n_actions, d) posterior means θ̂_a."""
        return _f64(np.einsum("kij,kj->ki", self._A_inv, self._b))

    def posterior_moments(self, features: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``(mean, std)`` of every action's linear predictor, each (n_actions,)."""
        mean = np.einsum("kd,kd->k", features, self.theta())
        var = np.einsum("kd,kde,ke->k", features, self._A_inv, features)
        return mean, np.sqrt(np.maximum(var, 0.0))

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Add the round's chosen row to its arm (with the discount or window of the params)."""
        action, features, reward = self.check_feedback(action, features, reward)
        p = self.params
        x = features[action]
        s2 = p.noise_variance
        if p.gamma != 1.0:
            self._A *= p.gamma
            self._A[:, np.arange(self.dim), np.arange(self.dim)] += (1.0 - p.gamma) * p.prior_precision
            self._b *= p.gamma
            self._A[action] += np.outer(x, x) / s2
            self._b[action] += reward * x / s2
            self._A_inv = _f64(np.linalg.inv(self._A))
        else:
            touched = [action]
            if p.window:
                slot = self.n_observations % p.window
                old = int(self._win_arm[slot])
                if old >= 0:  # evict the round leaving the window
                    xo = self._win_x[slot]
                    self._A[old] -= np.outer(xo, xo) / s2
                    self._b[old] -= self._win_r[slot] * xo / s2
                    touched.append(old)
                self._win_arm[slot], self._win_x[slot], self._win_r[slot] = action, x, reward
            self._A[action] += np.outer(x, x) / s2
            self._b[action] += reward * x / s2
            if len(touched) == 1:
                # Sherman–Morrison: (A + xxᵀ/σ²)⁻¹ = A⁻¹ − A⁻¹x xᵀA⁻¹ / (σ² + xᵀA⁻¹x).
                u = self._A_inv[action] @ x
                self._A_inv[action] -= np.outer(u, u) / (s2 + x @ u)
            else:
                for arm in set(touched):
                    self._A_inv[arm] = np.linalg.inv(self._A[arm])
        self.n_observations += 1

    def posterior(self) -> dict[str, FloatArray]:
        """Per-arm precision (K, d, d) and mean (K, d)."""
        return {"precision": self._A.copy(), "mean": self.theta()}

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
        """The per-arm closed form ``A_a = λI + Σ w_s x xᵀ/σ²`` over the history (module docstring)."""
        p = RidgeParams(**params)
        n = len(actions)
        w = p.gamma ** np.arange(n - 1, -1, -1, dtype=np.float64)
        if p.window:
            w = (np.arange(n) >= n - p.window).astype(np.float64)
        rows = features[np.arange(n), actions]  # (n, d): the chosen rows
        A = np.repeat((p.prior_precision * np.eye(dim))[None], n_actions, axis=0)
        b = np.zeros((n_actions, dim))
        for a in range(n_actions):
            m = actions == a
            X, ww = rows[m], w[m] / p.noise_variance
            A[a] += X.T @ (ww[:, None] * X)
            b[a] += X.T @ (ww * rewards[m])
        return {"precision": A, "mean": _f64(np.linalg.solve(A, b[:, :, None])[:, :, 0])}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {
            "A": self._A.copy(),
            "A_inv": self._A_inv.copy(),
            "b": self._b.copy(),
            "win_arm": self._win_arm.copy(),
            "win_x": self._win_x.copy(),
            "win_r": self._win_r.copy(),
        }

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        for key, attr in (("A", "_A"), ("A_inv", "_A_inv"), ("b", "_b"), ("win_x", "_win_x"), ("win_r", "_win_r")):
            value = np.asarray(arrays[key], dtype=np.float64)
            if value.shape != getattr(self, attr).shape:
                raise ValueError(f"{key} has shape {value.shape}, expected {getattr(self, attr).shape}")
            setattr(self, attr, value.copy())
        self._win_arm = np.asarray(arrays["win_arm"], dtype=np.int64).copy()


@dataclass(frozen=True)
class UCBParams(RidgeParams):
    """Attributes: alpha: exploration width α ≥ 0 of ``mean + α·std`` (chapter eq. 16.2)."""

    alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (np.isfinite(self.alpha) and self.alpha >= 0):
            raise ModelInputError(f"alpha must be finite and >= 0, got {self.alpha!r}")


@dataclass(frozen=True)
class TSParams(RidgeParams):
    """Attributes: tau: temperature τ ≥ 0 scaling the posterior covariance (τ = 0: the mean)."""

    tau: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (np.isfinite(self.tau) and self.tau >= 0):
            raise ModelInputError(f"tau must be finite and >= 0, got {self.tau!r}")


@register
class LinUCB(_PerArmRidge):
    """Per-arm LinUCB (chapter §2, Li et al. 2010 Alg. 1): ``x_aᵀθ̂_a + α sqrt(x_aᵀA_a⁻¹x_a)``."""

    name = "linucb"
    Params = UCBParams
    params: UCBParams

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Means, stds and UCB values, each (n_actions,); uses no randomness."""
        features = self.check_features(features)
        mean, std = self.posterior_moments(features)
        return Scores(mean=mean, uncertainty=std, value=mean + self.params.alpha * std)

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        return deterministic_propensity(scores.value, action)

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """α = 0."""
        return {"alpha": 0.0}


@register
class LinTS(_PerArmRidge):
    """Per-arm linear Thompson sampling (chapter §3, Agrawal & Goyal 2013).

    Each arm's θ_a ~ N(θ̂_a, τA_a⁻¹) independently, so ``x_aᵀθ_a`` ~ N(mean_a, τ std_a²)
    independently across arms: one normal draw per arm gives the same law as a weight draw, at
    O(K) instead of O(K d²). Propensity: Monte Carlo with ``propensity_draws`` draws.
    """

    name = "lints"
    Params = TSParams
    params: TSParams
    closed_form_propensity = False

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Means, stds and one Thompson draw per action, each (n_actions,)."""
        features = self.check_features(features)
        mean, std = self.posterior_moments(features)
        value = mean + math.sqrt(self.params.tau) * std * rng.standard_normal(self.n_actions)
        return Scores(mean=mean, uncertainty=std, value=value)

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        if self.params.tau == 0.0:
            return deterministic_propensity(scores.value, action)
        M = self.params.propensity_draws
        draws = scores.mean + math.sqrt(self.params.tau) * scores.uncertainty * rng.standard_normal((M, self.n_actions))
        return mc_propensity(draws, action)

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """τ = 0."""
        return {"tau": 0.0}


@dataclass(frozen=True)
class EpsilonParams(RidgeParams):
    """Attributes: epsilon: share ε ∈ [0, 1] of uniformly random rounds."""

    epsilon: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (np.isfinite(self.epsilon) and 0.0 <= self.epsilon <= 1.0):
            raise ModelInputError(f"epsilon must lie in [0, 1], got {self.epsilon!r}")


@register
class EpsilonGreedy(_PerArmRidge):
    """ε-greedy on per-arm ridge means: uniform with probability ε, else the best mean.

    Propensity in closed form: ``(1 − s)·1[a ∈ argmax]/#ties + s/K`` with the uniform share
    ``s = 1 − (1 − ε)(1 − floor)``.
    """

    name = "epsilon_greedy"
    Params = EpsilonParams
    params: EpsilonParams

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Means and stds; the value is the mean."""
        features = self.check_features(features)
        mean, std = self.posterior_moments(features)
        return Scores(mean=mean, uncertainty=std, value=mean)

    def uniform_share(self) -> float:
        """``1 − (1 − ε)(1 − floor)``: the ε-branch and the floor are both uniform."""
        return 1.0 - (1.0 - self.params.epsilon) * (1.0 - self.params.floor)

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        return deterministic_propensity(scores.value, action)

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """ε = 0."""
        return {"epsilon": 0.0}
