"""Mixed-effect Thompson sampling (meTS, linear-Gaussian), HierTS, and meTS on a proxy structure.

The model and its closed-form posteriors are in :mod:`models.policies.mets_posterior`. A round's
features are ``(K, d)``, row ``i`` the context ``X_t`` as action ``i`` sees it (the slides' shared
context is the same row repeated); the expected reward of action ``i`` is ``X_{t,i}ᵀ θ_{*,i}``.

Policies registered here:

* ``mets``: Algorithm 1 with the slides' closed forms; each round draws ``Ψ_t ~ Q_t`` and then
  ``θ_{t,i} ~ P_{t,i}(· | Ψ_t)`` for every action, and plays the argmax of ``X_{t,i}ᵀ θ_{t,i}``.
* ``hierts``: hierarchical TS with one effect per action (the slides' "hierarchical TS with single
  effect", solution B of the movie example): the mixing weights are replaced by the one-hot vector
  of each action's largest weight, so each action sits around a single effect.
* ``mets_proxy``: meTS whose effect priors and mixing weights come from a scikit-learn
  ``GaussianMixture`` with L components fitted to offline item embeddings (the slides' proxy
  structure): component means and covariances are ``μ_Ψ`` and the blocks of ``Σ_Ψ``, membership
  probabilities are ``b_{i,ℓ}``.

The temperature ``tau`` scales both covariances of the hierarchical draw (``tau = 0`` plays the
posterior mean). Every sample is drawn from the generator passed to :meth:`score`/:meth:`choose`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
from sklearn.mixture import GaussianMixture

from banditlp.arrays import FloatArray
from models.errors import ModelInputError, ShapeError
from models.policies.base import Policy, PolicyParams, Scores
from models.policies.mets_posterior import EffectPosterior, MixedEffectPrior, effect_posterior, f64, laplace_terms
from models.policies.registry import register


def _as_list(value: Any) -> Any:
    """A JSON-able copy of an array-like parameter (None stays None)."""
    return None if value is None else np.asarray(value, dtype=np.float64).tolist()


@dataclass(frozen=True)
class MetsParams(PolicyParams):
    """Parameters of the linear mixed-effect policies (arrays as nested lists, so they travel as JSON).

    Attributes:
        mixing: ``b``, (K, L); None gives one effect with weight 1 for every action.
        effect_mean: ``μ_Ψ``, (L, d); None gives zeros.
        effect_cov: ``Σ_Ψ``: scalar, (L, d, d) blocks or (L·d, L·d); None gives the identity.
        action_cov: ``Σ_{0,i}``: scalar, (d, d) or (K, d, d); None gives the identity.
        noise_std: σ of the Gaussian reward.
        tau: temperature of the draws (0 plays the posterior mean).
    """

    mixing: Any = None
    effect_mean: Any = None
    effect_cov: Any = None
    action_cov: Any = None
    noise_std: float = 1.0
    tau: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("mixing", "effect_mean", "effect_cov", "action_cov"):
            object.__setattr__(self, field, _as_list(getattr(self, field)))
        if not (np.isfinite(self.noise_std) and self.noise_std > 0):
            raise ModelInputError(f"noise_std must be > 0, got {self.noise_std!r}")
        if not (np.isfinite(self.tau) and self.tau >= 0):
            raise ModelInputError(f"tau must be >= 0, got {self.tau!r}")


def build_prior(n_actions: int, dim: int, params: MetsParams) -> MixedEffectPrior:
    """The :class:`MixedEffectPrior` of a parameter set, with its defaults filled in."""
    mixing = np.ones((n_actions, 1)) if params.mixing is None else params.mixing
    n_effects = np.shape(mixing)[1] if np.ndim(mixing) == 2 else 1
    mean = np.zeros((n_effects, dim)) if params.effect_mean is None else params.effect_mean
    cov = 1.0 if params.effect_cov is None else params.effect_cov
    action_cov = 1.0 if params.action_cov is None else params.action_cov
    prior = MixedEffectPrior.build(mixing, mean, cov, action_cov, params.noise_std**2)
    if prior.n_actions != n_actions or prior.dim != dim:
        raise ShapeError(f"the prior is for K={prior.n_actions}, d={prior.dim}; the policy has K={n_actions}, d={dim}")
    return prior


class MixedEffectPolicy(Policy):
    """The hierarchical sampler shared by the linear and GLM cases.

    State: the per-action data terms ``G`` (K, d, d) and ``B`` (K, d) of the slides (for the GLM case
    ``G^{LAP}`` and ``G^{LAP} μ^{LAP}``), plus per-action caches refreshed row by row on update:
    ``M_i = (Σ_{0,i} + G_i⁻¹)⁻¹``, ``m_i = M_i G_i⁻¹ B_i``, ``Σ̃_i`` and its Cholesky factor. The effect
    posterior is recomputed from the caches when first needed after an update (O(K L² d²)).
    """

    Params: ClassVar[type[PolicyParams]] = MetsParams
    closed_form_propensity: ClassVar[bool] = False
    params: MetsParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        self.prior = self._make_prior()
        K, d = self.n_actions, self.dim
        self._prec0 = np.linalg.inv(self.prior.action_cov)
        self._effect_prec = f64(np.linalg.inv(self.prior.effect_cov))
        b = self.prior.mixing
        # (b_i ⊗ I) Σ̄ (b_i ⊗ I)ᵀ needs b_iℓ b_im for every pair of effects.
        self._bb = np.einsum("il,im->ilm", b, b)
        self.G = np.zeros((K, d, d))
        self.B = np.zeros((K, d))
        self._M = np.zeros((K, d, d))
        self._m = np.zeros((K, d))
        self._cond_cov = np.array(self.prior.action_cov)
        self._cond_chol = np.linalg.cholesky(self._cond_cov)
        self._effects: EffectPosterior | None = None

    def _make_prior(self) -> MixedEffectPrior:
        return build_prior(self.n_actions, self.dim, self.params)

    # -- posterior maintenance ----------------------------------------------------------------
    def _refresh(self, rows: np.ndarray | slice) -> None:
        """Recompute the caches of the given actions from ``G`` and ``B``."""
        self._M[rows], self._m[rows] = laplace_terms(self.prior.action_cov[rows], self.G[rows], self.B[rows])
        cov = np.linalg.inv(self._prec0[rows] + self.G[rows])
        self._cond_cov[rows] = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        self._cond_chol[rows] = np.linalg.cholesky(self._cond_cov[rows])
        self._effects = None

    @property
    def effects(self) -> EffectPosterior:
        """The effect posterior ``Q_t``."""
        if self._effects is None:
            self._effects = effect_posterior(self.prior, self._M, self._m, self._effect_prec)
        return self._effects

    def conditional_means(self, Psi: FloatArray) -> FloatArray:
        """``μ̃_{t,i}`` given effect draws ``Psi`` (S, L·d): (S, K, d)."""
        psi = Psi.reshape(-1, self.prior.n_effects, self.dim)
        mix = np.einsum("il,slj->sij", self.prior.mixing, psi)
        rhs = np.einsum("ijk,sik->sij", self._prec0, mix) + self.B
        return f64(np.einsum("ijk,sik->sij", self._cond_cov, rhs))

    def draw_theta(self, rng: np.random.Generator, n_samples: int) -> FloatArray:
        """Hierarchical draws ``Ψ ~ Q_t``, then ``θ_i ~ P_{t,i}(· | Ψ)``, at temperature τ: (S, K, d)."""
        effects = self.effects
        scale = float(np.sqrt(self.params.tau))
        z_psi = rng.standard_normal((n_samples, effects.mean.shape[0]))
        # μ̄ + R⁻ᵀz has covariance (R Rᵀ)⁻¹ = Σ̄ (R the Cholesky factor of the effect precision).
        noise = scipy.linalg.solve_triangular(effects.precision_chol, z_psi.T, lower=True, trans="T").T
        Psi = effects.mean + scale * noise
        z_theta = rng.standard_normal((n_samples, self.n_actions, self.dim))
        return self.conditional_means(Psi) + scale * f64(np.einsum("ijk,sik->sij", self._cond_chol, z_theta))

    def marginal(self) -> tuple[FloatArray, FloatArray]:
        """Means (K, d) and covariances (K, d, d) of each θ_i with Ψ integrated out."""
        effects = self.effects
        mean = self.conditional_means(effects.mean[None])[0]
        W = self._cond_cov @ self._prec0
        L, d = self.prior.n_effects, self.dim
        mixed = np.einsum("ilm,ljmk->ijk", self._bb, effects.cov.reshape(L, d, L, d))
        cov = self._cond_cov + W @ mixed @ np.swapaxes(W, -1, -2)
        return mean, 0.5 * (cov + np.swapaxes(cov, -1, -2))

    # -- the contract -------------------------------------------------------------------------
    def link(self, z: FloatArray) -> FloatArray:
        """Mean reward of a linear predictor (the identity here)."""
        return z

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Scores of a round.

        Returns:
            mean: ``f(X_iᵀ E[θ_i | H])`` (plug-in for a GLM); uncertainty: the marginal posterior std of
            ``X_iᵀθ_i``; value: ``f(X_iᵀθ_{t,i})`` of one hierarchical draw (the mean when τ = 0).
        """
        X = self.check_features(features)
        mean_theta, cov_theta = self.marginal()
        std = np.sqrt(np.maximum(np.einsum("ij,ijk,ik->i", X, cov_theta, X), 0.0))
        if self.params.tau == 0.0:
            theta = mean_theta
        else:
            theta = self.draw_theta(rng, 1)[0]
        return Scores(
            mean=self.link(np.einsum("ij,ij->i", X, mean_theta)),
            uncertainty=std,
            value=self.link(np.einsum("ij,ij->i", X, theta)),
        )

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        if self.params.tau == 0.0:
            return 1.0 / np.flatnonzero(scores.value == scores.value.max()).size
        draws = int(self.params.propensity_draws)
        values = np.einsum("kd,skd->sk", features, self.draw_theta(rng, draws))
        hits = int(np.count_nonzero(values.argmax(axis=1) == action))
        return (1.0 + hits) / (1.0 + draws)

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        return {"tau": 0.0}

    def posterior(self) -> dict[str, FloatArray]:
        """Effect posterior, action posteriors given Ψ (data terms), and the marginals of θ."""
        mean, cov = self.marginal()
        return {
            "effect_mean": self.effects.mean,
            "effect_cov": self.effects.cov,
            "action_cond_cov": self._cond_cov.copy(),
            "action_mean": mean,
            "action_cov": cov,
        }


