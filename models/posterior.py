"""Gaussian weight posteriors: the linear-Gaussian head (LinTS / LinUCB) and its shared surface.

Model (§2–§3 of the book chapter "Chapter 16: Contextual Bandits: Personalized Exploration and
Exploitation", "the chapter" below): a reward ``y = xᵀθ + ε``, ``ε ~ N(0, σ²)``, prior
``θ ~ N(0, λ⁻¹ I)``. The posterior is Gaussian with

    precision  A = λI + Σ_s xₛxₛᵀ / σ²,        b = Σ_s yₛxₛ / σ²,
    mean       θ̂ = A⁻¹ b,                      covariance Σ = A⁻¹.

(The chapter writes ``A = λI + Σ xxᵀ`` with covariance ``σ²A⁻¹``; we fold σ² into A so the prior
is exactly ``N(0, λ⁻¹I)`` for every σ². For σ² = 1 the two coincide.)

Discounting for non-stationarity (chapter §5: "A ← γA, b ← γb with γ < 1"). We apply the
discount to the *data* terms only and keep the prior fixed ("stabilised forgetting"):

    per observation:  A ← γA + (1−γ)λI + xxᵀ/σ²,    b ← γb + yx/σ²
    closed form:      A_n = λI + Σ_{i≤n} γ^{n−i} xᵢxᵢᵀ/σ²,    b_n = Σ_{i≤n} γ^{n−i} yᵢxᵢ/σ².

Discounting A whole (prior included) would let ``γⁿλ → 0`` in unexplored directions, so A
would become singular after a long quiet spell; re-adding ``(1−γ)λI`` keeps ``A ⪰ λI`` and the
posterior never wider than the prior. With γ = 1 it is the chapter's undiscounted update.
:meth:`BayesianLinearHead.update_batch` applies the same closed form to n ordered rows, so a
batch equals n calls of :meth:`BayesianLinearHead.update`.

Cost: an update adds into A and b (O(d²), exact, no drift); the Cholesky factor of A is
computed lazily on the next read (O(d³/3)) and cached until the next update. For a stream where
a per-user head is updated far more often than a Sherman–Morrison inverse would be read, this is
cheaper and numerically safer (an SM-updated inverse drifts, and a discounted update with the
``(1−γ)λI`` term is not rank-1 anyway).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, ClassVar, Self

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray, IntArray
from models.errors import ModelError, ModelInputError, ShapeError
from models.inputs import as_matrix, as_targets, as_vector, check_discount, check_positive, read_only_view
from models.snapshot import SnapshotMixin, register_kind


class GaussianWeightPosterior:
    """A Gaussian ``N(mean, precision⁻¹)`` over a weight vector of dimension ``dim``.

    The shared read surface of every head in this package: covariance, per-row predictive
    standard deviation of the linear predictor ``f = xᵀw``, Thompson samples and UCB scores.
    Subclasses provide :attr:`precision` and :attr:`mean` and call :meth:`_invalidate` after
    changing them.
    """

    dim: int

    def __init__(self, dim: int) -> None:
        if int(dim) < 1:
            raise ModelInputError(f"dim must be >= 1, got {dim}")
        self.dim = int(dim)
        self._chol: FloatArray | None = None

    # -- to be provided by subclasses -------------------------------------------------------
    @property
    def precision(self) -> FloatArray:
        """(d, d) posterior precision matrix."""
        raise NotImplementedError

    @property
    def mean(self) -> FloatArray:
        """(d,) posterior mean."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._chol = None

    def cholesky(self) -> FloatArray:
        """Lower Cholesky factor L of the precision, ``A = L Lᵀ`` (cached; do not modify).

        Raises:
            ModelError: the precision is not numerically positive definite.
        """
        if self._chol is None:
            try:
                self._chol = np.linalg.cholesky(self.precision).astype(np.float64, copy=False)
            except np.linalg.LinAlgError as exc:
                raise ModelError("posterior precision is not positive definite") from exc
        return self._chol

    def covariance(self) -> FloatArray:
        """(d, d) posterior covariance ``Σ = A⁻¹``."""
        L = self.cholesky()
        cov: FloatArray = scipy.linalg.cho_solve((L, True), np.eye(self.dim))
        return 0.5 * (cov + cov.T)

    def predictive_mean(self, X: ArrayLike) -> FloatArray:
        """Posterior mean of the linear predictor per row.

        Args:
            X: (n, d) features.

        Returns:
            (n,) ``X θ̂``.
        """
        return as_matrix(X, self.dim) @ self.mean

    def predictive_std(self, X: ArrayLike) -> FloatArray:
        """Posterior standard deviation of the linear predictor per row, ``sqrt(xᵀA⁻¹x)``.

        This is the uncertainty of the mean reward (the LinUCB width); it excludes the
        observation noise σ².

        Args:
            X: (n, d) features.

        Returns:
            (n,) standard deviations.
        """
        X = as_matrix(X, self.dim)
        # xᵀA⁻¹x = ||L⁻¹x||²: one triangular solve for all rows.
        V = scipy.linalg.solve_triangular(self.cholesky(), X.T, lower=True, check_finite=False)
        var: FloatArray = np.einsum("ij,ij->j", V, V)
        return np.sqrt(var)

    def ucb(self, X: ArrayLike, alpha: float = 1.0) -> FloatArray:
        """LinUCB scores ``xᵀθ̂ + α sqrt(xᵀA⁻¹x)`` (chapter eq. 16.2).

        Args:
            X: (n, d) features.
            alpha: exploration width α ≥ 0.

        Returns:
            (n,) scores.
        """
        X = as_matrix(X, self.dim)
        return X @ self.mean + alpha * self.predictive_std(X)

    def sample_weights(self, n_samples: int, generator: np.random.Generator, tau: float = 1.0) -> FloatArray:
        """Thompson draws of the weights ``w ~ N(θ̂, τ A⁻¹)``.

        Args:
            n_samples: number of draws.
            generator: a seeded numpy generator.
            tau: temperature τ ≥ 0 scaling the covariance (τ = 0 returns the mean exactly).

        Returns:
            (n_samples, d) weight samples.
        """
        if not (np.isfinite(tau) and tau >= 0):
            raise ModelInputError(f"tau must be finite and >= 0, got {tau!r}")
        Z = generator.standard_normal((int(n_samples), self.dim))
        # w = θ̂ + sqrt(τ) L⁻ᵀz has covariance τ L⁻ᵀL⁻¹ = τ A⁻¹.
        noise: FloatArray = scipy.linalg.solve_triangular(
            self.cholesky(), Z.T, lower=True, trans="T", check_finite=False
        )
        return self.mean[None, :] + math.sqrt(tau) * noise.T

    def sample(self, X: ArrayLike, n_samples: int, generator: np.random.Generator, tau: float = 1.0) -> FloatArray:
        """Thompson samples of the linear predictor with one joint weight draw per sample.

        Rows of one sample share the weight draw (the classical LinTS step).

        Args:
            X: (n, d) features.
            n_samples: number of draws.
            generator: a seeded numpy generator.
            tau: temperature τ ≥ 0.

        Returns:
            (n_samples, n) sampled ``xᵀw``.
        """
        X = as_matrix(X, self.dim)
        return self.sample_weights(n_samples, generator, tau) @ X.T

    def sample_marginal(self, X: ArrayLike, generator: np.random.Generator, tau: float = 1.0) -> FloatArray:
        """One independent draw per row from its marginal ``N(xᵀθ̂, τ xᵀA⁻¹x)``.

        Cheaper than a joint draw for many rows and what the LP needs when pairs are scored
        independently; correlations between rows are not kept.

        Args:
            X: (n, d) features.
            generator: a seeded numpy generator.
            tau: temperature τ ≥ 0 (τ = 0 returns the means exactly).

        Returns:
            (n,) samples.
        """
        if not (np.isfinite(tau) and tau >= 0):
            raise ModelInputError(f"tau must be finite and >= 0, got {tau!r}")
        X = as_matrix(X, self.dim)
        mu = X @ self.mean
        return mu + math.sqrt(tau) * self.predictive_std(X) * generator.standard_normal(mu.shape[0])


