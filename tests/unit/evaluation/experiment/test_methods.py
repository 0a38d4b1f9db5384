"""The methods: the registry, each method's decision rule against a direct computation, and the
oracle and random baselines on a tiny world."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from scipy import stats

import allocator
from evaluation.email_batch import greedy_allocation
from evaluation.email_world import EmailWorld
from evaluation.errors import EvaluationInputError
from evaluation.experiment import METHODS
from evaluation.experiment.batches import BatchBook, Rows
from evaluation.experiment.lp import allocation_problem
from evaluation.experiment.methods import MethodContext, build_method, configured, method_spec
from evaluation.experiment.methods.linucb import LinUCBMethod
from evaluation.experiment.methods.neural import NeuralMethod, NeuralMethodConfig
from evaluation.experiment.methods.neural_model import score_neural
from evaluation.experiment.runner import run_seed
from tests.unit.evaluation.experiment.conftest import tiny_config

PAPER_METHODS = ("banditlp", "banditlp_naive_calibration", "nn_lp", "nnts", "linucb_lp", "random_lp", "oracle_lp")


def test_the_registry_holds_the_paper_methods_with_frozen_configs() -> None:
    assert set(PAPER_METHODS) <= set(METHODS)
    for name, spec in METHODS.items():
        assert spec.name == name
        assert dataclasses.is_dataclass(spec.config)
        field = dataclasses.fields(spec.config)[0] if dataclasses.fields(spec.config) else None
        if field is not None:
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(spec.config, field.name, getattr(spec.config, field.name))


def test_an_unknown_method_is_named_with_the_known_ones() -> None:
    with pytest.raises(EvaluationInputError, match="unknown method 'nope'; known methods: banditlp, "):
        method_spec("nope")


def test_tau_reaches_the_configs_that_have_one() -> None:
    assert configured("banditlp", 0.3).tau == 0.3
    assert configured("oracle_lp", 0.3) == METHODS["oracle_lp"].config


def test_the_version_guard_override_reaches_only_the_guarded_methods() -> None:
    assert configured("banditlp", 1.0, 3).version_guard == 3
    assert configured("banditlp_naive_calibration", 1.0, 8).version_guard == 8
    assert configured("banditlp", 1.0).version_guard == 5
    # the ablation without the guard, the baselines and the tuned variants keep their rules
    assert configured("banditlp_no_version_guard", 1.0, 3).version_guard == 1
    assert configured("nn_lp", 0.0, 3).version_guard == 1
    assert configured("banditlp_tuned", 1.0, 3) == METHODS["banditlp_tuned"].config
    assert configured("oracle_lp", 1.0, 3) == METHODS["oracle_lp"].config
    with pytest.raises(EvaluationInputError, match="version_guard must be >= 1"):
        tiny_config(version_guard=0)
    assert tiny_config(version_guard=3).to_json()["method_configs"]["banditlp"]["version_guard"] == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scores": "greedy"}, "scores must be"),
        ({"calibration": "platt"}, "calibration must be"),
        ({"decision": "top"}, "decision must be"),
        ({"tau": -1.0}, "tau must be finite"),
        ({"holdout": 1.0}, "holdout must be"),
        ({"buffer_rows": 0}, "buffer_rows must be"),
    ],
)
def test_neural_config_rejects_what_describes_no_method(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        NeuralMethodConfig(**fields)


def test_oracle_lp_reaches_the_oracle_and_keeps_every_constraint(tiny_book: BatchBook) -> None:
    run = run_seed(tiny_book, tiny_config(), "oracle_lp", seed=0)
    np.testing.assert_allclose(run.series["oracle_fraction"], 1.0, atol=1e-6)
    assert np.all(run.series["unsub_usage"] <= 1 + 1e-6)
    np.testing.assert_allclose(run.series["provider_min_shortfall"], 0.0, atol=1e-6)
    assert np.all(run.series["allocation_variance"] == 0.0)


def test_random_lp_keeps_its_rows_on_random_costs_and_earns_less_than_the_oracle(
    tiny_book: BatchBook, tiny_world: EmailWorld
) -> None:
    method = build_method("random_lp", MethodContext(tiny_world.feature_dim, tiny_world), 1.0)
    with pytest.raises(EvaluationInputError, match="must learn from the warm start"):
        method.plan(tiny_book.truth(0).batch, tiny_book.truth(0).constraints, np.random.default_rng(0))
    rows = tiny_book.warm_start(0, 80)
    method.learn(rows, np.random.default_rng(0))
    truth = tiny_book.truth(0)
    plan = method.plan(truth.batch, truth.constraints, np.random.default_rng(1))
    mean_reward, mean_unsub = rows.value.mean(), rows.unsubscribed.mean()
    assert np.all((plan.reward >= 0) & (plan.reward <= 2 * mean_reward))
    assert np.all((plan.cost >= 0) & (plan.cost <= 2 * max(mean_unsub, 1e-9)))
    if not plan.elastic:
        assert plan.cost @ plan.x <= truth.constraints.budget[0] + 1e-7
    other = method.plan(truth.batch, truth.constraints, np.random.default_rng(2))
    assert not np.array_equal(plan.x, other.x)  # stochastic
    run = run_seed(tiny_book, tiny_config(), "random_lp", seed=0)
    assert np.all(run.series["oracle_fraction"] < 1.0)
    assert np.all(run.series["allocation_variance"] > 0.0)


def _learnt(name: str, book: BatchBook, world: EmailWorld) -> object:
    method = build_method(name, MethodContext(world.feature_dim, world), 1.0)
    method.learn(book.warm_start(0, 80), np.random.default_rng(0))
    return method


def test_nnts_sends_each_users_best_sampled_items_without_budget_rows(
    tiny_book: BatchBook, tiny_world: EmailWorld
) -> None:
    method = _learnt("nnts", tiny_book, tiny_world)
    assert isinstance(method, NeuralMethod) and method.model is not None
    truth = tiny_book.truth(0)
    plan = method.plan(truth.batch, truth.constraints, np.random.default_rng(4))
    scores = score_neural(method.model, np.array(truth.batch.features), 1.0, np.random.default_rng(4))
    np.testing.assert_array_equal(plan.reward, scores.samples["reward"])
    expected = greedy_allocation(scores.samples["reward"], truth.batch.pair_user, truth.constraints.user_cap)
    np.testing.assert_array_equal(plan.x, expected)
    assert set(np.unique(plan.x)) <= {0.0, 1.0}


def test_banditlp_budgets_its_calibrated_samples_and_nn_lp_its_calibrated_means(
    tiny_book: BatchBook, tiny_world: EmailWorld
) -> None:
    truth = tiny_book.truth(0)
    X = np.array(truth.batch.features)
    budget = truth.constraints.budget[0]
    for name, tau in (("banditlp_unguarded", 1.0), ("banditlp", 1.0), ("nn_lp", 0.0)):
        method = _learnt(name, tiny_book, tiny_world)
        assert isinstance(method, NeuralMethod) and method.model is not None
        plan = method.plan(truth.batch, truth.constraints, np.random.default_rng(6))
        scores = score_neural(method.model, X, tau, np.random.default_rng(6))
        used = scores.samples if tau > 0 else scores.means
        np.testing.assert_array_equal(plan.reward, used["reward"])
        assert plan.estimates is not None
        np.testing.assert_array_equal(plan.estimates.unsub_predicted, scores.raw_means["unsubscription"])
        np.testing.assert_array_equal(plan.estimates.unsub_decision, used["unsubscription"])
        rho = method.pacing_factor()
        if name == "banditlp":
            # The guard: budgeted on the calibrated means, the plan fits the paced budget on its
            # draw and on the means; the prior alone (no own sends yet) gives Gamma(20, 20)'s median.
            np.testing.assert_array_equal(plan.cost, scores.means["unsubscription"])
            assert rho == pytest.approx(stats.gamma.ppf(0.5, 20.0, scale=1 / 20.0), rel=1e-12)
            if not plan.elastic:
                assert rho * used["unsubscription"] @ plan.x <= budget + 1e-7
                assert rho * plan.cost @ plan.x <= budget + 1e-7
        else:
            assert rho == 1.0
            np.testing.assert_array_equal(plan.cost, used["unsubscription"])
            if not plan.elastic:
                assert plan.cost @ plan.x <= budget + 1e-7
        # planning does not change the method: the same generator gives the same plan
        again = method.plan(truth.batch, truth.constraints, np.random.default_rng(6))
        np.testing.assert_array_equal(plan.x, again.x)
        assert method.stochastic == (name != "nn_lp")


def test_banditlp_mean_row_is_the_lp_with_both_budget_rows_solved_by_highs(
    tiny_book: BatchBook, tiny_world: EmailWorld
) -> None:
    """The guarded plan's objective equals HiGHS' on the LP stacked here by hand (the batch's rows on
    the paced draw, one more on the paced means), and it is elastic exactly where that LP is
    infeasible."""
    method = _learnt("banditlp", tiny_book, tiny_world)
    assert isinstance(method, NeuralMethod) and method.model is not None
    rho = method.pacing_factor()
    feasible = 0
    truth = tiny_book.truth(0)
    for scale in (1.0, 2.0, 4.0):  # the tiny world's model over-estimates costs: its own budget is infeasible
        constraints = dataclasses.replace(truth.constraints, budget=truth.constraints.budget * scale)
        plan = method.plan(truth.batch, constraints, np.random.default_rng(6))
        assert plan.estimates is not None
        draw_cost = np.asarray(plan.estimates.unsub_decision)
        problem = allocation_problem(truth.batch, constraints, plan.reward, rho * draw_cost)
        problem = dataclasses.replace(
            problem,
            cost=np.vstack([problem.cost, rho * np.asarray(plan.cost)[None, :]]),
            budget=np.concatenate([problem.budget, problem.budget[:1]]),
        )
        try:
            exact = allocator.solve(problem, "highs", method="simplex")
        except allocator.InfeasibleAllocation:
            assert plan.elastic
            continue
        assert not plan.elastic
        feasible += 1
        assert plan.reward @ plan.x == pytest.approx(plan.reward @ exact.x, rel=1e-7, abs=1e-9)
    assert feasible > 0


def test_banditlp_holds_its_costs_to_the_warier_of_its_last_versions(
    tiny_book: BatchBook, tiny_world: EmailWorld
) -> None:
    """After two batches of its own sends, banditlp's version factor is the brute-force largest
    ratio of a kept version's calibrated cost of the newest sends (scored here by
    ``score_neural``) to the newest version's, and its plan meets the budget on the paced,
    guarded draw and means; the ablation without the guard keeps a factor of 1."""
    method = _learnt("banditlp", tiny_book, tiny_world)
    plain = _learnt("banditlp_no_version_guard", tiny_book, tiny_world)
    assert isinstance(method, NeuralMethod) and isinstance(plain, NeuralMethod)
    assert method.config.version_guard == 5 and plain.config.version_guard == 1
    rng = np.random.default_rng(8)
    for b in (0, 1):
        truth = tiny_book.truth(b)
        for m in (method, plain):
            plan = m.plan(truth.batch, truth.constraints, rng)
            sent = rng.random(plan.x.size) < plan.x
            rows = Rows(
                truth.batch.features[sent],
                (rng.random(sent.sum()) < 0.2).astype(float),
                (rng.random(sent.sum()) < 0.1).astype(float),
                np.zeros(sent.sum()),
                plan.cost[sent],
            )
            m.learn(rows, np.random.default_rng(b))
            if m is method:
                newest = np.array(rows.features)  # banditlp's own sends of this batch
    assert len(method.guard.models) == 3 and plain.version_factor == 1.0
    totals = [
        float(score_neural(v, newest, 0.0, np.random.default_rng(0)).means["unsubscription"].sum())
        for v in method.guard.models
    ]
    assert method.version_factor == pytest.approx(max(1.0, max(totals) / totals[-1]), rel=1e-9)
    truth = tiny_book.truth(2)
    constraints = dataclasses.replace(truth.constraints, budget=truth.constraints.budget * 4.0)
    plan = method.plan(truth.batch, constraints, np.random.default_rng(6))
    assert plan.estimates is not None and plan.policy["version_factor"] == method.version_factor
    scale = method.pacing_factor() * method.version_factor
    assert method.cost_factor() == pytest.approx(scale, rel=1e-12)
    if not plan.elastic:
        assert scale * np.asarray(plan.estimates.unsub_decision) @ plan.x <= constraints.budget[0] + 1e-7
        assert scale * np.asarray(plan.cost) @ plan.x <= constraints.budget[0] + 1e-7


def test_linucb_scores_equal_the_closed_form_posterior(tiny_book: BatchBook, tiny_world: EmailWorld) -> None:
    method = _learnt("linucb_lp", tiny_book, tiny_world)
    assert isinstance(method, LinUCBMethod)
    rows = tiny_book.warm_start(0, 80)
    phi = np.concatenate([rows.features.astype(float), np.ones((rows.n, 1))], axis=1)
    truth = tiny_book.truth(0)
    q = np.concatenate([truth.batch.features.astype(float), np.ones((truth.batch.n_pairs, 1))], axis=1)
    lam, alpha = 1.0, 1.0
    reward_var = max(rows.value.var(), 1e-6)
    p = rows.unsubscribed.mean()
    cost_var = max(p * (1 - p), 1e-6)
    # A = lam I + Phi'Phi / s2, mean = A^-1 Phi'y / s2, ucb = q mean + alpha sqrt(q A^-1 q')
    A_r = lam * np.eye(phi.shape[1]) + phi.T @ phi / reward_var
    mean_r = np.linalg.solve(A_r, phi.T @ rows.value / reward_var)
    width = np.sqrt(np.einsum("ij,ji->i", q, np.linalg.solve(A_r, q.T)))
    A_c = lam * np.eye(phi.shape[1]) + phi.T @ phi / cost_var
    mean_c = np.linalg.solve(A_c, phi.T @ rows.unsubscribed / cost_var)
    plan = method.plan(truth.batch, truth.constraints, np.random.default_rng(0))
    np.testing.assert_allclose(plan.reward, np.maximum(q @ mean_r + alpha * width, 0.0), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(plan.cost, np.clip(q @ mean_c, 0.0, 1.0), rtol=1e-8, atol=1e-12)


def test_a_model_method_must_learn_before_it_plans(tiny_book: BatchBook, tiny_world: EmailWorld) -> None:
    truth = tiny_book.truth(0)
    for name in ("banditlp", "linucb_lp"):
        method = build_method(name, MethodContext(tiny_world.feature_dim, tiny_world), 1.0)
        with pytest.raises(EvaluationInputError, match="must learn from the warm start"):
            method.plan(truth.batch, truth.constraints, np.random.default_rng(0))