@register
class Mets(MixedEffectPolicy):
    """meTS for the linear-Gaussian model (``Y ~ N(Xᵀθ_i, σ²)``)."""

    name: ClassVar[str] = "mets"

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Add ``X Xᵀ/σ²`` to ``G_a`` and ``Y X/σ²`` to ``B_a``, then refresh action a's caches."""
        a, X, y = self.check_feedback(action, features, reward)
        x = X[a]
        s2 = self.prior.noise_variance
        self.G[a] += np.outer(x, x) / s2
        self.B[a] += y * x / s2
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
        s2 = policy.prior.noise_variance
        onehot = np.eye(n_actions)[np.asarray(actions)]
        policy.G = np.einsum("ti,tj,tk->ijk", onehot, x, x) / s2
        policy.B = np.einsum("ti,tj,t->ij", onehot, x, np.asarray(rewards, dtype=np.float64)) / s2
        policy._refresh(slice(None))
        return policy.posterior()

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"G": self.G.copy(), "B": self.B.copy()}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        G, B = np.asarray(arrays["G"], dtype=np.float64), np.asarray(arrays["B"], dtype=np.float64)
        if G.shape != self.G.shape or B.shape != self.B.shape:
            raise ModelInputError(f"state of shapes {G.shape}, {B.shape} does not fit K={self.n_actions}, d={self.dim}")
        self.G, self.B = G.copy(), B.copy()
        self._refresh(slice(None))


