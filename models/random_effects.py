"""Per-user random effects: many tiny linear-Gaussian heads, sampled and updated in batches.

The stream layer keeps one head per user in a RocksDB table and scores a few hundred users
at a time. Each head models the residual of the global (fixed-effect) model on the user's
own feedback, ``y - p_global = z^T w_u + noise``, with ``z`` the item features (k small)
and the prior ``w_u ~ N(0, prior_precision^-1 I)``: the mixed-effect reading of the
conversion model, in which the network is the fixed effect shared by everyone and ``w_u``
is the user's effect ("Mixed-Effect Thompson Sampling", Aouali et al., AISTATS 2023, arXiv
2205.15124; its linear case).

State of a head: precision ``A = prior_precision I + sum z z^T / noise_var`` (k, k) and
``b = sum z y / noise_var`` (k,); the posterior is ``N(A^-1 b, A^-1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from banditlp.arrays import FloatArray


@dataclass(frozen=True)
class RandomEffectConfig:
    """Prior and noise of every user's head.

    Attributes:
        dim: k, the width of the item features the effect acts on.
        prior_precision: lambda of the prior N(0, lambda^-1 I); large values keep users
            close to the global model until they have feedback.
        noise_var: sigma^2 of the residual (a Bernoulli residual has variance <= 1/4).
    """

    dim: int
    prior_precision: float = 25.0
    noise_var: float = 0.25

    def prior(self) -> tuple[FloatArray, FloatArray]:
        """Fresh ``(A (k, k), b (k,))`` of a user with no feedback."""
        return self.prior_precision * np.eye(self.dim), np.zeros(self.dim)


def posterior_mean(A: FloatArray, b: FloatArray) -> FloatArray:
    """Posterior means ``(n_users, k)`` of stacked heads ``A (n_users, k, k)``, ``b (n_users, k)``."""
    mean: FloatArray = np.linalg.solve(A, b[..., None])[..., 0].astype(np.float64, copy=False)
    return mean


def sample_effects(A: FloatArray, b: FloatArray, tau: float | FloatArray, rng: np.random.Generator) -> FloatArray:
    """One Thompson draw per user, ``w_u ~ N(A^-1 b, tau A^-1)``.

    Args:
        A: (n_users, k, k) precisions. b: (n_users, k).
        tau: temperature (scalar or (n_users,)); 0 returns the means exactly.

    Returns:
        (n_users, k) sampled effects.
    """
    first: FloatArray = sample_effects_k(A, b, tau, rng, 1)[0]
    return first


def sample_effects_k(
    A: FloatArray, b: FloatArray, tau: float | FloatArray, rng: np.random.Generator, n_draws: int
) -> FloatArray:
    """``n_draws`` independent Thompson draws per user (one Cholesky factorisation per user).

    Draw 0 is ``sample_effects``'s with the same generator state.

    Returns:
        (n_draws, n_users, k) sampled effects.
    """
    mean = posterior_mean(A, b)
    L = np.linalg.cholesky(A)  # A = L L^T  =>  L^-T z ~ N(0, A^-1)
    z = rng.standard_normal((n_draws, *b.shape))
    Lt = np.swapaxes(L, -1, -2)
    noise = np.linalg.solve(Lt[None], z[..., None])[..., 0].astype(np.float64, copy=False)
    scale = np.sqrt(np.asarray(tau, dtype=np.float64)).reshape(-1, 1)
    out: FloatArray = mean[None] + scale[None] * noise
    return out


def predictive_std(A: FloatArray, Z: FloatArray) -> FloatArray:
    """Std of ``z^T w_u`` for each candidate: ``sqrt(z^T A^-1 z)``.

    Args:
        A: (n_users, k, k). Z: (n_users, m, k) candidate item features per user.

    Returns:
        (n_users, m).
    """
    sol = np.linalg.solve(A[:, None, :, :], Z[..., None])[..., 0]
    var: FloatArray = np.einsum("umk,umk->um", Z, sol)
    return np.sqrt(np.maximum(var, 0.0))


def update(
    A: FloatArray, b: FloatArray, z: FloatArray, y: FloatArray, noise_var: float
) -> tuple[FloatArray, FloatArray]:
    """Add observations to one head: ``A + Z^T Z / s2``, ``b + Z^T y / s2``.

    Args:
        A: (k, k). b: (k,). z: (m, k) item features of the observed items. y: (m,) residuals.
    """
    return A + z.T @ z / noise_var, b + z.T @ y / noise_var
