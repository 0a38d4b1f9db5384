"""oracle_level_lp: the truth up to the level of the unsubscription probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.email_world import EmailWorld
from evaluation.errors import EvaluationInputError
from evaluation.experiment.batches import BatchBook, Rows
from evaluation.experiment.lp import solve_lp
from evaluation.experiment.methods import MethodContext
from evaluation.experiment.methods.reference import OracleLevelLPConfig, OracleLevelLPMethod


def _method(world: EmailWorld, **fields: float) -> OracleLevelLPMethod:
    return OracleLevelLPMethod(OracleLevelLPConfig(**fields), MethodContext(world.feature_dim, world))


def _rows(n: int, unsubscribed: np.ndarray, budgeted: np.ndarray | None) -> Rows:
    zeros = np.zeros(n)
    return Rows(np.zeros((n, 1), np.float32), zeros, unsubscribed.astype(float), zeros, budgeted)


def test_the_level_is_the_gamma_quantile_of_realised_over_expected(tiny_world: EmailWorld) -> None:
    method = _method(tiny_world, prior=2.0, quantile=0.5)
    # 100 logged sends at the base rate, then 50 own sends budgeted at 0.02 each: C = 100 r + 1.
    method.learn(_rows(100, np.r_[np.ones(3), np.zeros(97)], None), np.random.default_rng(0))
    method.learn(_rows(50, np.r_[np.ones(2), np.zeros(48)], np.full(50, 0.02)), np.random.default_rng(0))
    shape, rate = 2.0 + 5.0, 2.0 + 100 * tiny_world.config.unsub_rate + 1.0
    # The median of Gamma(k, rate) by Monte Carlo, independent of scipy's ppf.
    draws = np.random.default_rng(1).gamma(shape, 1.0 / rate, 400_000)
    assert method.level() == pytest.approx(float(np.median(draws)), rel=5e-3)


def test_the_quantile_covers_the_true_level_as_often_as_it_says() -> None:
    # Frequentist coverage of the weak-prior posterior: rho_true * C expected events are seen
    # as a Poisson count; the 90% quantile lies above rho_true about 90% of the time.
    world = EmailWorld()
    rng = np.random.default_rng(7)
    rho_true, expected, covered, trials = 1.3, 40.0, 0, 2_000
    for _ in range(trials):
        method = _method(world, prior=0.5, quantile=0.9)
        count = rng.poisson(rho_true * expected)
        unsub = np.zeros(400)
        unsub[:count] = 1.0
        method.learn(_rows(400, unsub, np.full(400, expected / 400)), rng)
        covered += method.level() >= rho_true
    assert covered / trials == pytest.approx(0.9, abs=3 * np.sqrt(0.09 / trials) + 0.02)


def test_its_plan_is_the_oracle_lp_on_scaled_costs_and_uses_one_over_rho(tiny_world: EmailWorld) -> None:
    book = BatchBook(tiny_world)
    truth = book.truth(0)
    method = _method(tiny_world, quantile=0.5)
    method.learn(book.warm_start(0, 80), np.random.default_rng(0))
    plan = method.plan(truth.batch, truth.constraints, np.random.default_rng(0))
    rho = plan.policy["level"]
    reference = solve_lp(truth.batch, truth.constraints, truth.reward, rho * truth.p_unsub)
    np.testing.assert_allclose(plan.x, reference.x, atol=1e-9)
    np.testing.assert_allclose(plan.cost, truth.p_unsub)
    budget = float(truth.constraints.budget[0])
    usage = float(truth.p_unsub @ plan.x) / budget
    if rho * float(truth.p_unsub @ plan.x) >= budget * (1 - 1e-6):  # the budget binds
        assert usage == pytest.approx(1.0 / rho, rel=1e-5)
    else:
        assert usage <= 1.0 / rho + 1e-9


@pytest.mark.parametrize("fields", [{"prior": 0.0}, {"prior": float("inf")}, {"quantile": 1.0}, {"quantile": 0.0}])
def test_settings_that_describe_no_method_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(EvaluationInputError):
        OracleLevelLPConfig(**fields)