@register
class HierTS(Mets):
    """Hierarchical TS with a single effect per action: ``b_i`` becomes the one-hot of ``argmax_ℓ b_{i,ℓ}``."""

    name: ClassVar[str] = "hierts"

    def _make_prior(self) -> MixedEffectPrior:
        prior = build_prior(self.n_actions, self.dim, self.params)
        onehot = np.eye(prior.n_effects)[prior.mixing.argmax(axis=1)]
        return MixedEffectPrior(onehot, prior.effect_mean, prior.effect_cov, prior.action_cov, prior.noise_variance)


@dataclass(frozen=True)
class ProxyParams(MetsParams):
    """Parameters of ``mets_proxy``: the embeddings replace ``mixing``/``effect_mean``/``effect_cov``.

    Attributes:
        embeddings: (K, d) offline item embeddings (e.g. matrix-factorisation vectors); None draws a
            standard-normal placeholder from ``seed`` so the registry can build the policy bare.
        n_effects: L, the number of mixture components.
        reg_covar: scikit-learn's ridge on each component covariance (keeps Σ_Ψ positive definite).
    """

    embeddings: Any = None
    n_effects: int = 3
    reg_covar: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "embeddings", _as_list(self.embeddings))
        if int(self.n_effects) < 1:
            raise ModelInputError(f"n_effects must be >= 1, got {self.n_effects!r}")


