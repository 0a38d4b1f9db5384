"""Scoring half of :class:`models.neural.NeuralThompsonModel`: features -> last-layer inputs -> scores.

Split from models/neural.py (which keeps the learning, the calibrator fitting and the snapshot)
so that each module stays readable on its own. :class:`NeuralScoringMixin` holds the read-only
path the scorer runs on every batch: validating a feature matrix or tensor, the trunk's
``[φ; 1]`` last-layer inputs, and the MAP / std / Thompson-sampled scores over the last-layer
Laplace posteriors (models/laplace.py), chunked by rows.

Scoring accepts numpy arrays or torch tensors of shape (n_pairs, d_in) and returns a dict
``{outcome name: (n_pairs,)}`` of the same array type: probabilities for Bernoulli heads,
values for Gaussian heads.
"""

from __future__ import annotations

from typing import Any, overload

import numpy as np
import torch
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray
from models.calibration import Calibrator
from models.errors import ModelInputError, NotFittedError, ShapeError
from models.laplace import LastLayerLaplace, SampleMode
from models.neural_net import MultiOutcomeNet, NeuralConfig

# Rows per scoring chunk: bounds the (chunk, k·h) float64 temporaries to a few tens of MB.
_SCORE_CHUNK = 32_768


class NeuralScoringMixin:
    """Scoring methods of :class:`models.neural.NeuralThompsonModel` (which sets the attributes).

    The model owns the state; this mixin only reads it. The annotations below are the
    attributes it reads, so that mypy checks the methods here against the model's ``__init__``.
    """

    config: NeuralConfig
    device: torch.device
    net: MultiOutcomeNet
    laplace: LastLayerLaplace
    calibrators: dict[str, Calibrator]
    fitted: bool

    # -- input handling ---------------------------------------------------------------------
    def _as_tensor(self, features: ArrayLike | torch.Tensor) -> torch.Tensor:
        d = self.config.input_dim
        if isinstance(features, torch.Tensor):
            x = features.to(device=self.device, dtype=torch.float32)
            if x.ndim != 2 or x.shape[1] != d:
                raise ShapeError(f"features must have shape (n, {d}), got {tuple(features.shape)}")
            if not bool(torch.isfinite(x).all()):
                raise ModelInputError("features contain NaN or inf")
            return x
        arr = np.asarray(features, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != d:
            raise ShapeError(f"features must have shape (n, {d}), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ModelInputError("features contain NaN or inf")
        return torch.from_numpy(arr).to(self.device)

    def _phi_tilde(self, x: torch.Tensor) -> torch.Tensor:
        """[φ; 1] in float64 (the Laplace layer's input); (n, d_in) -> (n, h+1)."""
        phi = self.net.features(x).to(torch.float64)
        return torch.cat([phi, torch.ones((phi.shape[0], 1), dtype=phi.dtype, device=phi.device)], dim=1)

    def phi_tilde(self, features: ArrayLike) -> FloatArray:
        """Last-layer inputs ``[φ; 1]`` for rows of features; (n, d_in) -> (n, h+1) float64."""
        x = self._as_tensor(features)
        with torch.no_grad():
            return np.concatenate(
                [self._phi_tilde(c).cpu().numpy() for c in torch.split(x, _SCORE_CHUNK)]
                or [np.zeros((0, self.config.hidden[-1] + 1))]
            )

    # -- scoring ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError("NeuralThompsonModel has not been fitted")

    def _score(
        self,
        features: ArrayLike | torch.Tensor,
        kind: str,
        tau: float = 0.0,
        generator: torch.Generator | None = None,
        mode: SampleMode = "marginal",
        calibrate: bool = False,
    ) -> dict[str, Any]:
        self._check_fitted()
        if not (np.isfinite(tau) and tau >= 0):
            raise ModelInputError(f"tau must be finite and >= 0, got {tau!r}")
        as_numpy = not isinstance(features, torch.Tensor)
        x = self._as_tensor(features)
        outs = []
        with torch.no_grad():
            for chunk in torch.split(x, _SCORE_CHUNK):
                phi = self._phi_tilde(chunk)
                if kind == "mean":
                    f = self.laplace.mean_logits(phi)
                elif kind == "std":
                    f = self.laplace.std_logits(phi)
                else:
                    f = self.laplace.sample_logits(phi, tau, generator, mode)
                outs.append(f)
            f = torch.cat(outs) if outs else torch.zeros((0, len(self.config.outcomes)), dtype=torch.float64)
        result: dict[str, Any] = {}
        for j, spec in enumerate(self.config.outcomes):
            col = f[:, j]
            if kind != "std" and spec.likelihood == "bernoulli":
                col = torch.sigmoid(col)
            arr: Any = col.cpu().numpy() if as_numpy else col
            if calibrate and spec.name in self.calibrators:
                cal = self.calibrators[spec.name].apply(col.cpu().numpy())
                arr = cal if as_numpy else torch.from_numpy(cal).to(col.device)
            result[spec.name] = arr
        return result

    def marginal_scores(
        self, features: ArrayLike, tau: float, generator: torch.Generator | None = None
    ) -> tuple[dict[str, FloatArray], dict[str, FloatArray], dict[str, FloatArray]]:
        """Marginal Thompson samples, MAP scores and predictive stds in one pass over the pairs.

        The same numbers as ``sample_scores(mode="marginal")``, ``mean_scores`` and
        ``predictive_std`` called one after the other with the same generator, for a third of
        the work: the trunk and the std run once per chunk. Uncalibrated; Bernoulli samples and
        means are probabilities, stds are on the logit scale.

        Args:
            features: (n_pairs, d_in).
            tau: temperature τ ≥ 0.
            generator: torch generator on the model's device (None: torch's global one).

        Returns:
            ``(samples, means, stds)``, each ``{outcome: (n_pairs,)}`` float64.
        """
        draws, means, stds = self.marginal_draws(features, tau, 1, generator)
        return {name: d[0] for name, d in draws.items()}, means, stds

    def marginal_draws(
        self, features: ArrayLike, tau: float, n_draws: int, generator: torch.Generator | None = None
    ) -> tuple[dict[str, FloatArray], dict[str, FloatArray], dict[str, FloatArray]]:
        """``n_draws`` independent marginal Thompson samples per pair, with the MAP scores and stds.

        The trunk, the means and the stds run once; only the normal draws repeat. Draw 0 is
        ``marginal_scores``'s sample with the same generator.

        Args:
            features: (n_pairs, d_in).
            tau: temperature τ ≥ 0.
            n_draws: K ≥ 1.
            generator: torch generator on the model's device (None: torch's global one).

        Returns:
            ``(draws, means, stds)``: draws ``{outcome: (n_draws, n_pairs)}``, the others
            ``{outcome: (n_pairs,)}``, float64.
        """
        self._check_fitted()
        if not (np.isfinite(tau) and tau >= 0):
            raise ModelInputError(f"tau must be finite and >= 0, got {tau!r}")
        if n_draws < 1:
            raise ModelInputError(f"n_draws must be >= 1, got {n_draws!r}")
        x = self._as_tensor(features)
        k = len(self.config.outcomes)
        sample_parts, mean_parts, std_parts = [], [], []
        with torch.no_grad():
            for chunk in torch.split(x, _SCORE_CHUNK):
                s, m, sd = self.laplace.marginal_draws(self._phi_tilde(chunk), tau, n_draws, generator)
                sample_parts.append(s)
                mean_parts.append(m)
                std_parts.append(sd)
        empty = torch.zeros((0, k), dtype=torch.float64)
        f = torch.cat(sample_parts, dim=1).cpu() if sample_parts else torch.zeros((n_draws, 0, k), dtype=torch.float64)
        mu = torch.cat(mean_parts).cpu() if mean_parts else empty
        sd_all = torch.cat(std_parts).cpu() if std_parts else empty
        draws, means, stds = {}, {}, {}
        for j, spec in enumerate(self.config.outcomes):
            sample, mean = f[:, :, j], mu[:, j]
            if spec.likelihood == "bernoulli":
                sample, mean = torch.sigmoid(sample), torch.sigmoid(mean)
            draws[spec.name], means[spec.name] = sample.contiguous().numpy(), mean.contiguous().numpy()
            stds[spec.name] = sd_all[:, j].contiguous().numpy()
        return draws, means, stds

    @overload
    def mean_scores(self, features: torch.Tensor, *, calibrate: bool = False) -> dict[str, torch.Tensor]: ...
    @overload
    def mean_scores(self, features: ArrayLike, *, calibrate: bool = False) -> dict[str, FloatArray]: ...

    def mean_scores(self, features: Any, *, calibrate: bool = False) -> dict[str, Any]:
        """Deterministic (MAP) scores: ``σ(φ̃ᵀθ̂)`` for Bernoulli heads, ``φ̃ᵀθ̂`` for Gaussian ones.

        Args:
            features: (n_pairs, d_in) numpy array or torch tensor.
            calibrate: apply the fitted calibrators to the Bernoulli heads.

        Returns:
            ``{outcome: (n_pairs,)}`` float64, numpy for numpy input, torch for torch input.
        """
        return self._score(features, "mean", calibrate=calibrate)

    @overload
    def predictive_std(self, features: torch.Tensor) -> dict[str, torch.Tensor]: ...
    @overload
    def predictive_std(self, features: ArrayLike) -> dict[str, FloatArray]: ...

    def predictive_std(self, features: Any) -> dict[str, Any]:
        """Last-layer Laplace std of each head's linear predictor, ``sqrt(φ̃ᵀH⁻¹φ̃)``.

        On the logit scale for Bernoulli heads, the value scale for Gaussian heads (excluding
        the observation noise σ²).

        Args:
            features: (n_pairs, d_in) numpy array or torch tensor.

        Returns:
            ``{outcome: (n_pairs,)}`` float64, numpy for numpy input, torch for torch input.
        """
        return self._score(features, "std")

    @overload
    def sample_scores(
        self,
        features: torch.Tensor,
        tau: float = 1.0,
        generator: torch.Generator | int | None = None,
        *,
        mode: SampleMode = "marginal",
        calibrate: bool = False,
    ) -> dict[str, torch.Tensor]: ...
    @overload
    def sample_scores(
        self,
        features: ArrayLike,
        tau: float = 1.0,
        generator: torch.Generator | int | None = None,
        *,
        mode: SampleMode = "marginal",
        calibrate: bool = False,
    ) -> dict[str, FloatArray]: ...

    def sample_scores(
        self,
        features: Any,
        tau: float = 1.0,
        generator: torch.Generator | int | None = None,
        *,
        mode: SampleMode = "marginal",
        calibrate: bool = False,
    ) -> dict[str, Any]:
        """Thompson-sampled scores, one per pair.

        ``mode="marginal"``: each pair's linear predictor is drawn independently from
        ``N(φ̃ᵀθ̂, τ φ̃ᵀH⁻¹φ̃)`` (a per-pair marginal sample of ``θ ~ N(θ̂, τH⁻¹)``);
        ``mode="joint"``: one weight draw per head shared by all pairs in the call. Bernoulli
        heads return ``σ(f)``. τ = 0 returns :meth:`mean_scores` exactly.

        Args:
            features: (n_pairs, d_in) numpy array or torch tensor.
            tau: temperature τ ≥ 0 scaling the posterior covariance.
            generator: a torch generator on the model's device, an int seed, or None (global RNG).
            mode: ``"marginal"`` or ``"joint"``.
            calibrate: apply the fitted (heuristic) calibrators to the Bernoulli samples.

        Returns:
            ``{outcome: (n_pairs,)}`` float64, numpy for numpy input, torch for torch input.
        """
        if isinstance(generator, int):
            generator = torch.Generator(device=self.device).manual_seed(generator)
        return self._score(features, "sample", tau, generator, mode, calibrate)
