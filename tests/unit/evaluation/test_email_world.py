"""The simulated email world: determinism, true model, outcome sampling, constraints, oracle.

The oracle (``allocator.solve(..., "highs")`` on an ``AllocationProblem``) is checked against an
independently written dense LP (rows built with explicit loops, solved by
``scipy.optimize.linprog``, not through allocator/), against integer brute force on a tiny world,
against a closed form when no constraint binds, and against every feasible allocation hypothesis
can construct.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.email_batch import BatchConstraints, CandidateBatch, greedy_allocation, solve_allocation_lp
from evaluation.email_world import EmailWorld, EmailWorldConfig
from evaluation.errors import EvaluationInputError, OracleInfeasible

TOL = 1e-7


@pytest.fixture(scope="module")
def world() -> EmailWorld:
    return EmailWorld(EmailWorldConfig(seed=11))


@pytest.fixture(scope="module")
def tiny() -> EmailWorld:
    # 4 users x 3 candidates (of 6 items, 2 providers), cap 1: small enough to enumerate.
    return EmailWorld(
        EmailWorldConfig(n_users=4, n_items=6, n_providers=2, candidates_per_user=3, sends_per_user=1, seed=3)
    )


@pytest.fixture(scope="module")
def small() -> EmailWorld:
    return EmailWorld(EmailWorldConfig(n_users=30, n_items=12, n_providers=3, candidates_per_user=4, seed=5))


def _feasible(x: np.ndarray, batch: CandidateBatch, cost: np.ndarray, cons: BatchConstraints) -> bool:
    per_user = np.bincount(batch.pair_user, weights=x, minlength=cons.user_cap.size)
    exposure = np.bincount(batch.pair_provider, weights=x, minlength=cons.provider_min.size)
    return bool(
        np.all(x >= -TOL)
        and np.all(x <= 1 + TOL)
        and np.all(per_user <= cons.user_cap + TOL)
        and np.all(cost.T @ x <= cons.budget * (1 + TOL) + TOL)
        and np.all(exposure >= cons.provider_min - 1e-6)
        and np.all(exposure <= cons.provider_max + 1e-6)
    )


def _dense_oracle_objective(
    reward: np.ndarray, cost: np.ndarray, batch: CandidateBatch, cons: BatchConstraints
) -> float:
    """The same LP written independently: dense rows built pair by pair, solved by scipy's linprog."""
    n = reward.size
    rows: list[np.ndarray] = []
    rhs: list[float] = []
    for user in range(cons.user_cap.size):
        rows.append(np.array([1.0 if batch.pair_user[e] == user else 0.0 for e in range(n)]))
        rhs.append(float(cons.user_cap[user]))
    rows.append(cost[:, 0].copy())
    rhs.append(float(cons.budget[0]))
    for provider in range(cons.provider_min.size):
        member = np.array([1.0 if batch.pair_provider[e] == provider else 0.0 for e in range(n)])
        rows.append(-member)
        rhs.append(-float(cons.provider_min[provider]))
        if math.isfinite(cons.provider_max[provider]):
            rows.append(member)
            rhs.append(float(cons.provider_max[provider]))
    result = scipy.optimize.linprog(
        -reward,
        A_ub=np.vstack(rows),
        b_ub=np.array(rhs),
        bounds=[(0.0, 1.0)] * n,
        method="highs-ipm",
    )
    assert result.status == 0, result.message
    return -float(result.fun)


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_items": 5, "n_providers": 6, "candidates_per_user": 3}, "n_providers"),
        ({"candidates_per_user": 41}, "candidates_per_user"),
        ({"sends_per_user": 11}, "sends_per_user"),
        ({"unsub_budget_fraction": 0.0}, "unsub_budget_fraction"),
        ({"provider_min_fraction": 1.5}, "provider_min_fraction"),
        ({"provider_min_fraction": 0.8, "provider_max_fraction": 0.5}, "provider_max_fraction"),
        ({"conversion_rate": 1.0}, "conversion_rate"),
        ({"unsub_rate": 0.0}, "unsub_rate"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_rejects_invalid_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        EmailWorldConfig(**kwargs)  # type: ignore[arg-type]


# --- candidates and features ------------------------------------------------------------------


def test_candidates_are_deterministic_per_seed_and_batch_index(world: EmailWorld) -> None:
    again = EmailWorld(EmailWorldConfig(seed=11))
    again.candidates(0)  # generating other batches first must not shift batch 5
    a, b = world.candidates(5), again.candidates(5)
    assert a.batch_id == b.batch_id == "email-s11-b000005"
    for name in ("user_ids", "pair_user", "pair_item", "pair_provider", "features"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(world.candidates(6).pair_item, a.pair_item)
    other_seed = EmailWorld(EmailWorldConfig(seed=12)).candidates(5)
    assert not np.array_equal(other_seed.pair_item, a.pair_item)


def test_candidates_shape_distinct_items_and_providers(world: EmailWorld) -> None:
    c = world.config
    batch = world.candidates(0)
    n_pairs = c.n_users * c.candidates_per_user
    assert batch.n_pairs == n_pairs
    np.testing.assert_array_equal(batch.user_ids, np.arange(c.n_users))
    np.testing.assert_array_equal(batch.pair_user, np.repeat(np.arange(c.n_users), c.candidates_per_user))
    items = batch.pair_item.reshape(c.n_users, c.candidates_per_user)
    assert np.all(np.diff(items, axis=1) > 0)  # sorted, hence distinct within a user
    assert items.min() >= 0 and items.max() < c.n_items
    np.testing.assert_array_equal(batch.pair_provider, world.item_provider[batch.pair_item])
    assert batch.features.shape == (n_pairs, world.feature_dim)
    assert batch.features.dtype == np.float32
    assert not batch.pair_item.flags.writeable


def test_candidates_reject_negative_batch_index(world: EmailWorld) -> None:
    with pytest.raises(EvaluationInputError, match="batch_index"):
        world.candidates(-1)


def test_pair_features_are_user_item_and_cross_terms(world: EmailWorld) -> None:
    users = np.array([0, 3, 3, 299])
    items = np.array([1, 1, 39, 0])
    features = world.pair_features(users, items)
    c = world.config
    assert features.shape == (4, c.user_dim + 2 * c.item_dim)
    np.testing.assert_allclose(features[:, : c.user_dim], world.user_features[users], rtol=1e-6)
    np.testing.assert_allclose(features[:, c.user_dim : c.user_dim + c.item_dim], world.item_features[items], rtol=1e-6)
    assert np.all(np.isfinite(features))


@pytest.mark.parametrize(
    ("users", "items", "message"),
    [
        (np.array([0, 1]), np.array([0]), "equal length"),
        (np.array([300]), np.array([0]), "user ids"),
        (np.array([0]), np.array([40]), "item ids"),
        (np.array([0.5]), np.array([1]), "integers"),
    ],
)
def test_pair_ids_are_validated(world: EmailWorld, users: np.ndarray, items: np.ndarray, message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        world.true_probabilities(users, items)


# --- true model and outcomes -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 11])
def test_true_model_base_rates_and_tradeoff(seed: int) -> None:
    world = EmailWorld(EmailWorldConfig(seed=seed))
    c = world.config
    users, items = np.divmod(np.arange(c.n_users * c.n_items), c.n_items)
    p_conv, p_unsub, value = world.true_probabilities(users, items)
    # The offsets are fitted on all pairs of a world this size: exact base rates.
    assert p_conv.mean() == pytest.approx(c.conversion_rate, rel=1e-6)
    assert p_unsub.mean() == pytest.approx(c.unsub_rate, rel=1e-6)
    assert np.all(value > 0) and np.all((p_conv > 0) & (p_conv < 1))
    # The budget must trade off against reward: unsubscription rises with expected reward.
    assert np.corrcoef(p_conv, p_unsub)[0, 1] > 0.3
    assert scipy.stats.spearmanr(p_conv * value, p_unsub).statistic > 0.2
    # Heavy-ish tail: the most valuable item is worth several times the median one.
    assert world.item_value.max() > 3 * np.median(world.item_value)


def test_drawn_outcomes_match_true_probabilities_within_3_se(world: EmailWorld) -> None:
    batch = world.candidates(2)
    pick = np.array([0, 17, 404, 1234, 2999])
    repeats = 40_000
    users = np.repeat(batch.pair_user[pick], repeats)
    items = np.repeat(batch.pair_item[pick], repeats)
    converted, unsubscribed, value = world.draw_outcomes(users, items, np.random.default_rng(7))
    assert converted.dtype == bool and unsubscribed.dtype == bool
    assert np.all(value[~converted] == 0) and np.all(value[converted] > 0)
    p_conv, p_unsub, item_value = world.true_probabilities(batch.pair_user[pick], batch.pair_item[pick])
    for outcome, p in ((converted, p_conv), (unsubscribed, p_unsub)):
        observed = outcome.reshape(pick.size, repeats).mean(axis=1)
        se = np.sqrt(p * (1 - p) / repeats)
        assert np.all(np.abs(observed - p) <= 3 * se), (observed, p)
    values = value.reshape(pick.size, repeats)
    se = values.std(axis=1, ddof=1) / np.sqrt(repeats)
    assert np.all(np.abs(values.mean(axis=1) - p_conv * item_value) <= 3 * se)


# --- greedy, constraints and the oracle --------------------------------------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 6),
    cap=st.integers(1, 3),
)
def test_greedy_allocation_takes_each_users_top_positive_rewards(seed: int, n_users: int, cap: int) -> None:
    rng = np.random.default_rng(seed)
    pair_user = rng.permutation(np.repeat(np.arange(n_users), rng.integers(1, 5, size=n_users)))
    reward = rng.normal(size=pair_user.size)
    x = greedy_allocation(reward, pair_user, np.full(n_users, cap))
    expected = np.zeros(pair_user.size)
    for user in range(n_users):  # reference written per user, with a loop on purpose
        mine = np.flatnonzero(pair_user == user)
        for e in sorted(mine, key=lambda e: -reward[e])[:cap]:
            expected[e] = 1.0 if reward[e] > 0 else 0.0
    np.testing.assert_array_equal(x, expected)


def test_constraints_bind_greedy_violates_oracle_meets(world: EmailWorld) -> None:
    for batch_index in range(3):
        batch = world.candidates(batch_index)
        cons = world.constraints(batch)
        greedy = world.greedy(batch)
        oracle = world.oracle(batch, cons)
        _, cost = world.expected_reward_and_cost(batch)
        # Budget: greedy overspends by 1 / unsub_budget_fraction; the oracle fits.
        assert greedy.expected_cost[0] > cons.budget[0] * 1.2
        assert oracle.expected_cost[0] <= cons.budget[0] * (1 + TOL)
        # Providers: greedy starves some provider below its minimum; the oracle does not.
        assert np.any(greedy.provider_exposure < cons.provider_min - 1e-6)
        assert np.all(oracle.provider_exposure >= cons.provider_min - 1e-6)
        assert _feasible(oracle.x, batch, cost, cons)
        # The constraints cost reward.
        assert oracle.objective < greedy.objective


@pytest.mark.parametrize("world_name", ["tiny", "small"])
def test_oracle_equals_independent_dense_lp(world_name: str, request: pytest.FixtureRequest) -> None:
    w: EmailWorld = request.getfixturevalue(world_name)
    for batch_index in range(5):
        batch = w.candidates(batch_index)
        cons = w.constraints(batch)
        reward, cost = w.expected_reward_and_cost(batch)
        oracle = w.oracle(batch, cons)
        assert oracle.objective == pytest.approx(_dense_oracle_objective(reward, cost, batch, cons), rel=1e-6)
        assert oracle.objective == pytest.approx(float(reward @ oracle.x), rel=1e-12)
        np.testing.assert_allclose(oracle.expected_cost, cost.T @ oracle.x, rtol=1e-12)
        assert _feasible(oracle.x, batch, cost, cons)


def test_least_budget_is_the_independent_lp_minimum(small: EmailWorld) -> None:
    # The budget floor of constraints() is 1.05 x the least expected unsubscriptions that meet
    # the provider minimums: the same dense LP with reward -cost and no budget.
    batch = small.candidates(0)
    _, cost = small.expected_reward_and_cost(batch)
    cons = small.constraints(batch)
    no_budget = BatchConstraints(
        budget=np.array([1e300]),
        provider_min=cons.provider_min,
        provider_max=cons.provider_max,
        user_cap=cons.user_cap,
    )
    least = -_dense_oracle_objective(-cost[:, 0], cost, batch, no_budget)
    assert cons.budget[0] >= 1.05 * least * (1 - 1e-6)
    tight = BatchConstraints(
        budget=np.array([1.05 * least]),
        provider_min=cons.provider_min,
        provider_max=cons.provider_max,
        user_cap=cons.user_cap,
    )
    reward, _ = small.expected_reward_and_cost(batch)
    assert small.oracle(batch, tight).objective == pytest.approx(
        _dense_oracle_objective(reward, cost, batch, tight), rel=1e-6
    )


def _infeasible_cases(world: EmailWorld, batch: CandidateBatch) -> dict[str, BatchConstraints]:
    n_u, n_p = world.config.n_users, world.config.n_providers
    cap = np.ones(n_u, dtype=np.int64)
    loose_max = np.full(n_p, np.inf)
    return {
        # the minimums ask for more sends than the user caps allow in total
        "minimums over caps": BatchConstraints(
            budget=np.array([np.inf]), provider_min=np.full(n_p, n_u), provider_max=loose_max, user_cap=cap
        ),
        # a positive minimum with no budget to pay for it
        "budget below minimums": BatchConstraints(
            budget=np.array([0.0]), provider_min=np.full(n_p, 1.0), provider_max=loose_max, user_cap=cap
        ),
        # a minimum above the maximum
        "minimum above maximum": BatchConstraints(
            budget=np.array([np.inf]),
            provider_min=np.full(n_p, 2.0),
            provider_max=np.full(n_p, 1.0),
            user_cap=cap,
        ),
    }


@pytest.mark.parametrize("case", ["minimums over caps", "budget below minimums", "minimum above maximum"])
def test_oracle_raises_oracle_infeasible(small: EmailWorld, case: str) -> None:
    batch = small.candidates(0)
    cons = _infeasible_cases(small, batch)[case]
    with pytest.raises(OracleInfeasible, match="infeasible"):
        small.oracle(batch, cons)


def test_solve_allocation_lp_rejects_ids_out_of_range(small: EmailWorld) -> None:
    batch = small.candidates(0)
    reward, cost = small.expected_reward_and_cost(batch)
    cons = small.constraints(batch)
    user = batch.pair_user.copy()
    user[3] = small.config.n_users  # one past the last user cap
    with pytest.raises(EvaluationInputError, match="user"):
        solve_allocation_lp(reward, cost, user, batch.pair_provider, cons)
    with pytest.raises(EvaluationInputError, match="shapes"):
        solve_allocation_lp(reward[:-1], cost, batch.pair_user, batch.pair_provider, cons)


def test_oracle_bounds_every_integer_assignment_on_tiny_world(tiny: EmailWorld) -> None:
    # Brute force: each of the 4 users gets one of its 3 candidates or nothing (4**4 cases).
    for batch_index in range(5):
        batch = tiny.candidates(batch_index)
        cons = tiny.constraints(batch)
        reward, cost = tiny.expected_reward_and_cost(batch)
        oracle = tiny.oracle(batch, cons)
        k = tiny.config.candidates_per_user
        best = -math.inf
        for choice in itertools.product(range(k + 1), repeat=tiny.config.n_users):
            x = np.zeros(batch.n_pairs)
            for user, option in enumerate(choice):
                if option < k:
                    x[user * k + option] = 1.0
            if _feasible(x, batch, cost, cons):
                best = max(best, float(reward @ x))
        assert best <= oracle.objective + TOL
        if np.all(np.minimum(oracle.x, 1 - oracle.x) < 1e-9):  # integral LP optimum
            assert best == pytest.approx(oracle.objective, rel=1e-9)


def test_oracle_without_binding_constraints_is_greedy_closed_form(world: EmailWorld) -> None:
    batch = world.candidates(1)
    reward, _ = world.expected_reward_and_cost(batch)
    loose = BatchConstraints(
        budget=np.array([np.inf]),
        provider_min=np.zeros(world.config.n_providers),
        provider_max=np.full(world.config.n_providers, np.inf),
        user_cap=np.ones(world.config.n_users, dtype=np.int64),
    )
    oracle = world.oracle(batch, loose)
    closed_form = reward.reshape(world.config.n_users, -1).max(axis=1).sum()
    assert oracle.objective == pytest.approx(closed_form, rel=1e-9)
    assert oracle.objective == pytest.approx(world.greedy(batch).objective, rel=1e-9)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), weight=st.floats(0.0, 1.0))
