"""Mixed-effect posteriors of meTS (Aouali, Kveton and Katariya, "Mixed-Effect Thompson Sampling").

The two-level model of the slides, with ``K`` actions, ``L`` effects and dimension ``d``::

    Ψ_* = (ψ_{*,ℓ})_{ℓ≤L} ~ N(μ_Ψ, Σ_Ψ)                                 (effects, R^{Ld})
    θ_{*,i} | Ψ_* ~ N(Σ_ℓ b_{i,ℓ} ψ_{*,ℓ}, Σ_{0,i}),   i ∈ [K]          (actions, R^d)
    Y_t | X_t, θ_{*,A_t} ~ N(X_tᵀ θ_{*,A_t}, σ²)

with known mixing weights ``b_i = (b_{i,ℓ})_{ℓ≤L}``. With the sufficient statistics of action i,
``G_{t,i} = σ⁻² Σ_{ℓ∈S_{t,i}} X_ℓ X_ℓᵀ`` and ``B_{t,i} = σ⁻² Σ_{ℓ∈S_{t,i}} Y_ℓ X_ℓ``, the slides'
closed forms are

    effect posterior  Q_t = N(μ̄_t, Σ̄_t):
        Σ̄_t⁻¹ = Σ_Ψ⁻¹ + Σ_i b_i b_iᵀ ⊗ (Σ_{0,i} + G_{t,i}⁻¹)⁻¹
        μ̄_t  = Σ̄_t (Σ_Ψ⁻¹ μ_Ψ + Σ_i b_i ⊗ ((Σ_{0,i} + G_{t,i}⁻¹)⁻¹ G_{t,i}⁻¹ B_{t,i}))
    action posterior  P_{t,i}(· | Ψ_t) = N(μ̃_{t,i}, Σ̃_{t,i}):
        Σ̃_{t,i}⁻¹ = Σ_{0,i}⁻¹ + G_{t,i},   μ̃_{t,i} = Σ̃_{t,i} (Σ_{0,i}⁻¹ Σ_ℓ b_{i,ℓ} ψ_{t,ℓ} + B_{t,i})

``G_{t,i}`` is singular until action i has ``d`` observations, so the two terms with ``G⁻¹`` are
evaluated through the identities ``(Σ_0 + G⁻¹)⁻¹ = (I + G Σ_0)⁻¹ G`` and
``(Σ_0 + G⁻¹)⁻¹ G⁻¹ B = (I + G Σ_0)⁻¹ B`` (multiply ``Σ_0 + G⁻¹`` on the left by ``G``), which hold
for every ``G`` with ``I + G Σ_0`` invertible and vanish at ``G = 0`` as they should.

Ψ is flattened effect-major: ``Ψ = (ψ_1; …; ψ_L)``, so ``b_i ⊗ v`` is ``np.outer(b_i, v).ravel()``.

For the GLM case the slides plug in the Laplace approximation of each action's likelihood,
``G_{t,i} ← G^{LAP}_{t,i}`` and ``G_{t,i}⁻¹ B_{t,i} ← μ^{LAP}_{t,i}``, i.e. ``B_{t,i} ← G^{LAP} μ^{LAP}``;
:func:`logistic_laplace` computes that pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.special

from banditlp.arrays import FloatArray
from models.errors import ModelInputError, ShapeError


def f64(x: object) -> FloatArray:
    """``x`` as a float64 array (numpy's stubs type linalg and einsum results loosely)."""
    return np.asarray(x, dtype=np.float64)


def _spd(name: str, value: FloatArray) -> None:
    if not np.all(np.isfinite(value)):
        raise ModelInputError(f"{name} must be finite")
    if not np.allclose(value, np.swapaxes(value, -1, -2), rtol=1e-10, atol=1e-12):
        raise ModelInputError(f"{name} must be symmetric")
    if np.any(np.linalg.eigvalsh(value) <= 0):
        raise ModelInputError(f"{name} must be positive definite")


@dataclass(frozen=True, eq=False)
class MixedEffectPrior:
    """The known structure and priors of the mixed-effect model.

    Attributes:
        mixing: ``b``, (K, L) mixing weights; row i gives the weights of action i on each effect.
        effect_mean: ``μ_Ψ``, (L, d) prior means of the effects.
        effect_cov: ``Σ_Ψ``, (L·d, L·d) prior covariance of the flattened effects (block diagonal
            when the effects are independent a priori).
        action_cov: ``Σ_{0,i}``, (K, d, d) conditional prior covariance of each action around its mix.
        noise_variance: ``σ²`` of the linear-Gaussian reward (unused by the GLM case).
    """

    mixing: FloatArray
    effect_mean: FloatArray
    effect_cov: FloatArray
    action_cov: FloatArray
    noise_variance: float = 1.0

    def __post_init__(self) -> None:
        if self.mixing.ndim != 2:
            raise ShapeError(f"mixing must be (K, L), got shape {self.mixing.shape}")
        n_actions, n_effects = self.mixing.shape
        if self.effect_mean.ndim != 2 or self.effect_mean.shape[0] != n_effects:
            raise ShapeError(f"effect_mean must be (L={n_effects}, d), got shape {self.effect_mean.shape}")
        dim = self.effect_mean.shape[1]
        if self.effect_cov.shape != (n_effects * dim, n_effects * dim):
            raise ShapeError(f"effect_cov must be ({n_effects * dim}, {n_effects * dim}), got {self.effect_cov.shape}")
        if self.action_cov.shape != (n_actions, dim, dim):
            raise ShapeError(f"action_cov must be ({n_actions}, {dim}, {dim}), got {self.action_cov.shape}")
        if not (np.all(np.isfinite(self.mixing)) and np.all(np.isfinite(self.effect_mean))):
            raise ModelInputError("mixing and effect_mean must be finite")
        _spd("effect_cov", self.effect_cov)
        _spd("action_cov", self.action_cov)
        if not (np.isfinite(self.noise_variance) and self.noise_variance > 0):
            raise ModelInputError("noise_variance must be > 0")

    @property
    def n_actions(self) -> int:
        """K."""
        return int(self.mixing.shape[0])

    @property
    def n_effects(self) -> int:
        """L."""
        return int(self.mixing.shape[1])

    @property
    def dim(self) -> int:
        """d."""
        return int(self.effect_mean.shape[1])

    @classmethod
    def build(
        cls,
        mixing: object,
        effect_mean: object,
        effect_cov: object,
        action_cov: object,
        noise_variance: float = 1.0,
    ) -> MixedEffectPrior:
        """Build a prior from array-likes, broadcasting the convenient shorthands.

        Args:
            mixing: (K, L) weights ``b``.
            effect_mean: (L, d) ``μ_Ψ``.
            effect_cov: a scalar (``s·I``), (L, d, d) independent blocks, or the full (L·d, L·d) ``Σ_Ψ``.
            action_cov: a scalar (``s·I`` for every action), one (d, d) matrix, or (K, d, d).
            noise_variance: ``σ²``.
        """
        b = np.asarray(mixing, dtype=np.float64)
        mu = np.asarray(effect_mean, dtype=np.float64)
        if b.ndim != 2 or mu.ndim != 2:
            raise ShapeError("mixing must be (K, L) and effect_mean (L, d)")
        n_actions, n_effects, dim = b.shape[0], mu.shape[0], mu.shape[1]
        s_psi = np.asarray(effect_cov, dtype=np.float64)
        if s_psi.ndim == 0:
            s_psi = float(s_psi) * np.eye(n_effects * dim)
        elif s_psi.ndim == 3:
            s_psi = scipy.linalg.block_diag(*s_psi)
        s0 = np.asarray(action_cov, dtype=np.float64)
        if s0.ndim == 0:
            s0 = float(s0) * np.eye(dim)
        if s0.ndim == 2:
            s0 = np.broadcast_to(s0, (n_actions, dim, dim)).copy()
        return cls(b, mu, s_psi, s0, float(noise_variance))


@dataclass(frozen=True, eq=False)
class EffectPosterior:
    """``Q_t = N(μ̄_t, Σ̄_t)`` over the flattened effects.

    Attributes:
        mean: ``μ̄_t``, (L·d,).
        cov: ``Σ̄_t``, (L·d, L·d).
        precision_chol: lower Cholesky factor R of ``Σ̄_t⁻¹ = R Rᵀ``, (L·d, L·d); sampling uses it.
    """

    mean: FloatArray
    cov: FloatArray
    precision_chol: FloatArray


def laplace_terms(action_cov: FloatArray, G: FloatArray, B: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Each action's contribution to the effect posterior.

    Args:
        action_cov: (K, d, d) ``Σ_{0,i}``.
        G: (K, d, d) ``G_{t,i}``.
        B: (K, d) ``B_{t,i}``.

    Returns:
        ``(Σ_0 + G⁻¹)⁻¹`` as (K, d, d) and ``(Σ_0 + G⁻¹)⁻¹ G⁻¹ B`` as (K, d), through the identities
        of the module docstring (no inverse of G).
    """
    eye = np.eye(G.shape[-1])
    A = eye + G @ action_cov  # I + G Σ_0, invertible since G ⪰ 0 and Σ_0 ≻ 0
    M = np.linalg.solve(A, G)
    M = 0.5 * (M + np.swapaxes(M, -1, -2))
    m = np.linalg.solve(A, B[..., None])[..., 0]
    return f64(M), f64(m)


def effect_posterior(
    prior: MixedEffectPrior, M: FloatArray, m: FloatArray, prior_precision: FloatArray | None = None
) -> EffectPosterior:
    """The slides' effect posterior from the per-action terms of :func:`laplace_terms`.

    Args:
        prior: the model.
        M: (K, d, d) ``(Σ_{0,i} + G_{t,i}⁻¹)⁻¹``.
        m: (K, d) ``(Σ_{0,i} + G_{t,i}⁻¹)⁻¹ G_{t,i}⁻¹ B_{t,i}``.
        prior_precision: ``Σ_Ψ⁻¹`` when the caller caches it.

    Returns:
        ``N(μ̄_t, Σ̄_t)``.
    """
    b = prior.mixing
    n_flat = prior.n_effects * prior.dim
    if prior_precision is None:
        prior_precision = f64(np.linalg.inv(prior.effect_cov))
    # Σ_i b_i b_iᵀ ⊗ M_i as an (L, d, L, d) tensor: entry [ℓ, j, m, k] = Σ_i b_iℓ b_im M_i[j, k].
    precision = prior_precision + np.einsum("il,im,ijk->ljmk", b, b, M).reshape(n_flat, n_flat)
    precision = 0.5 * (precision + precision.T)
    eta = prior_precision @ prior.effect_mean.ravel() + np.einsum("il,ij->lj", b, m).ravel()
    chol = np.linalg.cholesky(precision)
    mean = scipy.linalg.cho_solve((chol, True), eta)
    cov = scipy.linalg.cho_solve((chol, True), np.eye(n_flat))
    return EffectPosterior(mean=mean, cov=0.5 * (cov + cov.T), precision_chol=chol)


def action_conditional(
    prior: MixedEffectPrior, G: FloatArray, B: FloatArray, Psi: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The action posteriors ``P_{t,i}(· | Ψ)`` for every action.

    Args:
        prior: the model.
        G: (K, d, d) ``G_{t,i}``.
        B: (K, d) ``B_{t,i}``.
        Psi: effects, (L·d,) or (S, L·d) for S draws.

    Returns:
        ``μ̃_{t,i}`` as (K, d) or (S, K, d), and ``Σ̃_{t,i}`` as (K, d, d) (it does not depend on Ψ).
    """
    prec0 = np.linalg.inv(prior.action_cov)
    cov = np.linalg.inv(prec0 + G)
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    psi = np.asarray(Psi).reshape(*np.shape(Psi)[:-1], prior.n_effects, prior.dim)
    mix = np.einsum("il,...lj->...ij", prior.mixing, psi)  # Σ_ℓ b_iℓ ψ_ℓ, (..., K, d)
    rhs = np.einsum("ijk,...ik->...ij", prec0, mix) + B
    return f64(np.einsum("ijk,...ik->...ij", cov, rhs)), f64(cov)


def action_marginal(
    prior: MixedEffectPrior, G: FloatArray, B: FloatArray, effects: EffectPosterior
) -> tuple[FloatArray, FloatArray]:
    """The marginal posterior of each θ_i, with Ψ integrated out of ``P_{t,i}(· | Ψ) Q_t(Ψ)``.

    ``μ̃_i`` is affine in Ψ, ``μ̃_i = W_i (b_i ⊗ I) Ψ + Σ̃_i B_i`` with ``W_i = Σ̃_i Σ_{0,i}⁻¹``, so the marginal is
    ``N(W_i (b_i ⊗ I) μ̄ + Σ̃_i B_i,  Σ̃_i + W_i (b_i ⊗ I) Σ̄ (b_i ⊗ I)ᵀ W_iᵀ)``.

    Returns:
        means (K, d) and covariances (K, d, d).
    """
    mean, cov = action_conditional(prior, G, B, effects.mean)
    W = cov @ np.linalg.inv(prior.action_cov)
    L, d = prior.n_effects, prior.dim
    s4 = effects.cov.reshape(L, d, L, d)
    mixed = np.einsum("il,im,ljmk->ijk", prior.mixing, prior.mixing, s4)  # (b_i ⊗ I) Σ̄ (b_i ⊗ I)ᵀ
    full = cov + W @ mixed @ np.swapaxes(W, -1, -2)
    return mean, 0.5 * (full + np.swapaxes(full, -1, -2))


def sample_hierarchical(
    prior: MixedEffectPrior,
    G: FloatArray,
    B: FloatArray,
    effects: EffectPosterior,
    rng: np.random.Generator,
    n_samples: int = 1,
) -> tuple[FloatArray, FloatArray]:
    """Algorithm 1's draw: ``Ψ_t ~ Q_t``, then ``θ_{t,i} ~ P_{t,i}(· | Ψ_t)`` for every i.

    Args:
        prior, G, B, effects: as :func:`action_conditional` and :func:`effect_posterior`.
        rng: the only source of randomness.
        n_samples: S independent joint draws.

    Returns:
        Ψ draws (S, L·d) and θ draws (S, K, d).
    """
    z_psi = rng.standard_normal((n_samples, effects.mean.shape[0]))
    # Ψ = μ̄ + R⁻ᵀ z has covariance R⁻ᵀ R⁻¹ = (R Rᵀ)⁻¹ = Σ̄.
    Psi = effects.mean + scipy.linalg.solve_triangular(effects.precision_chol, z_psi.T, lower=True, trans="T").T
    mean, cov = action_conditional(prior, G, B, Psi)
    chol = np.linalg.cholesky(cov)
    z_theta = rng.standard_normal((n_samples, prior.n_actions, prior.dim))
    theta = mean + np.einsum("ijk,sik->sij", chol, z_theta)
    return Psi, theta


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = scipy.special.expit(z)
    return out


def logistic_laplace(
    X: FloatArray,
    y: FloatArray,
    ridge: float,
    theta0: FloatArray | None = None,
    prior_mean: FloatArray | None = None,
    prior_precision: FloatArray | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> tuple[FloatArray, FloatArray]:
    """The mode of a logistic log-likelihood plus a Gaussian log-prior, by damped Newton.

    Maximises ``Σ_ℓ (Y_ℓ X_ℓᵀθ − log(1 + exp(X_ℓᵀθ))) − ½ (θ − m)ᵀ Λ (θ − m)`` with ``Λ = ridge·I`` and ``m = 0``
    unless ``prior_precision``/``prior_mean`` are given.

    Args:
        X: (n, d) contexts of one action's observations.
        y: (n,) rewards in {0, 1}.
        ridge: λ of the default ``Λ = λI`` (ignored when ``prior_precision`` is given).
        theta0: (d,) Newton start (the previous mode warm-starts the online case).
        prior_mean: (d,) m.
        prior_precision: (d, d) Λ.

    Returns:
        the mode μ (d,) and the likelihood curvature at it, ``G^{LAP} = Σ_ℓ ḟ(X_ℓᵀμ) X_ℓX_ℓᵀ``, (d, d) (the
        prior's Λ is not included, so that ``G^{LAP}`` plugs into the slides' formulas as the data term).
    """
    d = X.shape[1]
    lam = ridge * np.eye(d) if prior_precision is None else prior_precision
    m0 = np.zeros(d) if prior_mean is None else prior_mean
    theta = np.zeros(d) if theta0 is None else np.array(theta0, dtype=np.float64)

    def objective(t: FloatArray) -> float:
        z = X @ t
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * (t - m0) @ lam @ (t - m0))

    value = objective(theta)
    for _ in range(max_iter):
        p = _sigmoid(X @ theta)
        grad = X.T @ (p - y) + lam @ (theta - m0)
        hess = (X.T * (p * (1.0 - p))) @ X + lam
        step = np.linalg.solve(hess, grad)
        # Backtracking keeps the (strictly convex) objective decreasing far from the mode.
        scale = 1.0
        while scale > 1e-8:
            candidate = theta - scale * step
            new_value = objective(candidate)
            if new_value <= value:
                break
            scale *= 0.5
        theta, value = candidate, new_value
        if float(np.abs(scale * step).max()) < tol:
            break
    p = _sigmoid(X @ theta)
    return theta, (X.T * (p * (1.0 - p))) @ X
