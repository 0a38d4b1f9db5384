"""The cross-fitted click model: its broadcast predictions against scikit-learn's own, the balance, the folds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from evaluation.datasets.obd_model import cross_fit_click_model
from evaluation.errors import EvaluationInputError
from tests.unit.evaluation.datasets import obd_log


def _dense_design(context: np.ndarray, item: np.ndarray, position: np.ndarray, own_affinity: np.ndarray) -> np.ndarray:
    """The model's features written out densely: context, item one-hot, position one-hot, own affinity."""
    n_items, n_positions = 34, 3
    return np.hstack([context, np.eye(n_items)[item], np.eye(n_positions)[position], own_affinity[:, None]])


def test_predictions_match_scikit_learn_on_every_candidate() -> None:
    log = obd_log("random", "men")
    q = cross_fit_click_model(log, recalibrate=False, seed=5)
    assert q.shape == (10_000, 34)
    # The same folds and fits, predicted the slow way: one dense design row per (row, item).
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=5)
    rng = np.random.default_rng(0)
    for train, test in folds.split(np.zeros(log.n_rounds), log.reward):
        a = log.action[train]
        x = _dense_design(log.context[train], a, log.position[train], log.affinity[train, a])
        model = LogisticRegression(C=1.0, max_iter=1000).fit(x, log.reward[train])
        rows = rng.choice(test, 40, replace=False)
        for item in range(34):
            items = np.full(rows.size, item)
            expected = model.predict_proba(
                _dense_design(log.context[rows], items, log.position[rows], log.affinity[rows, item])
            )[:, 1]
            np.testing.assert_allclose(q[rows, item], expected, rtol=1e-5, atol=1e-12)


def test_recalibrated_predictions_balance_the_logged_clicks() -> None:
    log = obd_log("random", "all")
    raw = cross_fit_click_model(log, recalibrate=False, seed=0)
    q = cross_fit_click_model(log, seed=0)
    logged = np.arange(log.n_rounds), log.action
    assert q[logged].sum() == pytest.approx(log.reward.sum(), rel=1e-9)
    assert raw[logged].sum() != pytest.approx(log.reward.sum(), rel=1e-3)  # cross-fitting alone loses it
    # One offset on the logit scale: the ranking of items in every row is kept.
    logit = np.log(q / (1 - q)) - np.log(raw / (1 - raw))
    np.testing.assert_allclose(logit, logit[0, 0], atol=1e-8)
    assert np.all((q > 0) & (q < 1))


def test_a_rows_prediction_does_not_see_its_own_click() -> None:
    log = obd_log("random", "women")
    q = cross_fit_click_model(log, recalibrate=False, seed=1)
    folds = list(StratifiedKFold(n_splits=3, shuffle=True, random_state=1).split(np.zeros(log.n_rounds), log.reward))
    # Change one row's user features (the folds depend on the clicks only, so they stay): the
    # model that predicts its own fold never saw it, the models of the other folds did.
    held_out = folds[0][1]
    context = log.context.copy()
    context[held_out[0], : context.shape[1] - log.n_actions] = 0.0  # the reference level of every feature
    moved = cross_fit_click_model(dataclasses.replace(log, context=context), recalibrate=False, seed=1)
    np.testing.assert_array_equal(moved[held_out[1:]], q[held_out[1:]])
    assert not np.allclose(moved[folds[1][1]], q[folds[1][1]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_folds": 1}, "n_folds must be >= 2"), ({"C": 0.0}, "C must be > 0")],
)
def test_bad_options(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        cross_fit_click_model(obd_log("random", "men"), **kwargs)  # type: ignore[arg-type]


def test_too_few_clicks_to_cross_fit() -> None:
    log = obd_log("random", "men")
    clicked = np.flatnonzero(log.reward)[:2]
    rows = np.concatenate([clicked, np.flatnonzero(log.reward == 0)[:100]])
    with pytest.raises(EvaluationInputError, match="need at least 3 clicks"):
        cross_fit_click_model(log.take(rows))
