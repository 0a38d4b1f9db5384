"""The budget options of the neural methods: the budget held on the means, and pacing."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from scipy import stats

from evaluation.email_world import EmailWorld
from evaluation.errors import EvaluationInputError
from evaluation.experiment.batches import BatchBook, Rows
from evaluation.experiment.lp import solve_lp, solve_lp_checked
from evaluation.experiment.methods import MethodContext
from evaluation.experiment.methods.neural import NeuralMethod, NeuralMethodConfig
from evaluation.experiment.methods.neural_model import score_neural


def test_a_check_on_the_selection_costs_is_the_plain_lp(tiny_world: EmailWorld) -> None:
    batch = tiny_world.candidates(0)
    cons = tiny_world.constraints(batch)
    rng = np.random.default_rng(1)
    reward, cost = rng.random(batch.n_pairs), rng.random(batch.n_pairs) * 0.04
    plain = solve_lp(batch, cons, reward, cost)
    checked = solve_lp_checked(batch, cons, reward, cost, cost)
    assert checked.budget_scale == 1.0
    np.testing.assert_array_equal(checked.solved.x, plain.x)


def test_the_plan_meets_the_budget_on_the_check_costs(tiny_world: EmailWorld) -> None:
    batch = tiny_world.candidates(0)
    cons = tiny_world.constraints(batch)
    rng = np.random.default_rng(2)
    reward = rng.random(batch.n_pairs)
    select = rng.random(batch.n_pairs) * 0.03
    check = select * (1.0 + rng.random(batch.n_pairs))  # every pair costs more than its draw said
    plain = solve_lp(batch, cons, reward, select)
    assert check @ plain.x > cons.budget[0] * 1.01  # the plain plan overspends on the check costs
    checked = solve_lp_checked(batch, cons, reward, select, check)
    assert checked.usage == pytest.approx(float(check @ checked.solved.x) / cons.budget[0])
    assert checked.usage <= 1 + 2e-3
    assert checked.budget_scale < 1.0
    assert select @ checked.solved.x <= cons.budget[0] * checked.budget_scale + 1e-7


def test_rows_keep_budgeted_costs_only_when_every_part_has_them(tiny_book: BatchBook) -> None:
    logged = tiny_book.warm_start(0, 10)
    assert logged.budgeted_cost is None
    sent = Rows(logged.features, logged.converted, logged.unsubscribed, logged.value, np.arange(10.0))
    assert Rows.concat([logged, sent]).budgeted_cost is None
    both = Rows.concat([sent, sent])
    assert both.budgeted_cost is not None and both.budgeted_cost.tolist() == [*range(10), *range(10)]
    taken = sent.take(np.array([2, 5]))
    assert taken.budgeted_cost is not None and taken.budgeted_cost.tolist() == [2.0, 5.0]


def _paced(world: EmailWorld, **fields: Any) -> NeuralMethod:
    config = dataclasses.replace(NeuralMethodConfig(), pacing_prior=10.0, **fields)
    return NeuralMethod(config, MethodContext(world.feature_dim, world))


def test_the_pacing_factor_is_the_gamma_posterior_quantile_of_discounted_counts(
    tiny_book: BatchBook, tiny_world: EmailWorld
) -> None:
    method = _paced(tiny_world, pacing_memory=0.5, pacing_quantile=0.8)
    logged = tiny_book.warm_start(0, 80)
    method.learn(logged, np.random.default_rng(0))  # logged sends: no plan budgeted them
    assert method.pacing_factor() == pytest.approx(stats.gamma.ppf(0.8, 10.0, scale=1 / 10.0))
    first = Rows(logged.features[:40], logged.converted[:40], np.ones(40), logged.value[:40], np.full(40, 0.05))
    second = Rows(logged.features[:40], logged.converted[:40], np.zeros(40), logged.value[:40], np.full(40, 0.1))
    method.learn(first, np.random.default_rng(1))
    method.learn(second, np.random.default_rng(2))
    realised = 0.5 * 40.0 + 0.0
    budgeted = 0.5 * 2.0 + 4.0
    expected = stats.gamma.ppf(0.8, 10.0 + realised, scale=1 / (10.0 + budgeted))
    assert method.pacing_factor() == pytest.approx(expected)


def test_a_paced_plan_budgets_its_costs_times_the_factor(tiny_book: BatchBook, tiny_world: EmailWorld) -> None:
    method = _paced(tiny_world)
    logged = tiny_book.warm_start(0, 80)
    method.learn(logged, np.random.default_rng(0))
    budgeted = Rows(logged.features, logged.converted, logged.unsubscribed, logged.value, np.full(80, 0.2))
    method.learn(budgeted, np.random.default_rng(1))
    rho = method.pacing_factor()
    assert rho < 1.0  # fewer unsubscriptions came back than were budgeted
    truth = tiny_book.truth(0)
    plan = method.plan(truth.batch, truth.constraints, np.random.default_rng(3))
    assert plan.policy == {"pacing_factor": rho}
    assert method.model is not None
    scores = score_neural(method.model, np.array(truth.batch.features), 1.0, np.random.default_rng(3))
    np.testing.assert_array_equal(plan.cost, scores.samples["unsubscription"])
    expected = solve_lp(truth.batch, truth.constraints, scores.samples["reward"], rho * plan.cost)
    np.testing.assert_array_equal(plan.x, expected.x)


def test_a_mean_budget_plan_reports_the_means_as_its_budgeted_costs(
    tiny_book: BatchBook, tiny_world: EmailWorld
) -> None:
    method = NeuralMethod(NeuralMethodConfig(budget_on="mean"), MethodContext(tiny_world.feature_dim, tiny_world))
    method.learn(tiny_book.warm_start(0, 80), np.random.default_rng(0))
    truth = tiny_book.truth(1)
    plan = method.plan(truth.batch, truth.constraints, np.random.default_rng(4))
    assert method.model is not None and plan.estimates is not None
    scores = score_neural(method.model, np.array(truth.batch.features), 1.0, np.random.default_rng(4))
    np.testing.assert_array_equal(plan.cost, scores.means["unsubscription"])
    np.testing.assert_array_equal(plan.estimates.unsub_decision, scores.samples["unsubscription"])
    assert set(plan.policy) == {"budget_scale"}
    # it spends no more on the means than the plan budgeted on the samples (its first iterate)
    plain = solve_lp(truth.batch, truth.constraints, scores.samples["reward"], scores.samples["unsubscription"])
    assert plan.cost @ plan.x <= plan.cost @ plain.x + 1e-9


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"budget_on": "max"}, "budget_on must be"),
        ({"pacing_prior": -1.0}, "pacing_prior must be"),
        ({"pacing_memory": 0.0}, "pacing_memory must be"),
        ({"pacing_quantile": 1.0}, "pacing_quantile must be"),
    ],
)
def test_budget_options_are_validated(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        NeuralMethodConfig(**fields)
