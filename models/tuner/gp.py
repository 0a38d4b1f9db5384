"""One Gaussian process per metric: BoTorch's ``SingleTaskGP`` with a Matérn-5/2 kernel.

The seed's hierarchical model, per metric i: ``m_i(x) = f_i(x) + ε``, ``ε ~ N(0, σ_i²)``, and
``f_i ~ GP(μ_i, K_i)`` with a constant mean μ_i and ``K_i`` a scaled Matérn-5/2 kernel with one length
scale per dimension (ARD). Inputs are mapped from the box to [0, 1]^d (``Normalize`` with the box as its
fixed bounds, so the map does not move as observations arrive) and outcomes standardised
(``Standardize``), so the kernel's priors mean the same for every metric's units. The noise σ_i² is
either given (a fixed-noise likelihood) or learned with the kernel hyperparameters by maximising the exact
marginal likelihood (``fit_gpytorch_mll``, L-BFGS-B from the prior's mode).

The priors are BoTorch's classic Matérn defaults on standardised data (length scale Gamma(3, 6), output
scale Gamma(2, 0.15)): with a few dozen noisy observations the marginal likelihood alone often prefers
a degenerate fit (a flat function explained as noise, or a length scale far below the point spacing).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from botorch.posteriors import GPyTorchPosterior
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray
from models.errors import ModelError, ModelInputError
from models.inputs import as_matrix, as_targets

DTYPE = torch.float64


def _box(bounds: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """(2, d) tensor of the box's lower and upper corners, BoTorch's bounds layout."""
    return torch.tensor(bounds, dtype=DTYPE).T.contiguous()


def build_metric_gp(
    X: ArrayLike,
    y: ArrayLike,
    bounds: tuple[tuple[float, float], ...],
    noise_variance: float | None = None,
) -> SingleTaskGP:
    """The GP of one metric on its observations, with hyperparameters at their initial values (not fitted).

    Args:
        X: (n, d) observed settings, inside the box.
        y: (n,) that metric's noisy observations at them.
        bounds: the box, ``((lo_1, hi_1), …)``.
        noise_variance: σ² in the metric's units (a fixed-noise likelihood), or ``None`` to learn it.

    Raises:
        ShapeError / ModelInputError: malformed or non-finite inputs, or fewer than one observation.
    """
    d = len(bounds)
    Xa = as_matrix(X, d)
    ya = as_targets(y, Xa.shape[0])
    if Xa.shape[0] < 1:
        raise ModelInputError("a metric's GP needs at least one observation")
    train_X = torch.as_tensor(Xa, dtype=DTYPE)
    train_Y = torch.as_tensor(ya, dtype=DTYPE).unsqueeze(-1)
    train_Yvar = None if noise_variance is None else torch.full_like(train_Y, float(noise_variance))
    covar = ScaleKernel(
        MaternKernel(nu=2.5, ard_num_dims=d, lengthscale_prior=GammaPrior(3.0, 6.0)),
        outputscale_prior=GammaPrior(2.0, 0.15),
    )
    return SingleTaskGP(
        train_X,
        train_Y,
        train_Yvar=train_Yvar,
        covar_module=covar,
        input_transform=Normalize(d=d, bounds=_box(bounds)),
        outcome_transform=Standardize(m=1),
    )


def fit_metric_gp(
    X: ArrayLike,
    y: ArrayLike,
    bounds: tuple[tuple[float, float], ...],
    noise_variance: float | None = None,
    seed: int = 0,
) -> SingleTaskGP:
    """:func:`build_metric_gp` with its hyperparameters set by maximising the marginal likelihood.

    ``fit_gpytorch_mll`` restarts from prior samples when an optimisation fails, drawing from torch's
    global generator; the fit runs in a forked generator state seeded with ``seed``, so it is reproducible
    and leaves the caller's state untouched.

    Returns:
        The fitted model, in eval mode.

    Raises:
        ModelError: the optimiser failed on every attempt.
    """
    gp = build_metric_gp(X, y, bounds, noise_variance)
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.simplefilter("ignore")  # optimisation warnings on tiny data sets are retried, then raised below
        try:
            fit_gpytorch_mll(mll)
        except Exception as exc:  # botorch raises its own ModelFittingError and optimiser errors
            raise ModelError(f"GP hyperparameter fit failed: {exc}") from exc
    gp.eval()
    return gp


def joint_posterior(gp: SingleTaskGP, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """The joint posterior of the latent ``f`` (no observation noise) at N settings, in the metric's units.

    Args:
        gp: a fitted metric GP.
        X: (N, d) settings.

    Returns:
        ``(mean, cov)``: (N,) posterior mean and (N, N) posterior covariance.
    """
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=DTYPE)
    gp.eval()
    with torch.no_grad():
        post = gp.posterior(Xt)
        if not isinstance(post, GPyTorchPosterior):  # SingleTaskGP untransforms into a GPyTorchPosterior
            raise ModelError(f"unexpected posterior type {type(post).__name__}")
        mean = post.mean.squeeze(-1).numpy().astype(np.float64)
        # a single-output posterior is (N, 1); its covariance over the N points is (N, N)
        cov = post.covariance_matrix.numpy().astype(np.float64)
    return mean, 0.5 * (cov + cov.T)
