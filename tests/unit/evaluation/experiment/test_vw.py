"""The Vowpal Wabbit peers: configuration, VW's command lines, pmfs that are distributions, pure and
seeded plans, the warm start learnt with its candidate sets, and learning a known best action."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from evaluation.email_batch import BatchConstraints
from evaluation.email_world import EmailWorld, EmailWorldConfig
from evaluation.errors import EvaluationInputError
from evaluation.experiment import DEFAULT_METHODS, METHODS
from evaluation.experiment.batches import BatchBook, Rows
from evaluation.experiment.methods import MethodContext, build_method
from evaluation.experiment.methods.vw import EXPLORERS, Explorer, VWConfig, VWMethod
from evaluation.experiment.runner import run_seed
from tests.unit.evaluation.experiment.conftest import tiny_config

VW_METHODS = ("vw_epsilon", "vw_softmax", "vw_bag", "vw_squarecb", "vw_regcb")


def _warm(name: str, world: EmailWorld, book: BatchBook, seed: int = 0) -> VWMethod:
    method = build_method(name, MethodContext(world.feature_dim, world), 1.0)
    assert isinstance(method, VWMethod)
    method.learn(book.warm_start(0, 80), np.random.default_rng(seed))
    return method


def _sends(x: np.ndarray, pair_user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One pair per user drawn from its pmf ``x`` (each user's pairs renormalised)."""
    picks = []
    for user in np.unique(pair_user):
        pairs = np.flatnonzero(pair_user == user)
        picks.append(rng.choice(pairs, p=x[pairs] / x[pairs].sum()))
    return np.array(picks, dtype=np.int64)


def _own_rows(book: BatchBook, b: int, sent: np.ndarray, seed: int = 0) -> Rows:
    batch = book.truth(b).batch
    outcomes = book.outcomes(seed, b)
    return Rows(
        batch.features[sent],
        outcomes.converted[sent].astype(float),
        outcomes.unsubscribed[sent].astype(float),
        outcomes.value[sent],
        np.zeros(sent.size),
    )


