"""Bayesian logistic head with a Laplace approximation, for binary rewards.

Binary rewards as in §5 of the book chapter "Chapter 16: Contextual Bandits: Personalized
Exploration and Exploitation".

Model: ``P(y=1 | x) = σ(xᵀw)`` with prior ``w ~ N(m₀, P₀⁻¹)`` (initially ``m₀ = 0, P₀ = λI``).
The Laplace approximation is ``N(ŵ, H⁻¹)`` at the MAP

    ŵ = argmin_w  Σᵢ [−yᵢ log pᵢ − (1−yᵢ) log(1−pᵢ)] + ½ (w−m₀)ᵀ P₀ (w−m₀),   pᵢ = σ(xᵢᵀw)
    H = P₀ + Σᵢ pᵢ(1−pᵢ) xᵢxᵢᵀ  evaluated at ŵ,

found by Newton's method (IRLS) with a backtracking line search.

Online path (the "assumed-density" Laplace update of Chapelle & Li, 2011): after a batch has
been absorbed, the current Laplace Gaussian ``N(ŵ, H⁻¹)`` becomes the prior for the next batch —
optionally discounted as in the linear head, ``P₀ ← γH + (1−γ)λI`` — and a few Newton steps
(``online_newton_steps``, default 1) from ``ŵ`` on the new rows give the new mean; the new
precision is ``P₀ + Σ pᵢ(1−pᵢ)xᵢxᵢᵀ`` at that mean. One Newton step from the old MAP is exact
to first order in the new batch's weight and costs O(n d² + d³). :meth:`BayesianLogisticHead.fit`
instead solves the full-data problem from the original prior to convergence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike
from scipy.special import expit, log_expit

from banditlp.arrays import FloatArray
from models.errors import ModelError, ModelInputError
from models.inputs import as_matrix, as_targets, check_discount, check_positive, read_only_view
from models.posterior import GaussianWeightPosterior
from models.snapshot import SnapshotMixin, register_kind


@dataclass(frozen=True)
class LogisticHeadConfig:
    """Configuration of a :class:`BayesianLogisticHead`.

    Attributes:
        dim: feature dimension d.
        prior_precision: λ > 0; the initial prior is ``N(0, λ⁻¹I)``.
        gamma: discount γ ∈ (0, 1] applied to the precision before each online batch.
        max_newton_steps: cap on Newton steps in :meth:`BayesianLogisticHead.fit`.
        tol: last full step once the Newton decrement ``gᵀH⁻¹g`` falls below ``tol``.
        online_newton_steps: Newton steps per online update (1 = one IRLS step).
    """

    dim: int
    prior_precision: float = 1.0
    gamma: float = 1.0
    max_newton_steps: int = 100
    tol: float = 1e-12
    online_newton_steps: int = 1

    def __post_init__(self) -> None:
        if int(self.dim) < 1:
            raise ModelInputError(f"dim must be >= 1, got {self.dim}")
        check_positive(self.prior_precision, "prior_precision")
        check_discount(self.gamma)
        if self.max_newton_steps < 1 or self.online_newton_steps < 1:
            raise ModelInputError("Newton step counts must be >= 1")


def _sigmoid(f: FloatArray) -> FloatArray:
    """``σ(f) = 1 / (1 + e^{-f})`` elementwise, by ``scipy.special.expit`` (stable for large ``|f|``)."""
    p: FloatArray = expit(f)
    return p


def newton_map(
    X: FloatArray,
    y: FloatArray,
    prior_mean: FloatArray,
    prior_precision: FloatArray,
    start: FloatArray,
    max_steps: int,
    tol: float,
) -> tuple[FloatArray, FloatArray, int]:
    """Newton/IRLS for the Gaussian-prior logistic MAP.

    Args:
        X: (n, d) features.
        y: (n,) 0/1 outcomes.
        prior_mean: (d,) m₀.
        prior_precision: (d, d) P₀ (positive definite).
        start: (d,) initial point.
        max_steps: Newton step cap.
        tol: take a last full step and stop once the Newton decrement ``gᵀH⁻¹g`` is below
            ``tol`` (0 runs exactly ``max_steps`` steps).

    Returns:
        ``(w, H, steps)``: the final point (d,), the Hessian ``P₀ + Xᵀdiag(p(1−p))X`` there
        (d, d), and the number of steps taken.
    """

    def objective(w: FloatArray) -> float:
        f = X @ w
        r = w - prior_mean
        # −log σ(f) for y=1, −log σ(−f) for y=0, computed stably.
        return float(-np.sum(y * log_expit(f) + (1.0 - y) * log_expit(-f)) + 0.5 * r @ prior_precision @ r)

    def hessian(w: FloatArray) -> FloatArray:
        p = _sigmoid(X @ w)
        H = prior_precision + X.T @ ((p * (1.0 - p))[:, None] * X)
        return 0.5 * (H + H.T)

    w = start.astype(np.float64, copy=True)
    steps = 0
    while steps < max_steps:
        steps += 1
        p = _sigmoid(X @ w)
        g = X.T @ (p - y) + prior_precision @ (w - prior_mean)
        H = hessian(w)
        try:
            step = scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, lower=True), g)
        except np.linalg.LinAlgError as exc:
            raise ModelError("logistic Hessian is not positive definite") from exc
        decrement = float(g @ step)
        if decrement < tol:
            # In the quadratic-convergence zone: take the full step (error ~ step²) and stop;
            # a line search here would only compare objectives at rounding level.
            w = w - step
            break
        # Backtracking (Armijo) keeps Newton monotone far from the optimum; near it t = 1.
        t, f0 = 1.0, objective(w)
        while t > 1e-10 and objective(w - t * step) > f0 - 0.25 * t * decrement:
            t *= 0.5
        w = w - t * step
    return w, hessian(w), steps


@register_kind
class BayesianLogisticHead(GaussianWeightPosterior, SnapshotMixin):
    """Logistic head with a Laplace posterior ``N(ŵ, H⁻¹)`` over its weights.

    Samples are drawn in logit space and mapped through the sigmoid.
    """

    snapshot_kind: ClassVar[str] = "logistic_head"

    def __init__(self, config: LogisticHeadConfig) -> None:
        super().__init__(config.dim)
        self.config = config
        self._w = np.zeros(config.dim)
        self._H = config.prior_precision * np.eye(config.dim)
        self.n_obs = 0

    @property
    def precision(self) -> FloatArray:
        """(d, d) Laplace precision H (read-only view)."""
        return read_only_view(self._H)

    @property
    def mean(self) -> FloatArray:
        """(d,) MAP weights ŵ (read-only view)."""
        return read_only_view(self._w)

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike) -> int:
        """Fit from scratch: MAP under the prior ``N(0, λ⁻¹I)`` by Newton to convergence.

        Args:
            X: (n, d) features.
            y: (n,) 0/1 outcomes.

        Returns:
            The number of Newton steps taken.
        """
        X = as_matrix(X, self.dim)
        y = as_targets(y, X.shape[0], binary=True)
        cfg = self.config
        zero = np.zeros(self.dim)
        self._w, self._H, steps = newton_map(
            X, y, zero, cfg.prior_precision * np.eye(self.dim), zero, cfg.max_newton_steps, cfg.tol
        )
        self.n_obs = X.shape[0]
        self._invalidate()
        return steps

    def update_batch(self, X: ArrayLike, y: ArrayLike, n_steps: int | None = None) -> None:
        """Online Laplace update: the current posterior (discounted by γ) is the prior.

        Args:
            X: (n, d) new features.
            y: (n,) new 0/1 outcomes.
            n_steps: Newton steps from the current mean (``config.online_newton_steps`` when None).
        """
        X = as_matrix(X, self.dim)
        y = as_targets(y, X.shape[0], binary=True)
        if X.shape[0] == 0:
            return
        cfg = self.config
        prior_P = self._H
        if cfg.gamma != 1.0:
            prior_P = cfg.gamma * self._H + (1.0 - cfg.gamma) * cfg.prior_precision * np.eye(self.dim)
        steps = cfg.online_newton_steps if n_steps is None else int(n_steps)
        self._w, self._H, _ = newton_map(X, y, self._w.copy(), prior_P, self._w, steps, 0.0)
        self.n_obs += X.shape[0]
        self._invalidate()

    def update(self, x: ArrayLike, y: float) -> None:
        """Online Laplace update with one observation; see :meth:`update_batch`.

        Args:
            x: (d,) features.
            y: 0/1 outcome.
        """
        self.update_batch(np.asarray(x, dtype=np.float64).reshape(1, -1), [y])

    # -- scoring ----------------------------------------------------------------------------
    def mean_probability(self, X: ArrayLike) -> FloatArray:
        """MAP plug-in probability ``σ(xᵀŵ)``; (n, d) -> (n,)."""
        return _sigmoid(self.predictive_mean(X))

    def predictive_probability(self, X: ArrayLike) -> FloatArray:
        """Posterior-averaged probability by the probit approximation.

        ``E[σ(f)] ≈ σ(μ / sqrt(1 + π s²/8))`` with ``f ~ N(μ, s²)``, ``μ = xᵀŵ``, ``s² = xᵀH⁻¹x``.

        Args:
            X: (n, d) features.

        Returns:
            (n,) probabilities.
        """
        X = as_matrix(X, self.dim)
        s = self.predictive_std(X)
        return _sigmoid((X @ self._w) / np.sqrt(1.0 + np.pi * s * s / 8.0))

    def sample_probabilities(
        self, X: ArrayLike, n_samples: int, generator: np.random.Generator, tau: float = 1.0
    ) -> FloatArray:
        """Thompson samples of ``σ(xᵀw)``, ``w ~ N(ŵ, τH⁻¹)`` (joint draw per sample).

        Args:
            X: (n, d) features.
            n_samples: number of draws.
            generator: a seeded numpy generator.
            tau: temperature τ ≥ 0.

        Returns:
            (n_samples, n) probabilities.
        """
        return _sigmoid(self.sample(X, n_samples, generator, tau))

    def ucb_probability(self, X: ArrayLike, alpha: float = 1.0) -> FloatArray:
        """Optimistic probability ``σ(xᵀŵ + α sqrt(xᵀH⁻¹x))``; (n, d) -> (n,)."""
        return _sigmoid(self.ucb(X, alpha))

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot_config(self) -> dict[str, Any]:
        """The configuration as JSON values."""
        return asdict(self.config)

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """The learned state (mean, precision, n_obs)."""
        return {"mean": self._w.copy(), "precision": self._H.copy(), "n_obs": np.array(self.n_obs, dtype=np.int64)}

    @classmethod
    def from_snapshot_parts(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        """Rebuild from :meth:`snapshot_config` / :meth:`snapshot_arrays` output."""
        head = cls(LogisticHeadConfig(**config))
        head.set_state(arrays["mean"], arrays["precision"], int(arrays["n_obs"]))
        return head

    def set_state(self, mean: ArrayLike, precision: ArrayLike, n_obs: int = 0) -> None:
        """Replace the posterior with ``N(mean, precision⁻¹)`` (e.g. restored from a table).

        Args:
            mean: (d,) weights.
            precision: (d, d) symmetric positive-definite precision.
            n_obs: observations behind it.
        """
        w = np.asarray(mean, dtype=np.float64)
        H = np.asarray(precision, dtype=np.float64)
        if w.shape != (self.dim,) or H.shape != (self.dim, self.dim):
            raise ValueError(f"mean/precision do not match dim {self.dim}")
        self._w, self._H, self.n_obs = w.copy(), H.copy(), int(n_obs)
        self._invalidate()