def proxy_structure(
    embeddings: FloatArray, n_effects: int, *, seed: int = 0, reg_covar: float = 1e-6
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Fit the proxy structure of the slides to offline embeddings.

    Args:
        embeddings: (K, d) one embedding per action.
        n_effects: L mixture components.
        seed: ``random_state`` of the mixture's initialisation.
        reg_covar: added to each component covariance's diagonal.

    Returns:
        mixing weights ``b`` (K, L) (membership probabilities), effect means (L, d) and effect
        covariances (L, d, d) (component means and covariances).
    """
    gmm = GaussianMixture(n_components=n_effects, covariance_type="full", random_state=seed, reg_covar=reg_covar)
    gmm.fit(embeddings)
    return gmm.predict_proba(embeddings), gmm.means_, gmm.covariances_


@register
class MetsProxy(Mets):
    """meTS whose structure (``b``, ``μ_Ψ``, ``Σ_Ψ``) is a Gaussian mixture fitted to item embeddings."""

    name: ClassVar[str] = "mets_proxy"
    Params: ClassVar[type[PolicyParams]] = ProxyParams
    params: ProxyParams

    def _make_prior(self) -> MixedEffectPrior:
        p = self.params
        if p.embeddings is None:
            embeddings = np.random.default_rng(self.seed).standard_normal((self.n_actions, self.dim))
        else:
            embeddings = np.asarray(p.embeddings, dtype=np.float64)
        if embeddings.shape != (self.n_actions, self.dim):
            raise ModelInputError(f"embeddings must be ({self.n_actions}, {self.dim}), got {embeddings.shape}")
        n_effects = min(int(p.n_effects), self.n_actions)
        mixing, means, covs = proxy_structure(embeddings, n_effects, seed=self.seed, reg_covar=p.reg_covar)
        action_cov = 1.0 if p.action_cov is None else p.action_cov
        return MixedEffectPrior.build(mixing, means, covs, action_cov, p.noise_std**2)
