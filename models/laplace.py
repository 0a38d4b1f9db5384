"""Linearised Laplace approximation over the last layer of each outcome head.

The network (models/neural.py) maps a (user, item) pair to last hidden features φ ∈ R^h; each
outcome k has a linear last layer ``f_k = φ̃ᵀθ_k`` with ``φ̃ = [φ; 1]`` (bias included). With the
trunk held fixed, the generalised Gauss–Newton (GGN) posterior of θ_k is Gaussian with

    Bernoulli (p = σ(f)):  precision  H_k = λI + Σᵢ pᵢ(1−pᵢ) φ̃ᵢφ̃ᵢᵀ   at the MAP (Laplace, exact GGN)
    Gaussian (noise σ²):   precision  H_k = λI + Σᵢ φ̃ᵢφ̃ᵢᵀ / σ²     (exact: the model is linear in θ_k)

so each head *is* a :class:`~models.logistic.BayesianLogisticHead` or a
:class:`~models.posterior.BayesianLinearHead` over φ̃, and gets their updates: Newton/IRLS
for the MAP, one online Newton/RLS step per new observation.

Thompson sampling with temperature τ (τ scales the covariance, ``θ ~ N(θ̂, τH⁻¹)``):

* ``mode="marginal"`` (default): one independent draw per pair from the predictive
  distribution of its linear predictor, ``f ~ N(φ̃ᵀθ̂, τ φ̃ᵀH⁻¹φ̃)``. Every pair is a separate
  Thompson sample of its own score; correlations between pairs are not kept. This is what
  the LP consumes (one coefficient per pair) and it costs one extra (n, h)×(h, h) product per head.
* ``mode="joint"``: one weight draw ``θ ~ N(θ̂, τH⁻¹)`` per head per call, shared by every pair
  in the call (classical LinTS; pairs are correlated).

τ = 0 returns the MAP scores exactly in both modes (``μ + 0·s·z == μ`` bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import torch

from banditlp.arrays import FloatArray
from models.errors import ModelInputError
from models.logistic import BayesianLogisticHead, LogisticHeadConfig
from models.posterior import BayesianLinearHead, LinearHeadConfig

Likelihood = Literal["bernoulli", "gaussian"]
SampleMode = Literal["marginal", "joint"]


@dataclass(frozen=True)
class OutcomeSpec:
    """One outcome head.

    Attributes:
        name: outcome name, the key of every score dict (e.g. ``"conversion"``).
        likelihood: ``"bernoulli"`` (scores are probabilities) or ``"gaussian"`` (values).
        noise_variance: σ² of a Gaussian head (ignored for Bernoulli).
        loss_weight: weight of this head's loss in joint training.
    """

    name: str
    likelihood: Likelihood = "bernoulli"
    noise_variance: float = 1.0
    loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise ModelInputError(f"unknown likelihood {self.likelihood!r}")
        if not (np.isfinite(self.noise_variance) and self.noise_variance > 0):
            raise ModelInputError("noise_variance must be > 0")
        if not self.name:
            raise ModelInputError("outcome name must not be empty")


Head = BayesianLogisticHead | BayesianLinearHead


class LastLayerLaplace:
    """Per-outcome Gaussian posteriors over the last layer, plus a torch scoring cache.

    Args:
        outcomes: the heads, in column order of the outcome matrices.
        feature_dim: dimension of φ̃ (hidden width + 1 for the bias).
        prior_precision: λ of the ``N(0, λ⁻¹I)`` prior on every θ_k.
        gamma: discount γ for the online updates (see models/posterior.py).
    """

    def __init__(
        self, outcomes: tuple[OutcomeSpec, ...], feature_dim: int, prior_precision: float, gamma: float = 1.0
    ) -> None:
        self.outcomes = outcomes
        self.feature_dim = int(feature_dim)
        self.prior_precision = float(prior_precision)
        self.gamma = float(gamma)
        self.heads: dict[str, Head] = {o.name: self._new_head(o) for o in outcomes}
        self._cache: dict[str, torch.Tensor] | None = None

    def _new_head(self, spec: OutcomeSpec) -> Head:
        if spec.likelihood == "bernoulli":
            return BayesianLogisticHead(LogisticHeadConfig(self.feature_dim, self.prior_precision, self.gamma))
        return BayesianLinearHead(
            LinearHeadConfig(self.feature_dim, self.prior_precision, spec.noise_variance, self.gamma)
        )

    # -- learning (numpy, float64) ----------------------------------------------------------
    def rebuild(self, phi: FloatArray, Y: FloatArray) -> None:
        """Rebuild every head from scratch on retained data (after the trunk changed).

        Args:
            phi: (n, feature_dim) φ̃ rows, oldest first.
            Y: (n, k) outcomes; NaN marks an outcome not observed for that row.
        """
        for j, spec in enumerate(self.outcomes):
            head = self._new_head(spec)
            seen = ~np.isnan(Y[:, j])
            if isinstance(head, BayesianLogisticHead):
                head.fit(phi[seen], Y[seen, j])
            else:
                head.update_batch(phi[seen], Y[seen, j])
            self.heads[spec.name] = head
        self._cache = None

    def update(self, phi: FloatArray, Y: FloatArray) -> None:
        """Online update with new rows: RLS for Gaussian heads, Newton step(s) for Bernoulli ones.

        Args:
            phi: (m, feature_dim) φ̃ rows, oldest first.
            Y: (m, k) outcomes; NaN marks an outcome not observed for that row.
        """
        for j, spec in enumerate(self.outcomes):
            seen = ~np.isnan(Y[:, j])
            if np.any(seen):
                self.heads[spec.name].update_batch(phi[seen], Y[seen, j])
        self._cache = None

    # -- scoring (torch) --------------------------------------------------------------------
    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """MAP weights (h, k) and stacked L_k⁻ᵀ (h, k·h) in float64 on ``device`` (cached)."""
        if self._cache is None or self._cache["W"].device != device:
            W = np.stack([self.heads[o.name].mean for o in self.outcomes], axis=1)
            eye = np.eye(self.feature_dim)
            # L_k⁻ᵀ: Σ_k = L_k⁻ᵀL_k⁻¹, so ||L_k⁻¹φ̃||² = φ̃ᵀΣ_kφ̃ and θ̂ + L_k⁻ᵀz ~ N(θ̂, Σ_k).
            inv_t = [
                scipy.linalg.solve_triangular(self.heads[o.name].cholesky(), eye, lower=True).T for o in self.outcomes
            ]
            LinvT = torch.from_numpy(np.concatenate(inv_t, axis=1)).to(device)
            self._cache = {"W": torch.from_numpy(W).to(device), "LinvT": LinvT, "LinvT32": LinvT.to(torch.float32)}
        return self._cache

    def mean_logits(self, phi: torch.Tensor) -> torch.Tensor:
        """MAP linear predictors ``φ̃ᵀθ̂_k``.

        Args:
            phi: (n, h) float64 φ̃ rows.

        Returns:
            (n, k) logits (Bernoulli heads) or values (Gaussian heads).
        """
        return phi @ self._tensors(phi.device)["W"]

    def std_logits(self, phi: torch.Tensor) -> torch.Tensor:
        """Posterior std of each linear predictor, ``sqrt(φ̃ᵀH_k⁻¹φ̃)``; (n, h) -> (n, k) float64.

        The (n, h)×(h, k·h) product runs in float32: it is the dominant cost of a marginal
        sample (twice as fast as float64 on CPU), a sum of squares has no cancellation (relative
        error ~1e-6), and φ comes from a float32 trunk anyway. Means stay float64, so τ = 0
        still reproduces the MAP scores bit for bit.
        """
        t = self._tensors(phi.device)
        V = (phi.to(torch.float32) @ t["LinvT32"]).view(phi.shape[0], len(self.outcomes), self.feature_dim)
        return torch.sqrt((V * V).sum(dim=-1)).to(torch.float64)

    def marginal_draw(
        self, phi: torch.Tensor, tau: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A marginal Thompson sample with the mean and std it was drawn from, in one pass.

        ``f = φ̃ᵀθ̂ + sqrt(τ)·sqrt(φ̃ᵀH⁻¹φ̃)·z``, ``z ~ N(0, 1)`` per pair and head: the draw of
        ``sample_logits(mode="marginal")``, for callers that publish the mean and std too.

        Returns:
            ``(sample, mean, std)``, each (n, k) float64.
        """
        samples, mean, std = self.marginal_draws(phi, tau, 1, generator)
        return samples[0], mean, std

    def marginal_draws(
        self, phi: torch.Tensor, tau: float, n_draws: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n_draws`` independent marginal Thompson samples per pair and head, in one pass.

        The mean and std are computed once; the draws differ only in ``z``. Draw 0 is the
        sample ``marginal_draw`` returns with the same generator.

        Returns:
            ``(samples (n_draws, n, k), mean (n, k), std (n, k))``, float64.
        """
        mean = phi @ self._tensors(phi.device)["W"]
        std = self.std_logits(phi)
        z = torch.randn((n_draws, *mean.shape), generator=generator, device=phi.device, dtype=phi.dtype)
        return mean + float(np.sqrt(tau)) * std * z, mean, std

    def sample_logits(
        self, phi: torch.Tensor, tau: float, generator: torch.Generator | None, mode: SampleMode = "marginal"
    ) -> torch.Tensor:
        """Thompson samples of the linear predictors (see the module docstring for the modes).

        Args:
            phi: (n, h) float64 φ̃ rows.
            tau: temperature τ ≥ 0 scaling the covariance.
            generator: torch generator on ``phi.device`` (None: torch's global one).
            mode: ``"marginal"`` (independent per pair) or ``"joint"`` (one weight draw per call).

        Returns:
            (n, k) sampled logits / values.
        """
        t = self._tensors(phi.device)
        k, h = len(self.outcomes), self.feature_dim
        scale = float(np.sqrt(tau))
        if mode == "marginal":
            return self.marginal_draw(phi, tau, generator)[0]
        if mode == "joint":
            z = torch.randn((k, h), generator=generator, device=phi.device, dtype=phi.dtype)
            LinvT = t["LinvT"].view(h, k, h)
            # per head: θ = θ̂_k + sqrt(τ) L_k⁻ᵀ z_k
            W = t["W"] + scale * torch.einsum("ikj,kj->ik", LinvT, z)
            return phi @ W
        raise ModelInputError(f"unknown sampling mode {mode!r}")
