"""The click model behind DM and DR on the Open Bandit Dataset: cross-fitted logistic regression.

``q(x, a, k) = sigmoid(w_x . x + w_a + w_k + w_own * affinity(x, a) + b)`` for a user with context
``x`` (user features one-hot and their affinities with every item), item ``a`` (one-hot) at
position ``k`` (one-hot). ``affinity(x, a)``, the user's affinity with the candidate item itself,
is the one user-item interaction: without it the model would rank items the same for every user.

Cross-fitting (Chernozhukov et al. 2018; Open Bandit Pipeline's ``RegressionModel.fit_predict``
with ``n_folds=3``): the rows are split into folds, and each row's predictions come from the
model fitted on the other folds, so that DR's correction term is not fitted to its own noise.
The folds are stratified by click: a sample log has about 40 clicks in 10,000 rows, and a plain
split can leave a training fold whose click rate is far from its held-out fold's, which moves
DM's level by that much.

Cross-fitted predictions lose the balance an in-sample logistic fit with an intercept has (the
predicted clicks of the logged pairs sum to the logged clicks), by a percent or two of the click
rate: each fold's level is its training folds'. One logit offset, the root of
``sum_i q(x_i, a_i, k_i) = sum_i y_i`` over the logged rows, restores it (``recalibrate``). It is
fitted on the logged pairs alone, never on a target policy, and is one parameter for all rows.

The logit is additive in its parts, so the predictions for all ``n x n_actions`` candidates are
one broadcast sum, never an ``(n * n_actions, features)`` design matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from banditlp.arrays import FloatArray, IntArray
from evaluation.datasets.obd import OBDLog
from evaluation.errors import EvaluationInputError

#: Inverse L2 strength, scikit-learn's default. Not tuned on the benchmark's ground truth (that
#: would leak the answer into DM). With 38 clicks (random log, campaign all) an almost unpenalised
#: model, Open Bandit Pipeline's example's C = 100, puts the mean item logit of the 29 clicked
#: items 3.8 above that of the never-clicked ones; C = 1 puts it 0.9 above.
DEFAULT_C = 1.0
DEFAULT_FOLDS = 3


def _one_hot(codes: IntArray, width: int) -> sp.csr_matrix:
    rows = np.arange(codes.size)
    return sp.csr_matrix((np.ones(codes.size), (rows, codes)), shape=(codes.size, width))


def _design(log: OBDLog, rows: IntArray) -> sp.csr_matrix:
    """Training features of the logged (row, item, position) triples: ``(len(rows), d + k + L + 1)``.

    Sparse: a row has four user-feature ones, one item, one position and few nonzero affinities,
    and lbfgs on the sparse matrix runs about four times faster than on the dense one.
    """
    action = log.action[rows]
    blocks = [
        sp.csr_matrix(log.context[rows]),
        _one_hot(action, log.n_actions),
        _one_hot(log.position[rows], log.len_list),
        sp.csr_matrix(log.affinity[rows, action][:, None]),
    ]
    return sp.hstack(blocks, format="csr")


def _logits_all_items(model: LogisticRegression, log: OBDLog, rows: IntArray) -> FloatArray:
    """Click logit of every item at each row's own position: ``(len(rows), n_actions)``."""
    d, k = log.context.shape[1], log.n_actions
    w = model.coef_[0]
    w_context, w_item, w_position, w_own = w[:d], w[d : d + k], w[d + k : d + k + log.len_list], w[-1]
    row_logit = log.context[rows] @ w_context + w_position[log.position[rows]] + model.intercept_[0]
    return np.asarray(row_logit[:, None] + w_item[None, :] + w_own * log.affinity[rows], dtype=np.float64)


def _balancing_offset(logged_logit: FloatArray, clicks: float) -> float:
    """The offset ``delta`` with ``sum sigmoid(logged_logit + delta) = clicks`` (0 < clicks < n)."""

    def excess(delta: float) -> float:
        return float(expit(logged_logit + delta).sum()) - clicks

    # The sum is increasing in delta; widen the bracket until it holds the root.
    low, high = -1.0, 1.0
    while excess(low) > 0:
        low *= 2
    while excess(high) < 0:
        high *= 2
    return float(brentq(excess, low, high, xtol=1e-12))


def cross_fit_click_model(
    log: OBDLog, *, n_folds: int = DEFAULT_FOLDS, C: float = DEFAULT_C, recalibrate: bool = True, seed: int = 0
) -> FloatArray:
    """Cross-fitted click probabilities of every item at each logged row's position.

    Args:
        log: The log the model is fitted on and predicts for.
        n_folds: Folds of the cross-fitting (>= 2); each row is predicted by the model that did
            not see it.
        C: Inverse L2 strength of the logistic regression (the intercept is not penalised).
        recalibrate: Shift all logits by the one offset that makes the logged pairs' predicted
            clicks sum to the logged clicks (module docstring).
        seed: Seed of the fold assignment (the fit itself is deterministic).

    Returns:
        ``(n, n_actions)`` float64 in (0, 1); ``.ravel()`` is in the round-major order of
        :func:`~evaluation.datasets.obd.obd_logged_pairs`'s candidates.

    Raises:
        EvaluationInputError: ``n_folds < 2``, ``C <= 0``, or fewer clicks (or non-clicks) than folds.
    """
    if n_folds < 2:
        raise EvaluationInputError(f"n_folds must be >= 2, got {n_folds}")
    if not C > 0:
        raise EvaluationInputError(f"C must be > 0, got {C}")
    clicks = int(log.reward.sum())
    if min(clicks, log.n_rounds - clicks) < n_folds:
        raise EvaluationInputError(f"need at least {n_folds} clicks and non-clicks to cross-fit, got {clicks}")
    logits = np.empty((log.n_rounds, log.n_actions))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, test in folds.split(np.zeros(log.n_rounds), log.reward):
        model = LogisticRegression(C=C, max_iter=1000)  # lbfgs needs ~20 iterations on the sample
        model.fit(_design(log, train.astype(np.int64)), log.reward[train])
        logits[test] = _logits_all_items(model, log, test.astype(np.int64))
    if recalibrate:
        logits += _balancing_offset(logits[np.arange(log.n_rounds), log.action], float(log.reward.sum()))
    return np.asarray(expit(logits), dtype=np.float64)


__all__ = ["DEFAULT_C", "DEFAULT_FOLDS", "cross_fit_click_model"]