def test_the_vw_methods_are_registered_and_opt_in() -> None:
    assert set(VW_METHODS) <= set(METHODS)
    assert not set(VW_METHODS) & set(DEFAULT_METHODS)
    assert tuple(METHODS[name].config.explorer for name in VW_METHODS) == EXPLORERS
    names = list(METHODS)
    assert names.index("vw_regcb") + 1 == names.index("linucb_lp")


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("vw_epsilon", "--cb_explore_adf --epsilon 0.1 -q ui --quiet"),
        ("vw_softmax", "--cb_explore_adf --softmax --lambda 10.0 -q ui --quiet"),
        ("vw_bag", "--cb_explore_adf --bag 5 -q ui --quiet"),
        ("vw_squarecb", "--cb_explore_adf --squarecb --gamma_scale 10.0 -q ui --quiet"),
        (
            "vw_regcb",
            "--cb_explore_adf --regcb --mellowness 0.1 --cb_min_cost -1 --cb_max_cost 0.0 -q ui --quiet",
        ),
    ],
)
def test_each_explorer_is_vws_own_command_line(name: str, arguments: str) -> None:
    assert METHODS[name].config.arguments() == arguments


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"explorer": "ucb"}, "explorer must be one of epsilon, softmax, bag, squarecb, regcb"),
        ({"epsilon": 1.5}, "epsilon must be in"),
        ({"epsilon": float("nan")}, "epsilon must be in"),
        ({"softmax_lambda": -1.0}, "softmax_lambda must be finite"),
        ({"bag_size": 0}, "bag_size must be an integer >= 1"),
        ({"bag_size": 2.5}, "bag_size must be an integer >= 1"),
        ({"gamma_scale": float("inf")}, "gamma_scale must be finite"),
        ({"mellowness": 0.0}, "mellowness must be finite and > 0"),
        ({"interactions": ("uq",)}, "interactions must be strings"),
        ({"interactions": ("u",)}, "interactions must be strings"),
        ({"unsub_weight": -0.1}, "unsub_weight must be finite"),
        ({"reward_scale": 0.0}, "reward_scale must be None or finite and > 0"),
    ],
)
def test_vw_config_rejects_what_describes_no_learner(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        VWConfig(**fields)


def test_a_feature_width_off_the_worlds_layout_is_refused(tiny_world: EmailWorld) -> None:
    with pytest.raises(EvaluationInputError, match="vw needs features"):
        VWMethod(VWConfig(), MethodContext(tiny_world.feature_dim + 1, tiny_world))


@pytest.mark.parametrize("name", VW_METHODS)
def test_each_plan_is_a_pmf_per_user_and_planning_changes_nothing(
    name: str, tiny_world: EmailWorld, tiny_book: BatchBook
) -> None:
    truth0, truth1 = tiny_book.truth(0), tiny_book.truth(1)
    method = build_method(name, MethodContext(tiny_world.feature_dim, tiny_world), 1.0)
    with pytest.raises(EvaluationInputError, match="must learn from the warm start"):
        method.plan(truth0.batch, truth0.constraints, np.random.default_rng(0))

    planner, twin = _warm(name, tiny_world, tiny_book), _warm(name, tiny_world, tiny_book)
    assert planner.single_action_rows == 0  # every logged decision was recovered
    plan = planner.plan(truth0.batch, truth0.constraints, np.random.default_rng(5))
    again = planner.plan(truth0.batch, truth0.constraints, np.random.default_rng(5))
    other = planner.plan(truth0.batch, truth0.constraints, np.random.default_rng(6))
    assert plan.x.shape == plan.reward.shape == plan.cost.shape == (truth0.batch.n_pairs,)
    assert np.all(plan.x >= 0)
    np.testing.assert_allclose(np.bincount(truth0.batch.pair_user, plan.x), 1.0, atol=1e-12)
    np.testing.assert_array_equal(plan.cost, 0.0)
    for replan in (again, other):  # VW's pmf does not depend on the generator
        np.testing.assert_array_equal(replan.x, plan.x)
        np.testing.assert_array_equal(replan.reward, plan.reward)

    # The twin plans once; the planner planned three times: after the same sends they agree.
    twin_plan = twin.plan(truth0.batch, truth0.constraints, np.random.default_rng(5))
    np.testing.assert_array_equal(twin_plan.x, plan.x)
    sent = _sends(plan.x, truth0.batch.pair_user, np.random.default_rng(9))
    assert sent.size == tiny_world.config.n_users
    for m in (planner, twin):
        m.learn(_own_rows(tiny_book, 0, sent), np.random.default_rng(1))
    after = planner.plan(truth1.batch, truth1.constraints, np.random.default_rng(0))
    np.testing.assert_array_equal(after.x, twin.plan(truth1.batch, truth1.constraints, np.random.default_rng(0)).x)


def test_users_without_a_send_get_none_and_a_cap_above_one_still_gets_one(
    tiny_world: EmailWorld, tiny_book: BatchBook
) -> None:
    truth = tiny_book.truth(0)
    method = _warm("vw_epsilon", tiny_world, tiny_book)
    cap = np.array(truth.constraints.user_cap)
    cap[0], cap[1] = 0, 3
    constraints = BatchConstraints(
        truth.constraints.budget, truth.constraints.provider_min, truth.constraints.provider_max, cap
    )
    per_user = np.bincount(truth.batch.pair_user, method.plan(truth.batch, constraints, np.random.default_rng(0)).x)
    assert per_user[0] == 0.0
    np.testing.assert_allclose(per_user[1:], 1.0, atol=1e-12)


def test_logged_rows_not_in_the_log_are_single_action_and_unknown_sends_are_refused(
    tiny_world: EmailWorld, tiny_book: BatchBook
) -> None:
    method = _warm("vw_epsilon", tiny_world, tiny_book)
    rows = tiny_book.warm_start(1, 5)
    moved = Rows(rows.features + np.float32(0.5), rows.converted, rows.unsubscribed, rows.value)
    method.learn(moved, np.random.default_rng(0))
    assert method.single_action_rows == 5
    truth = tiny_book.truth(0)
    method.plan(truth.batch, truth.constraints, np.random.default_rng(0))
    own = Rows(moved.features, moved.converted, moved.unsubscribed, moved.value, np.zeros(moved.n))
    with pytest.raises(EvaluationInputError, match="row 0 is a send of no pair of the last planned batch"):
        method.learn(own, np.random.default_rng(0))


@pytest.mark.parametrize("name", VW_METHODS)
def test_two_fresh_runs_with_the_same_seeds_are_equal(name: str, tiny_book: BatchBook) -> None:
    config = tiny_config(variance_draws=1)
    first, second = run_seed(tiny_book, config, name, seed=1), run_seed(tiny_book, config, name, seed=1)
    assert first.series.keys() == second.series.keys()
    for key, values in first.series.items():
        np.testing.assert_array_equal(values, second.series[key], err_msg=key)
    np.testing.assert_array_equal(first.series["allocation_variance"], 0.0)
    np.testing.assert_array_equal(first.series["sends"], tiny_book.world.config.n_users)


def test_the_generator_seeds_vw(tiny_world: EmailWorld, tiny_book: BatchBook) -> None:
    # Bagging draws its bootstrap weights from VW's generator: other seeds, other policies.
    truth = tiny_book.truth(0)
    rng = np.random.default_rng(0)
    plans = [_warm("vw_bag", tiny_world, tiny_book, seed=s).plan(truth.batch, truth.constraints, rng) for s in (0, 1)]
    assert not np.array_equal(plans[0].x, plans[1].x)


#: Two items, both candidates of every user: item 1 always earns 1, item 0 never does (item 0
#: comes first in each user's list, where VW breaks ties before it has learnt anything).
TWO_ACTIONS = EmailWorldConfig(
    n_users=20, n_items=2, n_providers=1, candidates_per_user=2, user_dim=2, item_dim=2, seed=4
)


@pytest.mark.parametrize(
    ("explorer", "least_mass"),
    [("epsilon", 0.94), ("softmax", 0.99), ("bag", 0.99), ("squarecb", 0.95), ("regcb", 0.99)],
)
def test_vw_learns_the_better_of_two_actions(explorer: Explorer, least_mass: float) -> None:
    world = EmailWorld(TWO_ACTIONS)
    method = VWMethod(VWConfig(explorer=explorer, reward_scale=1.0), MethodContext(world.feature_dim, world))
    d = world.feature_dim
    method.learn(Rows(np.zeros((0, d), np.float32), np.zeros(0), np.zeros(0), np.zeros(0)), np.random.default_rng(0))
    rng = np.random.default_rng(1)
    cap = np.ones(TWO_ACTIONS.n_users, dtype=np.int64)
    constraints = BatchConstraints(np.array([np.inf]), np.zeros(1), np.full(1, np.inf), cap)
    for b in range(30):
        batch = world.candidates(b)
        x = method.plan(batch, constraints, rng).x
        if b == 0:  # nothing learnt: no more than half the mass on the better item
            assert x[batch.pair_item == 1].max() <= 0.5
        sent = _sends(x, batch.pair_user, rng)
        good = (batch.pair_item[sent] == 1).astype(float)
        method.learn(Rows(batch.features[sent], good, np.zeros(sent.size), good, np.zeros(sent.size)), rng)
    batch = world.candidates(30)
    x = method.plan(batch, constraints, rng).x
    mass = x[batch.pair_item == 1]
    if explorer == "epsilon":  # epsilon-greedy: 1 - eps + eps / 2 on the greedy action, exactly
        np.testing.assert_allclose(mass, 1 - 0.1 + 0.1 / 2, atol=1e-6)
    assert mass.min() >= least_mass