@dataclass(frozen=True)
class LinearHeadConfig:
    """Configuration of a :class:`BayesianLinearHead`.

    Attributes:
        dim: feature dimension d.
        prior_precision: λ > 0, the prior is ``N(0, λ⁻¹I)``.
        noise_variance: σ² > 0 of the Gaussian observation noise.
        gamma: discount γ ∈ (0, 1]; 1 means no forgetting (see the module docstring).
    """

    dim: int
    prior_precision: float = 1.0
    noise_variance: float = 1.0
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if int(self.dim) < 1:
            raise ModelInputError(f"dim must be >= 1, got {self.dim}")
        check_positive(self.prior_precision, "prior_precision")
        check_positive(self.noise_variance, "noise_variance")
        check_discount(self.gamma)


@lru_cache(maxsize=64)
def _tril_indices(d: int) -> tuple[IntArray, IntArray]:
    return np.tril_indices(d)


def state_size(dim: int) -> int:
    """Length of :meth:`BayesianLinearHead.to_state` for dimension ``dim``: d(d+1)/2 + d + 1."""
    return dim * (dim + 1) // 2 + dim + 1


@register_kind
class BayesianLinearHead(GaussianWeightPosterior, SnapshotMixin):
    """Linear-Gaussian head: LinTS / LinUCB posterior with optional discounting.

    Example:
        >>> head = BayesianLinearHead(LinearHeadConfig(dim=3, prior_precision=1.0))
        >>> head.update(np.array([1.0, 0.0, 2.0]), 0.5)
        >>> head.predictive_std(np.eye(3)).shape
        (3,)
    """

    snapshot_kind: ClassVar[str] = "linear_head"

    def __init__(self, config: LinearHeadConfig) -> None:
        super().__init__(config.dim)
        self.config = config
        self._A = config.prior_precision * np.eye(config.dim)
        self._b = np.zeros(config.dim)
        self.n_obs = 0
        self._mean: FloatArray | None = None

    # -- state ------------------------------------------------------------------------------
    @property
    def precision(self) -> FloatArray:
        """(d, d) precision ``A`` (read-only view)."""
        return read_only_view(self._A)

    @property
    def b(self) -> FloatArray:
        """(d,) precision-weighted mean ``b = Σ γ^{n−i} yᵢxᵢ/σ²`` (read-only view)."""
        return read_only_view(self._b)

    @property
    def mean(self) -> FloatArray:
        """(d,) posterior mean ``θ̂ = A⁻¹b``."""
        if self._mean is None:
            self._mean = scipy.linalg.cho_solve((self.cholesky(), True), self._b)
        return self._mean

    def _invalidate(self) -> None:
        super()._invalidate()
        self._mean = None

    # -- updates ----------------------------------------------------------------------------
    def update(self, x: ArrayLike, y: float) -> None:
        """Add one observation: ``A ← γA + (1−γ)λI + xxᵀ/σ²``, ``b ← γb + yx/σ²``.

        Args:
            x: (d,) features.
            y: observed reward.
        """
        x = as_vector(x, self.dim)
        y = float(as_targets(y, 1)[0])
        cfg = self.config
        if cfg.gamma != 1.0:
            self._A *= cfg.gamma
            self._A[np.diag_indices(self.dim)] += (1.0 - cfg.gamma) * cfg.prior_precision
            self._b *= cfg.gamma
        self._A += np.outer(x, x) / cfg.noise_variance
        self._b += (y / cfg.noise_variance) * x
        self.n_obs += 1
        self._invalidate()

    def update_batch(self, X: ArrayLike, y: ArrayLike) -> None:
        """Add n observations in row order, in closed form (equal to n calls of :meth:`update`).

        ``A ← γⁿA + (1−γⁿ)λI + Σᵢ γ^{n−i} xᵢxᵢᵀ/σ²`` and ``b ← γⁿb + Σᵢ γ^{n−i} yᵢxᵢ/σ²``.

        Args:
            X: (n, d) features, oldest row first.
            y: (n,) rewards.
        """
        X = as_matrix(X, self.dim)
        n = X.shape[0]
        y = as_targets(y, n)
        if n == 0:
            return
        cfg = self.config
        # γ^{n−i} for i = 1..n; the newest row has weight 1.
        w = cfg.gamma ** np.arange(n - 1, -1, -1, dtype=np.float64) / cfg.noise_variance
        decay = cfg.gamma**n
        gram = X.T @ (w[:, None] * X)
        if cfg.gamma != 1.0:
            self._A *= decay
            self._A[np.diag_indices(self.dim)] += (1.0 - decay) * cfg.prior_precision
            self._b *= decay
        self._A += 0.5 * (gram + gram.T)  # exact symmetry keeps the packed state lossless
        self._b += X.T @ (w * y)
        self.n_obs += n
        self._invalidate()

    # -- compact per-key state --------------------------------------------------------------
    def to_state(self) -> FloatArray:
        """The learned state as one float64 vector (for a per-key RocksDB table value).

        Layout: lower triangle of A (row-major, d(d+1)/2), then b (d), then n_obs (1).
        ``state.tobytes()`` is the compact wire form; see :func:`state_size`.

        Returns:
            (d(d+1)/2 + d + 1,) float64 vector.
        """
        rows, cols = _tril_indices(self.dim)
        return np.concatenate([self._A[rows, cols], self._b, [float(self.n_obs)]])

    @classmethod
    def from_state(cls, config: LinearHeadConfig, state: ArrayLike) -> Self:
        """Rebuild a head from :meth:`to_state` output.

        Args:
            config: the head's configuration (not part of the state).
            state: (d(d+1)/2 + d + 1,) vector, or its ``tobytes()``.

        Raises:
            ShapeError: the state's length does not match ``config.dim``.
            ModelInputError: the state contains NaN or inf.
        """
        d = config.dim
        if isinstance(state, (bytes, bytearray, memoryview)):
            state = np.frombuffer(state, dtype=np.float64)
        vec = np.asarray(state, dtype=np.float64)
        if vec.shape != (state_size(d),):
            raise ShapeError(f"state for dim {d} must have shape ({state_size(d)},), got {vec.shape}")
        if not np.all(np.isfinite(vec)):
            raise ModelInputError("state contains NaN or inf")
        head = cls(config)
        rows, cols = _tril_indices(d)
        n_tri = rows.shape[0]
        A = np.zeros((d, d))
        A[rows, cols] = vec[:n_tri]
        A[cols, rows] = vec[:n_tri]
        head._A = A
        head._b = vec[n_tri : n_tri + d].copy()
        head.n_obs = int(vec[-1])
        return head

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot_config(self) -> dict[str, Any]:
        """The configuration as JSON values."""
        return asdict(self.config)

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """The learned state (precision, b, n_obs)."""
        return {"precision": self._A.copy(), "b": self._b.copy(), "n_obs": np.array(self.n_obs, dtype=np.int64)}

    @classmethod
    def from_snapshot_parts(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        """Rebuild from :meth:`snapshot_config` / :meth:`snapshot_arrays` output."""
        head = cls(LinearHeadConfig(**config))
        A, b = np.asarray(arrays["precision"], dtype=np.float64), np.asarray(arrays["b"], dtype=np.float64)
        if A.shape != (head.dim, head.dim) or b.shape != (head.dim,):
            raise ValueError(f"arrays do not match dim {head.dim}")
        head._A, head._b, head.n_obs = A.copy(), b.copy(), int(arrays["n_obs"])
        return head


def stacked_predictive(config: LinearHeadConfig, states: ArrayLike, X: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Posterior mean and std of many small heads at once (e.g. one head per user).

    Args:
        config: the configuration shared by every head.
        states: (k, state_size(d)) stacked :meth:`BayesianLinearHead.to_state` vectors.
        X: (k, m, d) features: m candidate rows per head.

    Returns:
        ``(mean, std)``, each (k, m): ``xᵀθ̂_k`` and ``sqrt(xᵀA_k⁻¹x)``.

    Raises:
        ShapeError: inconsistent shapes.
        ModelError: a precision is not positive definite.
    """
    d = config.dim
    S = np.asarray(states, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] != state_size(d):
        raise ShapeError(f"states must have shape (k, {state_size(d)}), got {S.shape}")
    if X.ndim != 3 or X.shape[0] != S.shape[0] or X.shape[2] != d:
        raise ShapeError(f"X must have shape ({S.shape[0]}, m, {d}), got {X.shape}")
    if not (np.all(np.isfinite(S)) and np.all(np.isfinite(X))):
        raise ModelInputError("states or X contain NaN or inf")
    rows, cols = _tril_indices(d)
    n_tri = rows.shape[0]
    A = np.zeros((S.shape[0], d, d))
    A[:, rows, cols] = S[:, :n_tri]
    A[:, cols, rows] = S[:, :n_tri]
    b = S[:, n_tri : n_tri + d]
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError as exc:
        raise ModelError("a stacked precision is not positive definite") from exc
    # Batched triangular solves via np.linalg.solve on the (triangular) factors.
    Lb = np.linalg.solve(L, b[:, :, None])  # L⁻¹b
    theta = np.linalg.solve(np.swapaxes(L, 1, 2), Lb)[:, :, 0]  # L⁻ᵀL⁻¹b = A⁻¹b
    mean = np.einsum("kmd,kd->km", X, theta)
    V = np.linalg.solve(L, np.swapaxes(X, 1, 2))  # (k, d, m) = L⁻¹Xᵀ
    std = np.sqrt(np.einsum("kdm,kdm->km", V, V))
    return mean, std
