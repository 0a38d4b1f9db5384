"""The GLM (logistic) case of meTS by Laplace, and the structure-agnostic GLM baselines.

Rewards are Bernoulli with mean ``f(X_{t,i}ᵀθ_i)``, f the logistic function (``A = log(1 + e^z)``,
``Ȧ = f``). For each action the slides approximate the likelihood by a Gaussian around its mode,

    μ^{LAP}_{t,i} = argmax_θ log L_{t,i}(θ),     G^{LAP}_{t,i} = Σ_{ℓ∈S_{t,i}} ḟ(X_ℓᵀ μ^{LAP}_{t,i}) X_ℓX_ℓᵀ,

and plug ``G ← G^{LAP}``, ``G⁻¹B ← μ^{LAP}`` (so ``B ← G^{LAP}μ^{LAP}``) into the linear formulas.
The maximum-likelihood point does not exist while an action's observations are separable (always
so with fewer than d of them), so the mode here maximises ``log L − (λ/2)‖θ‖²`` with a small ridge
λ (``ridge``); the curvature is that of the likelihood alone, so that λ is not counted as data.

Registered here:

* ``mets_glm``: meTS with the Laplace data terms; the mode of the touched action is refitted by
  Newton on its observations after every update (warm-started at the previous mode).
* ``glm_ts``: one independent Laplace posterior per action around the MAP under ``N(0, λ₀⁻¹I)``,
  a draw ``θ_i ~ N(θ̂_i, τ H_i⁻¹)`` per round.
* ``ucb_glm``: the same posterior, value ``f(X_iᵀθ̂_i + α ‖X_i‖_{H_i⁻¹})`` (UCB-GLM of Li, Lu and
  Zhou 2017 with the MAP in place of the MLE).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.special

from banditlp.arrays import FloatArray
from models.errors import ModelInputError
from models.policies.base import Policy, PolicyParams, Scores, argmax_set
from models.policies.mets import MetsParams, MixedEffectPolicy
from models.policies.mets_posterior import f64, logistic_laplace
from models.policies.registry import register


def sigmoid(z: FloatArray) -> FloatArray:
    """The logistic link f, elementwise."""
    out: FloatArray = scipy.special.expit(z)
    return out


class _History:
    """Each action's observations (contexts and rewards), for refitting its Laplace mode."""

    def __init__(self, n_actions: int, dim: int) -> None:
        self.dim = dim
        self.X: list[list[FloatArray]] = [[] for _ in range(n_actions)]
        self.y: list[list[float]] = [[] for _ in range(n_actions)]
        self.order: list[int] = []

    def add(self, action: int, x: FloatArray, y: float) -> None:
        # Rewards in [0, 1], not only {0, 1}: the Bernoulli log-likelihood is the cross-entropy, a valid
        # (quasi-)likelihood for fractional targets such as averaged clicks.
        if not 0.0 <= y <= 1.0:
            raise ModelInputError(f"a logistic reward must lie in [0, 1], got {y!r}")
        self.X[action].append(np.array(x, dtype=np.float64))
        self.y[action].append(float(y))
        self.order.append(action)

    def of(self, action: int) -> tuple[FloatArray, FloatArray]:
        """(n_a, d) contexts and (n_a,) rewards of one action."""
        X = np.array(self.X[action], dtype=np.float64).reshape(-1, self.dim)
        return X, np.array(self.y[action], dtype=np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        """The history in arrival order: actions (n,), X (n, d), y (n,)."""
        actions = np.array(self.order, dtype=np.int64)
        seen = [0] * len(self.X)
        rows, ys = [], []
        for a in self.order:
            rows.append(self.X[a][seen[a]])
            ys.append(self.y[a][seen[a]])
            seen[a] += 1
        X = np.array(rows, dtype=np.float64).reshape(-1, self.dim)
        return {"hist_actions": actions, "hist_X": X, "hist_y": np.array(ys, dtype=np.float64)}

    def load(self, arrays: Mapping[str, np.ndarray]) -> None:
        for a, x, y in zip(arrays["hist_actions"], arrays["hist_X"], arrays["hist_y"]):
            self.add(int(a), x, float(y))


@dataclass(frozen=True)
class MetsGlmParams(MetsParams):
    """:class:`~models.policies.mets.MetsParams` (``noise_std`` unused) plus the mode's ridge λ."""

    ridge: float = 1e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (np.isfinite(self.ridge) and self.ridge > 0):
            raise ModelInputError(f"ridge must be > 0, got {self.ridge!r}")


@register
class MetsGlm(MixedEffectPolicy):
    """meTS for logistic rewards, the likelihood of each action replaced by its Laplace approximation."""

    name: ClassVar[str] = "mets_glm"
    Params: ClassVar[type[PolicyParams]] = MetsGlmParams
    params: MetsGlmParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        self.history = _History(self.n_actions, self.dim)
        self.modes = np.zeros((self.n_actions, self.dim))

    def link(self, z: FloatArray) -> FloatArray:
        return sigmoid(z)

    def _fit(self, action: int) -> None:
        X, y = self.history.of(action)
        mode, curvature = logistic_laplace(X, y, self.params.ridge, theta0=self.modes[action])
        self.modes[action] = mode
        self.G[action] = 0.5 * (curvature + curvature.T)
        self.B[action] = self.G[action] @ mode

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Record the observation, refit action a's Laplace mode and curvature, refresh its caches."""
        a, X, y = self.check_feedback(action, features, reward)
        self.history.add(a, X[a], y)
        self._fit(a)
        self._refresh(slice(a, a + 1))
        self.n_observations += 1

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
        policy = cls(n_actions, dim, seed=seed, **params)
        x = np.asarray(features)[np.arange(len(actions)), np.asarray(actions)]
        for a, row, y in zip(actions, x, rewards):
            policy.history.add(int(a), row, float(y))
        for a in set(int(a) for a in actions):
            policy._fit(a)
        policy._refresh(slice(None))
        return policy.posterior()

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"G": self.G.copy(), "B": self.B.copy(), "modes": self.modes.copy(), **self.history.arrays()}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.history.load(arrays)
        self.G = np.array(arrays["G"], dtype=np.float64).reshape(self.G.shape)
        self.B = np.array(arrays["B"], dtype=np.float64).reshape(self.B.shape)
        self.modes = np.array(arrays["modes"], dtype=np.float64).reshape(self.modes.shape)
        self._refresh(slice(None))


