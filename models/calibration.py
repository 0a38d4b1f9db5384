"""Isotonic calibration of Thompson samples, and calibration error.

Heuristic calibration, as in "BanditLP: Large-Scale Stochastic Optimization for Personalized
Recommendations" (arXiv 2601.15552): fit a monotone map g on *deterministic* predictions p̂
(no exploration noise) against outcomes r, then apply g to *Thompson-sampled* predictions
p̂_TS at serving time. Because g is fitted on less noisy inputs it keeps roughly the slope the
model deserves, so it does not wash out the spread that sampling injected.

Naive calibration (for the ablation): fit g on the sampled predictions themselves. The
exploration noise then looks like prediction error, the isotonic fit of E[r | p̂_TS] flattens
(regression dilution), and g collapses the samples toward the base rate — anti-exploration.

Both are the same estimator, ``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip",
y_min=0, y_max=1)``, differing only in what they are fitted on. The fitted map is kept as its
threshold arrays and applied with ``np.interp`` (linear between thresholds, clipped outside them),
which is exactly what scikit-learn's ``predict`` does; so a calibrator serialises as two arrays
and applying it needs no scikit-learn object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
from numpy.typing import ArrayLike
from sklearn.isotonic import IsotonicRegression

from banditlp.arrays import FloatArray
from models.errors import ModelInputError, ShapeError
from models.snapshot import SnapshotMixin, register_kind

CalibrationMode = Literal["heuristic", "naive"]


def _pair(pred: ArrayLike, outcome: ArrayLike) -> tuple[FloatArray, FloatArray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    r = np.asarray(outcome, dtype=np.float64).reshape(-1)
    if p.shape != r.shape:
        raise ShapeError(f"pred and outcome must have the same length, got {p.shape} and {r.shape}")
    if p.size == 0:
        raise ModelInputError("need at least one (pred, outcome) pair")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(r))):
        raise ModelInputError("pred or outcome contains NaN or inf")
    return p, r


@register_kind
@dataclass(frozen=True, eq=False)
class IsotonicCalibrator(SnapshotMixin):
    """A fitted monotone (non-decreasing) map from predicted to calibrated probabilities.

    Attributes:
        x_thresholds: (m,) increasing prediction knots.
        y_thresholds: (m,) non-decreasing calibrated values in [0, 1] at those knots.
        mode: ``"heuristic"`` (fitted on deterministic predictions) or ``"naive"`` (on samples).
    """

    snapshot_kind: ClassVar[str] = "isotonic_calibrator"

    x_thresholds: FloatArray
    y_thresholds: FloatArray
    mode: CalibrationMode = "heuristic"

    def __post_init__(self) -> None:
        x = np.asarray(self.x_thresholds, dtype=np.float64)
        y = np.asarray(self.y_thresholds, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ShapeError("thresholds must be two 1-D arrays of the same non-zero length")
        if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
            raise ModelInputError("thresholds must be non-decreasing")
        if self.mode not in ("heuristic", "naive"):
            raise ModelInputError(f"unknown calibration mode {self.mode!r}")
        object.__setattr__(self, "x_thresholds", x)
        object.__setattr__(self, "y_thresholds", y)

    @classmethod
    def fit(
        cls,
        pred: ArrayLike,
        outcome: ArrayLike,
        *,
        mode: CalibrationMode = "heuristic",
        sample_weight: ArrayLike | None = None,
    ) -> IsotonicCalibrator:
        """Fit the map on predictions vs 0/1 (or [0, 1]) outcomes.

        Args:
            pred: (n,) predictions — deterministic ones for ``"heuristic"``, Thompson samples for
                ``"naive"``; the mode only labels which was used.
            outcome: (n,) observed outcomes.
            mode: label recorded with the map.
            sample_weight: optional (n,) weights.

        Returns:
            The fitted calibrator.
        """
        p, r = _pair(pred, outcome)
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
        iso.fit(p, r, sample_weight=None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64))
        return cls(
            np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64), mode
        )

    @classmethod
    def fit_heuristic(cls, deterministic_pred: ArrayLike, outcome: ArrayLike) -> IsotonicCalibrator:
        """BanditLP's calibration: fit on deterministic (MAP) predictions; (n,), (n,)."""
        return cls.fit(deterministic_pred, outcome, mode="heuristic")

    @classmethod
    def fit_naive(cls, sampled_pred: ArrayLike, outcome: ArrayLike) -> IsotonicCalibrator:
        """Ablation: fit on Thompson-sampled predictions; (n,), (n,)."""
        return cls.fit(sampled_pred, outcome, mode="naive")

    def apply(self, pred: ArrayLike) -> FloatArray:
        """Map predictions (e.g. Thompson samples) through the calibration map.

        Args:
            pred: predictions of any shape, e.g. (n_pairs,) or (n_samples, n_pairs).

        Returns:
            Calibrated values of the same shape, float64 in [0, 1].
        """
        p = np.asarray(pred, dtype=np.float64)
        if not np.all(np.isfinite(p)):
            raise ModelInputError("pred contains NaN or inf")
        return np.interp(p, self.x_thresholds, self.y_thresholds)

    __call__ = apply

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot_config(self) -> dict[str, Any]:
        """The mode as JSON."""
        return {"mode": self.mode}

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """The threshold arrays."""
        return {"x_thresholds": self.x_thresholds.copy(), "y_thresholds": self.y_thresholds.copy()}

    @classmethod
    def from_snapshot_parts(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        """Rebuild from :meth:`snapshot_config` / :meth:`snapshot_arrays` output."""
        return cls(arrays["x_thresholds"], arrays["y_thresholds"], config.get("mode", "heuristic"))


def expected_calibration_error(pred: ArrayLike, outcome: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width bins on [0, 1].

    ``ECE = Σ_b (n_b / n) |mean(pred in b) − mean(outcome in b)|``; bin b covers
    ``[b/B, (b+1)/B)`` and the last bin includes 1.

    Args:
        pred: (n,) predicted probabilities in [0, 1].
        outcome: (n,) 0/1 outcomes.
        n_bins: number of bins B.

    Returns:
        The ECE in [0, 1].
    """
    p, r = _pair(pred, outcome)
    if n_bins < 1:
        raise ModelInputError("n_bins must be >= 1")
    if np.any((p < 0) | (p > 1)):
        raise ModelInputError("pred must lie in [0, 1]")
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_r = np.bincount(idx, weights=r, minlength=n_bins)
    # Σ_b (n_b/n)|sum_p/n_b − sum_r/n_b| = Σ_b |sum_p − sum_r| / n
    return float(np.sum(np.abs(sum_p - sum_r)) / p.size)
