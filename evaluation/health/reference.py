"""A frozen read-out of a model: the reference predictor of the rate chart that does not learn.

The rate CUSUM of :mod:`evaluation.health.rates` compares the sent pairs' outcomes with the
deployed model's predictions; a model retrained every batch absorbs a shift of the world within
2-3 retrains, and with it the evidence. The second chart (``rate_shift_ref.<outcome>``,
:mod:`evaluation.health.monitor`) compares the same outcomes with a predictor frozen at the close
of the reference window, which keeps seeing a shift at its full size.

The monitor has no model, only its predictions, so the frozen predictor is read out of them: the
least-squares fit of ``logit(predicted)`` on a polynomial of the pair features (degree 1:
``[1, x]``; degree 2 adds every ``x_i x_j``, ``i <= j``, for the email world's product features),
fitted on one batch's pairs and kept. A read-out is biased on the pairs a learning policy sends
later (it is fitted on every pair of one batch, the LP sends a chosen few of later batches); the
chart's null odds ratio takes up what that bias is on the unshifted world (measured, README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray
from evaluation.errors import EvaluationInputError

#: Predictions are clipped to [EPS, 1 - EPS] before their logits are taken.
EPS = 1e-9


def readout_design(features: ArrayLike, degree: int) -> FloatArray:
    """``(n, k)`` the read-out's regressors of ``features (n, d)``: ``[1, x]`` for degree 1,
    ``[1, x, x_i x_j for i <= j]`` (``k = 1 + d + d (d + 1) / 2``) for degree 2."""
    x = np.asarray(features, dtype=float)
    if x.ndim != 2 or degree not in (1, 2):
        raise EvaluationInputError(f"need (n, d) features and degree 1 or 2, got {x.shape}, {degree}")
    columns = [np.ones((x.shape[0], 1)), x]
    if degree == 2:
        i, j = np.triu_indices(x.shape[1])
        columns.append(x[:, i] * x[:, j])
    return np.concatenate(columns, axis=1)


@dataclass(frozen=True, eq=False)
class FrozenReadout:
    """A fitted read-out: ``logit p = readout_design(x, degree) @ coef``.

    Attributes:
        degree: The polynomial degree of the design.
        coef: ``(k,)`` the least-squares coefficients.
        r2: The fit's R² on the logits it was fitted to (nan when they did not vary).
        rows: The rows it was fitted on.
    """

    degree: int
    coef: FloatArray
    r2: float
    rows: int

    def logits(self, features: ArrayLike) -> FloatArray:
        """``(n,)`` the frozen logits of ``features (n, d)``."""
        return np.asarray(readout_design(features, self.degree) @ self.coef, dtype=float)

    def predict(self, features: ArrayLike) -> FloatArray:
        """``(n,)`` the frozen probabilities of ``features (n, d)``."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.logits(features))), dtype=float)


def fit_readout(features: ArrayLike, predicted: ArrayLike, degree: int = 2) -> FrozenReadout:
    """The least-squares read-out of a model from its predictions of some pairs.

    Args:
        features: ``(n, d)`` the pairs' features.
        predicted: ``(n,)`` the model's predictions of them, in (0, 1).
        degree: 1 or 2 (see :func:`readout_design`).

    Returns:
        The frozen read-out (minimum-norm coefficients when the design is rank deficient).
    """
    design = readout_design(features, degree)
    p = np.clip(np.asarray(predicted, dtype=float), EPS, 1.0 - EPS)
    if p.shape != (design.shape[0],) or p.size == 0:
        raise EvaluationInputError(f"need (n,) predictions of the n >= 1 rows, got {p.shape}, {design.shape}")
    logits = np.log(p) - np.log1p(-p)
    coef = np.linalg.lstsq(design, logits, rcond=None)[0]
    spread = float(((logits - logits.mean()) ** 2).sum())
    resid = float(((logits - design @ coef) ** 2).sum())
    r2 = 1.0 - resid / spread if spread > 0 else math.nan
    return FrozenReadout(degree, np.asarray(coef, dtype=float), r2, int(p.size))