# -- structure-agnostic baselines ---------------------------------------------------------------
@dataclass(frozen=True)
class GlmParams(PolicyParams):
    """Per-action logistic Laplace posteriors under the prior ``N(0, λ₀⁻¹I)``.

    Attributes:
        prior_precision: λ₀.
        tau: temperature of ``glm_ts``'s draws.
        alpha: width of ``ucb_glm``'s bonus.
    """

    prior_precision: float = 1.0
    tau: float = 1.0
    alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("prior_precision", "tau", "alpha"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ModelInputError(f"{name} must be >= 0, got {value!r}")
        if self.prior_precision == 0:
            raise ModelInputError("prior_precision must be > 0")


class _PerActionLaplace(Policy):
    """State: each action's MAP ``θ̂_i`` (K, d) and posterior covariance ``H_i⁻¹`` (K, d, d)."""

    Params: ClassVar[type[PolicyParams]] = GlmParams
    params: GlmParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        self.history = _History(self.n_actions, self.dim)
        self.modes = np.zeros((self.n_actions, self.dim))
        self.cov = np.broadcast_to(np.eye(self.dim) / self.params.prior_precision, (n_actions, dim, dim)).copy()

    def _fit(self, action: int) -> None:
        X, y = self.history.of(action)
        lam = self.params.prior_precision
        mode, curvature = logistic_laplace(X, y, lam, theta0=self.modes[action])
        self.modes[action] = mode
        cov = np.linalg.inv(curvature + lam * np.eye(self.dim))
        self.cov[action] = 0.5 * (cov + cov.T)

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Record the observation and refit action a's MAP and Laplace covariance."""
        a, X, y = self.check_feedback(action, features, reward)
        self.history.add(a, X[a], y)
        self._fit(a)
        self.n_observations += 1

    def _std(self, X: FloatArray) -> FloatArray:
        return f64(np.sqrt(np.maximum(np.einsum("ij,ijk,ik->i", X, self.cov, X), 0.0)))

    def posterior(self) -> dict[str, FloatArray]:
        return {"modes": self.modes.copy(), "cov": self.cov.copy()}

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
        policy = cls(n_actions, dim, seed=seed, **params)
        x = np.asarray(features)[np.arange(len(actions)), np.asarray(actions)]
        for a, row, y in zip(actions, x, rewards):
            policy.history.add(int(a), row, float(y))
        for a in set(int(a) for a in actions):
            policy._fit(a)
        return policy.posterior()

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"modes": self.modes.copy(), "cov": self.cov.copy(), **self.history.arrays()}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.history.load(arrays)
        self.modes = np.array(arrays["modes"], dtype=np.float64).reshape(self.modes.shape)
        self.cov = np.array(arrays["cov"], dtype=np.float64).reshape(self.cov.shape)


@register
class GlmTS(_PerActionLaplace):
    """GLM-TS: one Laplace-posterior draw per action, ``θ_i ~ N(θ̂_i, τ H_i⁻¹)``."""

    name: ClassVar[str] = "glm_ts"
    closed_form_propensity: ClassVar[bool] = False

    def _draw(self, rng: np.random.Generator, n_samples: int) -> FloatArray:
        z = rng.standard_normal((n_samples, self.n_actions, self.dim))
        chol = np.linalg.cholesky(self.cov)
        return self.modes + float(np.sqrt(self.params.tau)) * f64(np.einsum("ijk,sik->sij", chol, z))

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """mean ``f(X_iᵀθ̂_i)``, uncertainty ``‖X_i‖_{H_i⁻¹}``, value ``f(X_iᵀθ_i)`` of one draw."""
        X = self.check_features(features)
        theta = self.modes if self.params.tau == 0 else self._draw(rng, 1)[0]
        return Scores(
            mean=sigmoid(np.einsum("ij,ij->i", X, self.modes)),
            uncertainty=self._std(X),
            value=sigmoid(np.einsum("ij,ij->i", X, theta)),
        )

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        if self.params.tau == 0:
            ties = argmax_set(scores.value)
            return 1.0 / ties.size if action in ties else 0.0
        draws = int(self.params.propensity_draws)
        values = np.einsum("kd,skd->sk", features, self._draw(rng, draws))
        return (1.0 + int(np.count_nonzero(values.argmax(axis=1) == action))) / (1.0 + draws)

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        return {"tau": 0.0}


@register
class UcbGlm(_PerActionLaplace):
    """UCB-GLM: value ``f(X_iᵀθ̂_i + α‖X_i‖_{H_i⁻¹})``; deterministic, ties uniform."""

    name: ClassVar[str] = "ucb_glm"

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """mean ``f(X_iᵀθ̂_i)``, uncertainty ``‖X_i‖_{H_i⁻¹}``, value the upper bound through f."""
        X = self.check_features(features)
        z = np.einsum("ij,ij->i", X, self.modes)
        std = self._std(X)
        return Scores(mean=sigmoid(z), uncertainty=std, value=sigmoid(z + self.params.alpha * std))

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        ties = argmax_set(scores.value)
        return 1.0 / ties.size if action in ties else 0.0

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        return {"alpha": 0.0}
