"""The synthetic problem's truth against an independent check, and the baselines' fixed choices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from evaluation.errors import EvaluationInputError
from evaluation.tuning.methods import GridSearch, best_observed_feasible, make_method
from evaluation.tuning.problem import SyntheticProblem, grid_truth, near_best_feasible


def test_grid_truth_matches_a_constrained_optimiser() -> None:
    p = SyntheticProblem()
    truth = grid_truth(p)
    # SLSQP on the smooth problem, from the grid's answer and from the box's centre
    cons = [
        {"type": "ineq", "fun": lambda x: p.metrics(x)[0, 1] - p.c_ctr},
        {"type": "ineq", "fun": lambda x: p.c_volume - p.metrics(x)[0, 2]},
    ]
    best = -np.inf
    for x0 in (np.array(truth.best_x), np.array([1.0, 0.5])):
        r = minimize(lambda x: -p.metrics(x)[0, 0], x0, bounds=p.bounds, constraints=cons, method="SLSQP")
        if r.success:
            best = max(best, -r.fun)
    assert truth.best_value == pytest.approx(best, abs=2e-3)
    assert truth.best_value <= best + 1e-9  # a grid point cannot beat the continuous optimum
    assert truth.unconstrained_best > truth.best_value  # the optimum is on the guardrails' boundary
    assert 0.0 < truth.near_share < 0.05  # "near the best" is a small part of the box


def test_observation_noise_is_the_configured_gaussian() -> None:
    p = SyntheticProblem()
    X = np.tile([[1.2, 0.4]], (20_000, 1))
    Y = p.observe(X, np.random.default_rng(0))
    se = np.array(p.noise_sd) / np.sqrt(20_000)
    assert np.all(np.abs(Y.mean(0) - p.metrics(X[:1])[0]) < 4 * se)
    np.testing.assert_allclose(Y.std(0), p.noise_sd, rtol=0.03)


def test_near_best_feasible_by_hand() -> None:
    p = SyntheticProblem()
    truth = grid_truth(p)
    x_best = np.array([truth.best_x])
    assert near_best_feasible(p, truth, x_best)[0]
    assert not near_best_feasible(p, truth, np.array([[1.5, 0.25]]))[0]  # the unconstrained peak: infeasible
    assert not near_best_feasible(p, truth, np.array([[0.2, 0.9]]))[0]  # feasible, far below f*


def test_baselines_ship_the_best_observed_feasible_setting() -> None:
    p = SyntheticProblem()
    X = np.array([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])
    # the second has the best primary but fails the CTR floor as observed; the third passes both
    Y = np.array([[0.5, 0.5, 0.5], [0.9, 0.1, 0.5], [0.7, 0.5, 0.5]])
    d = best_observed_feasible(p, X, Y)
    np.testing.assert_array_equal(d.points, X[2:3])
    assert d.probs.tolist() == [1.0]


def test_grid_search_covers_every_cell_once() -> None:
    p = SyntheticProblem()
    g = GridSearch(p, np.random.default_rng(0), 64)
    pts = np.vstack([g.propose(np.empty((8 * r, 2)), np.empty((8 * r, 3)), 8) for r in range(8)])
    cells = np.floor(pts / np.array([2.0, 1.0]) * 8).astype(int)
    assert len({tuple(c) for c in cells}) == 64
    with pytest.raises(EvaluationInputError):
        make_method("nope", p, None, 64, 0)  # type: ignore[arg-type]
