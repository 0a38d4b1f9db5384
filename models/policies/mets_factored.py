"""meTS with a factored effect posterior (the slides' "meTS-Lin-Fa"), registered as ``mets_factored``.

The slides name the factored variant only in the legends of their Figures 1 and 2, run in the same
worlds as meTS, beside the complexity slide: the joint effect posterior ``Q_t = N(μ̄_t, Σ̄_t)`` over
``Ψ ∈ R^{Ld}`` costs an (Ld × Ld) factorisation per refresh, O(L³d³). The factored variant keeps
the model of :mod:`models.policies.mets_posterior` (``θ_i | Ψ ~ N(Σ_ℓ b_iℓ ψ_ℓ, Σ_{0,i})``) and the
exact action posteriors ``P_{t,i}(· | Ψ)``, and replaces ``Q_t`` by a product of one Gaussian per
effect, ``q_t(Ψ) = Π_ℓ N(ψ_ℓ; μ̄_ℓ, Λ_ℓℓ⁻¹)``. The slides do not write its formulas; the ones
here are the mean-field (variational) factorisation of the exact Gaussian ``Q_t``, the standard
meaning of a factored Gaussian posterior:

* the precision of ``Q_t`` is ``Λ = Σ_Ψ⁻¹ + Σ_i (b_i b_iᵀ) ⊗ M_i`` with ``M_i = (Σ_{0,i} + G_{t,i}⁻¹)⁻¹``
  (the slides' ``Σ̄_t⁻¹``), and its natural mean ``η = Σ_Ψ⁻¹ μ_Ψ + Σ_i b_i ⊗ m_i`` with
  ``m_i = M_i G_{t,i}⁻¹ B_{t,i}``;
* the factor of effect ℓ has precision ``Λ_ℓℓ`` (the ℓ-th diagonal (d × d) block of Λ) and its mean
  is the coordinate-ascent fixed point ``μ̄_ℓ = Λ_ℓℓ⁻¹ (η_ℓ − Σ_{m≠ℓ} Λ_ℓm μ̄_m)``: block Gauss-Seidel
  on ``Λ μ̄ = η``, warm-started from the previous round's means (a few sweeps, each O(L² d²) after
  L (d × d) Cholesky factors, instead of one O(L³d³) factorisation). Its fixed point is the exact
  posterior mean of Ψ; each factor's covariance ``Λ_ℓℓ⁻¹`` is the conditional covariance of ψ_ℓ given
  the other effects, never wider than its exact marginal (mean-field under-disperses each effect).
  The posterior correlations between effects are dropped, so a mix ``Σ_ℓ b_iℓ ψ_ℓ`` can come out
  wider or narrower than under ``Q_t`` (wider where the data pinned down the sum better than its terms).

Sampling is hierarchical as Algorithm 1, factors then actions: each ``ψ_ℓ ~ N(μ̄_ℓ, Λ_ℓℓ⁻¹)``
independently, then every ``θ_i ~ P_{t,i}(· | Ψ)``. When no two effects share an action (one-hot
mixing, HierTS's structure) and Σ_Ψ is block diagonal, Λ is block diagonal and the factored
posterior is the exact one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.linalg

from banditlp.arrays import FloatArray
from models.errors import ModelInputError
from models.policies.base import PolicyParams
from models.policies.mets import Mets, MetsParams
from models.policies.mets_posterior import EffectPosterior, MixedEffectPrior, f64
from models.policies.registry import register


@dataclass(frozen=True)
class MetsFactoredParams(MetsParams):
    """Parameters of ``mets_factored``: those of ``mets`` plus the coordinate ascent's stopping rule.

    Attributes:
        max_sweeps: most block Gauss-Seidel sweeps per refresh of the effect factors (≥ 1).
        tol: a refresh stops once no mean entry moved by more than ``tol · (1 + max |μ̄|)`` in a sweep.
    """

    max_sweeps: int = 1000
    tol: float = 1e-13

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.max_sweeps, bool) or int(self.max_sweeps) != self.max_sweeps or self.max_sweeps < 1:
            raise ModelInputError(f"max_sweeps must be an integer >= 1, got {self.max_sweeps!r}")
        if not (np.isfinite(self.tol) and self.tol > 0):
            raise ModelInputError(f"tol must be > 0, got {self.tol!r}")


@dataclass(frozen=True, eq=False)
class FactoredEffects:
    """The factors ``q_ℓ = N(μ̄_ℓ, Λ_ℓℓ⁻¹)`` of one refresh.

    Attributes:
        mean: (L, d) factor means μ̄_ℓ.
        precision: (L, d, d) factor precisions Λ_ℓℓ.
        cov: (L, d, d) factor covariances Λ_ℓℓ⁻¹.
        sweeps: Gauss-Seidel sweeps this refresh took.
        converged: whether the last sweep met the tolerance (else ``sweeps == max_sweeps``).
    """

    mean: FloatArray
    precision: FloatArray
    cov: FloatArray
    sweeps: int
    converged: bool

    def as_effect_posterior(self) -> EffectPosterior:
        """The product of the factors as one :class:`EffectPosterior` over the flattened Ψ (block diagonal)."""
        chol = np.linalg.cholesky(self.precision)
        return EffectPosterior(
            mean=f64(self.mean.ravel()),
            cov=f64(scipy.linalg.block_diag(*self.cov)),
            precision_chol=f64(scipy.linalg.block_diag(*chol)),
        )


def effect_precision(
    prior: MixedEffectPrior, M: FloatArray, m: FloatArray, prior_precision: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The precision Λ of the exact effect posterior as (L, d, L, d) blocks, and its natural mean η (L, d).

    Args:
        prior: the model.
        M: (K, d, d) ``(Σ_{0,i} + G_{t,i}⁻¹)⁻¹``.
        m: (K, d) ``(Σ_{0,i} + G_{t,i}⁻¹)⁻¹ G_{t,i}⁻¹ B_{t,i}``.
        prior_precision: (L·d, L·d) ``Σ_Ψ⁻¹``.
    """
    L, d = prior.n_effects, prior.dim
    b = prior.mixing
    blocks = prior_precision.reshape(L, d, L, d) + np.einsum("il,im,ijk->ljmk", b, b, M)
    blocks = 0.5 * (blocks + blocks.transpose(2, 3, 0, 1))
    eta = (prior_precision @ prior.effect_mean.ravel()).reshape(L, d) + np.einsum("il,ij->lj", b, m)
    return f64(blocks), f64(eta)