def test_oracle_beats_every_feasible_allocation(small: EmailWorld, seed: int, weight: float) -> None:
    # Feasible allocations: vertices of the feasible polytope (the LP with a random objective)
    # and their mixtures with another vertex. The oracle's true reward bounds them all.
    batch = small.candidates(seed % 4)
    cons = small.constraints(batch)
    reward, cost = small.expected_reward_and_cost(batch)
    rng = np.random.default_rng(seed)
    vertices = [
        solve_allocation_lp(rng.normal(size=batch.n_pairs), cost, batch.pair_user, batch.pair_provider, cons).x
        for _ in range(2)
    ]
    x = weight * vertices[0] + (1 - weight) * vertices[1]
    assert _feasible(x, batch, cost, cons)
    assert float(reward @ x) <= small.oracle(batch, cons).objective + TOL


def test_oracle_beats_feasible_random_integer_allocations(small: EmailWorld) -> None:
    batch = small.candidates(0)
    cons = small.constraints(batch)
    reward, cost = small.expected_reward_and_cost(batch)
    oracle = small.oracle(batch, cons)
    rng = np.random.default_rng(0)
    k = small.config.candidates_per_user
    # 20,000 random one-per-user assignments, vectorised; keep the feasible ones.
    choice = rng.integers(0, k, size=(20_000, small.config.n_users))
    x = np.zeros((20_000, batch.n_pairs))
    np.put_along_axis(x, choice + np.arange(small.config.n_users) * k, 1.0, axis=1)
    # One item per user by construction: only the budget and provider rows can fail.
    exposure = x @ np.eye(small.config.n_providers)[batch.pair_provider]
    feasible = (x @ cost[:, 0] <= cons.budget[0]) & np.all(
        (exposure >= cons.provider_min) & (exposure <= cons.provider_max), axis=1
    )
    assert feasible.sum() > 0
    assert all(_feasible(row, batch, cost, cons) for row in x[feasible][:20])
    assert np.max(x[feasible] @ reward) <= oracle.objective + TOL


def test_batch_outcome_records_the_decisions(world: EmailWorld) -> None:
    batch = world.candidates(0)
    cons = world.constraints(batch)
    greedy = world.greedy(batch)
    outcome = world.batch_outcome(batch, greedy.x, np.random.default_rng(0), constraints=cons)
    assert outcome.batch_id == batch.batch_id
    assert float(outcome.x @ outcome.expected_reward) == pytest.approx(greedy.objective)
    assert outcome.oracle_objective == pytest.approx(world.oracle(batch, cons).objective)
    assert np.all(outcome.realised_value[greedy.x == 0] == 0)
    assert outcome.unsub_budget == pytest.approx(cons.budget[0])
    with pytest.raises(EvaluationInputError, match="shape"):
        world.batch_outcome(batch, greedy.x[:-1], np.random.default_rng(0))
