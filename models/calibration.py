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

An isotonic map needs many events of the rarer class: on a holdout with a handful of
unsubscriptions (a ~1% outcome) it has two or three levels, the lowest often exactly 0, so every
pair below the first knot looks free to the LP and the cost loses its ranking. Below
``min_isotonic_events`` events of the rarer class :func:`fit_calibrator` therefore fits
:class:`PlattCalibrator` instead: ``σ(a·logit(p̂) + b)``, two parameters under a Gaussian prior
centred on the identity (a = 1, b = 0), so a scarce holdout moves the map a little and it never
flattens or clips. Same heuristic/naive distinction (what it is fitted on).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression

from banditlp.arrays import FloatArray
from models.errors import ModelInputError, ShapeError
from models.snapshot import SnapshotMixin, register_kind

CalibrationMode = Literal["heuristic", "naive"]

#: Events of the rarer class (positives or negatives) a holdout needs before an isotonic map is
#: fitted; below it, :func:`fit_calibrator` fits the two-parameter Platt map.
MIN_ISOTONIC_EVENTS = 500
# Probabilities are clipped to this distance from 0 and 1 before taking logits.
_EPS = 1e-9


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


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: FloatArray = np.log(q) - np.log1p(-q)
    return out


@register_kind
@dataclass(frozen=True, eq=False)
class PlattCalibrator(SnapshotMixin):
    """A monotone map ``p -> σ(slope · logit(p) + intercept)`` (Platt scaling on the logit).

    Fitted by :meth:`fit` as the MAP of a Bayesian logistic regression of the outcome on
    ``logit(p̂)`` with prior ``slope ~ N(1, prior_std_slope²)``, ``intercept ~ N(0,
    prior_std_intercept²)``: the identity when there is no evidence against it. Applied to a
    Thompson sample it scales the sample's logit spread by ``slope`` and shifts it, so it keeps
    the exploration in proportion and never maps a range of predictions to one value.

    Attributes:
        slope: ``a`` > 0 (the fit keeps it positive: the map is increasing).
        intercept: ``b``.
        mode: ``"heuristic"`` (fitted on deterministic predictions) or ``"naive"`` (on samples).
    """

    snapshot_kind: ClassVar[str] = "platt_calibrator"

    slope: float
    intercept: float
    mode: CalibrationMode = "heuristic"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.slope) and self.slope > 0 and np.isfinite(self.intercept)):
            raise ModelInputError(f"slope must be finite and > 0, intercept finite; got {self.slope}, {self.intercept}")
        if self.mode not in ("heuristic", "naive"):
            raise ModelInputError(f"unknown calibration mode {self.mode!r}")
        object.__setattr__(self, "slope", float(self.slope))
        object.__setattr__(self, "intercept", float(self.intercept))

    @classmethod
    def fit(
        cls,
        pred: ArrayLike,
        outcome: ArrayLike,
        *,
        mode: CalibrationMode = "heuristic",
        prior_std_slope: float = 0.5,
        prior_std_intercept: float = 1.0,
    ) -> PlattCalibrator:
        """The MAP ``(slope, intercept)`` on predictions vs 0/1 (or [0, 1]) outcomes.

        Args:
            pred: (n,) predicted probabilities.
            outcome: (n,) observed outcomes in [0, 1].
            mode: label recorded with the map.
            prior_std_slope: prior std of the slope around 1.
            prior_std_intercept: prior std of the intercept around 0.

        Returns:
            The fitted calibrator.

        Raises:
            ModelInputError: on non-finite input, outcomes outside [0, 1] or non-positive stds.
        """
        p, r = _pair(pred, outcome)
        if np.any((r < 0) | (r > 1)):
            raise ModelInputError("outcome must lie in [0, 1]")
        if not (prior_std_slope > 0 and prior_std_intercept > 0):
            raise ModelInputError("prior stds must be > 0")
        z = _logit(p)
        prior_prec = np.array([1.0 / prior_std_slope**2, 1.0 / prior_std_intercept**2])
        centre = np.array([1.0, 0.0])

        def objective(w: FloatArray) -> tuple[float, FloatArray]:
            eta = w[0] * z + w[1]
            # log(1 + e^eta) - r * eta, summed: the Bernoulli negative log-likelihood.
            nll = float(np.sum(np.logaddexp(0.0, eta) - r * eta))
            resid = expit(eta) - r
            grad = np.array([resid @ z, resid.sum()]) + prior_prec * (w - centre)
            return nll + 0.5 * float(prior_prec @ (w - centre) ** 2), grad

        def hessian(w: FloatArray) -> FloatArray:
            q = expit(w[0] * z + w[1])
            v = q * (1.0 - q)
            h = np.array([[v @ (z * z), v @ z], [v @ z, v.sum()]])
            out: FloatArray = h + np.diag(prior_prec)
            return out

        # Strictly convex (a Gaussian prior plus a logistic likelihood): trust-region Newton
        # converges to the one minimum from the identity.
        res = optimize.minimize(objective, centre, jac=True, hess=hessian, method="trust-exact")
        slope, intercept = float(res.x[0]), float(res.x[1])
        # An increasing map: a slope the data push to 0 or below (predictions that carry no
        # ranking) is held just above 0, which keeps the order of the predictions.
        return cls(max(slope, 1e-3), intercept, mode)

    def apply(self, pred: ArrayLike) -> FloatArray:
        """Map predictions (e.g. Thompson samples) of any shape; float64 in (0, 1)."""
        p = np.asarray(pred, dtype=np.float64)
        if not np.all(np.isfinite(p)):
            raise ModelInputError("pred contains NaN or inf")
        out: FloatArray = expit(self.slope * _logit(p) + self.intercept)
        return out

    __call__ = apply

    def snapshot_config(self) -> dict[str, Any]:
        """The mode as JSON."""
        return {"mode": self.mode}

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """``coef``: ``[slope, intercept]``."""
        return {"coef": np.array([self.slope, self.intercept], dtype=np.float64)}

    @classmethod
    def from_snapshot_parts(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        """Rebuild from :meth:`snapshot_config` / :meth:`snapshot_arrays` output."""
        coef = np.asarray(arrays["coef"], dtype=np.float64).reshape(-1)
        if coef.shape != (2,):
            raise ShapeError(f"coef must hold [slope, intercept], got shape {coef.shape}")
        return cls(float(coef[0]), float(coef[1]), config.get("mode", "heuristic"))


#: Either calibration map; both expose ``apply``, ``mode`` and snapshots.
Calibrator = IsotonicCalibrator | PlattCalibrator


def fit_calibrator(
    pred: ArrayLike,
    outcome: ArrayLike,
    *,
    mode: CalibrationMode = "heuristic",
    min_isotonic_events: int = MIN_ISOTONIC_EVENTS,
) -> Calibrator:
    """An isotonic map when the holdout has ``min_isotonic_events`` events of its rarer class,
    else the Platt map (see the module docstring for why).

    Args:
        pred: (n,) predictions (deterministic for ``"heuristic"``, samples for ``"naive"``).
        outcome: (n,) outcomes in [0, 1].
        mode: label recorded with the map.
        min_isotonic_events: the switch; 0 always fits isotonic.

    Returns:
        The fitted calibrator.
    """
    _, r = _pair(pred, outcome)
    positives = float(r.sum())
    if min(positives, r.size - positives) >= min_isotonic_events:
        return IsotonicCalibrator.fit(pred, outcome, mode=mode)
    return PlattCalibrator.fit(pred, outcome, mode=mode)


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