def factored_effects(
    blocks: FloatArray, eta: FloatArray, start: FloatArray, *, max_sweeps: int = 1000, tol: float = 1e-13
) -> FactoredEffects:
    """Mean-field factors of ``N(Λ⁻¹η, Λ⁻¹)`` by block coordinate ascent from ``start``.

    Args:
        blocks: (L, d, L, d) the precision Λ; ``blocks[ℓ, :, m, :]`` is Λ_ℓm.
        eta: (L, d) the natural mean η.
        start: (L, d) first iterate of the means.
        max_sweeps: most sweeps.
        tol: relative tolerance on the largest change of a sweep.
    """
    L = blocks.shape[0]
    diag = f64(np.stack([blocks[ell, :, ell, :] for ell in range(L)]))
    chols = [scipy.linalg.cho_factor(diag[ell], lower=True) for ell in range(L)]
    mean = np.array(start, dtype=np.float64)
    sweeps, converged = 0, False
    while sweeps < max_sweeps and not converged:
        change = 0.0
        for ell in range(L):
            # Λ_ℓℓ μ̄_ℓ = η_ℓ − Σ_{m≠ℓ} Λ_ℓm μ̄_m, using the effects already updated in this sweep.
            rhs = eta[ell] - np.einsum("jmk,mk->j", blocks[ell], mean) + diag[ell] @ mean[ell]
            new = scipy.linalg.cho_solve(chols[ell], rhs)
            change = max(change, float(np.abs(new - mean[ell]).max()))
            mean[ell] = new
        sweeps += 1
        converged = change <= tol * (1.0 + float(np.abs(mean).max()))
    cov = np.stack([scipy.linalg.cho_solve(c, np.eye(diag.shape[-1])) for c in chols])
    return FactoredEffects(
        mean=mean, precision=diag, cov=f64(0.5 * (cov + np.swapaxes(cov, -1, -2))), sweeps=sweeps, converged=converged
    )


@register
class MetsFactored(Mets):
    """meTS (linear-Gaussian) whose effect posterior is factored over the L effects (module docstring).

    State: ``G`` and ``B`` as ``mets``, plus the (L, d) means the next refresh starts its coordinate
    ascent from (so a restored snapshot refreshes from the same iterate and scores bit for bit alike).
    """

    name: ClassVar[str] = "mets_factored"
    Params: ClassVar[type[PolicyParams]] = MetsFactoredParams
    params: MetsFactoredParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        self._start: FloatArray = f64(self.prior.effect_mean.copy())
        self._factors: FactoredEffects | None = None

    def _refresh(self, rows: np.ndarray | slice) -> None:
        # The factors about to be invalidated are the warm start of the next refresh.
        factors = getattr(self, "_factors", None)
        if factors is not None:
            self._start = factors.mean.copy()
        self._factors = None
        super()._refresh(rows)

    @property
    def factors(self) -> FactoredEffects:
        """The effect factors ``q_{t,ℓ}`` (refreshed when first needed after an update)."""
        if self._factors is None:
            blocks, eta = effect_precision(self.prior, self._M, self._m, self._effect_prec)
            self._factors = factored_effects(
                blocks, eta, self._start, max_sweeps=int(self.params.max_sweeps), tol=float(self.params.tol)
            )
        return self._factors

    @property
    def effects(self) -> EffectPosterior:
        """The factored ``q_t`` as one block-diagonal Gaussian over the flattened Ψ (what draws and marginals use)."""
        if self._effects is None:
            self._effects = self.factors.as_effect_posterior()
        return self._effects

    def _state_arrays(self) -> dict[str, np.ndarray]:
        # Whether the factors are cached: a restored policy then refreshes them at once from the same start,
        # so its warm-start chain, and every later score, is the original's bit for bit.
        cached = np.array(self._factors is not None, dtype=np.int64)
        return {**super()._state_arrays(), "start": self._start.copy(), "factors_cached": cached}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        start = np.asarray(arrays["start"], dtype=np.float64)
        if start.shape != self._start.shape:
            raise ModelInputError(f"state 'start' of shape {start.shape} does not fit {self._start.shape}")
        super()._load_state(arrays)
        self._start = start.copy()
        if int(arrays["factors_cached"]):
            _ = self.factors
