"""``banditlp_tuned_budget``: the per-arm rows by hand, the LP with arm rows against HiGHS written out
row by row, the loop through the runner, seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.optimize import linprog

from evaluation.email_batch import BatchConstraints, CandidateBatch
from evaluation.email_world import EmailWorld
from evaluation.errors import EvaluationInputError
from evaluation.experiment import results_document, run_experiment
from evaluation.experiment.batches import BatchBook
from evaluation.experiment.lp import solve_lp
from evaluation.experiment.methods import METHODS, MethodContext, MethodSpec
from evaluation.experiment.methods.neural import NeuralMethodConfig
from evaluation.experiment.methods.tuned import binned_observations, observations
from evaluation.experiment.methods.tuned_budget import TunedBudgetConfig, TunedBudgetMethod, batch_arm_rows
from evaluation.experiment.runner import run_seed
from evaluation.experiment.seeding import generator
from tests.unit.evaluation.experiment.conftest import tiny_config

#: A tuner that fits after one batch of the tiny world (40 users) with few draws.
QUICK = TunedBudgetConfig(warmup_batches=1, chunk_users=5, n_samples=64, n_candidates=16)
NAME = "banditlp_tuned_budget"


def test_arm_rows_match_a_hand_computation() -> None:
    # users 0, 2, 3 on arm 2, users 1 and 4 on arm 0; user 5 (arm 1) has no pair in the batch, so
    # arm 1 gets no row and n = 5 users; B = 2
    user_arm = np.array([2, 0, 2, 2, 0, 1])
    pair_user = np.array([0, 0, 1, 2, 2, 3, 4])
    cost = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    scale = np.array([0.8, 1.1, 1.0])
    rows, limits = batch_arm_rows(cost, 2.0, pair_user, user_arm, scale)
    np.testing.assert_allclose(rows, [[0, 0, 0.3, 0, 0, 0, 0.7], [0.1, 0.2, 0, 0.4, 0.5, 0.6, 0]])
    np.testing.assert_allclose(limits, [0.8 * 2 * 2 / 5, 1.0 * 2 * 3 / 5])
    # every pair is in exactly one arm row: the rows sum to the batch row
    np.testing.assert_allclose(rows.sum(axis=0), cost)


def _two_arm_batch() -> tuple[CandidateBatch, BatchConstraints, np.ndarray, np.ndarray, np.ndarray]:
    """4 users x 3 items, one provider, one send per user, B = 1; users 0, 1 on arm 0 (s = 0.5),
    2, 3 on arm 1 (s = 1): limits 0.25 and 0.5, the batch row 1 slack at any plan meeting both."""
    pair_user = np.repeat(np.arange(4), 3)
    pair_item = np.tile(np.arange(3), 4)
    batch = CandidateBatch(
        batch_id="t",
        batch_index=0,
        user_ids=np.arange(4),
        pair_user=pair_user,
        pair_item=pair_item,
        pair_provider=np.zeros(12, dtype=np.int64),
        features=np.zeros((12, 1), dtype=np.float32),
    )
    constraints = BatchConstraints(
        budget=np.array([1.0]),
        provider_min=np.zeros(1),
        provider_max=np.full(1, np.inf),
        user_cap=np.ones(4, dtype=np.int64),
    )
    # the costly items earn most, so both arm rows bind
    reward = np.array([3.0, 2.0, 0.5, 2.5, 1.8, 0.4, 3.2, 2.2, 0.6, 2.8, 1.5, 0.3])
    cost = np.array([0.4, 0.2, 0.01, 0.35, 0.15, 0.02, 0.45, 0.25, 0.01, 0.3, 0.1, 0.03])
    return batch, constraints, reward, cost, np.array([0, 0, 1, 1])


def test_the_lp_with_two_arm_rows_matches_highs_written_out_row_by_row() -> None:
    batch, constraints, reward, cost, user_arm = _two_arm_batch()
    scale = np.array([0.5, 1.0])
    rows, limits = batch_arm_rows(cost, 1.0, batch.pair_user, user_arm, scale)
    np.testing.assert_allclose(limits, [0.25, 0.5])
    solved = solve_lp(batch, constraints, reward, cost, extra_rows=(rows, limits))
    assert not solved.elastic

    # the same LP built independently: one row per user cap, the batch row, each arm's row
    arm_of_pair = user_arm[batch.pair_user]
    a_ub = [(batch.pair_user == u).astype(float) for u in range(4)]
    a_ub += [cost, cost * (arm_of_pair == 0), cost * (arm_of_pair == 1)]
    b_ub = [1, 1, 1, 1, 1.0, 0.5 * 1.0 * 2 / 4, 1.0 * 1.0 * 2 / 4]
    truth = linprog(-reward, A_ub=np.array(a_ub), b_ub=b_ub, bounds=(0, 1), method="highs")
    assert truth.status == 0
    assert reward @ solved.x == pytest.approx(-truth.fun, rel=1e-7)
    # both arm rows bind (positive duals), the batch row does not
    assert (cost * (arm_of_pair == 0)) @ solved.x == pytest.approx(0.25, abs=1e-7)
    assert (cost * (arm_of_pair == 1)) @ solved.x == pytest.approx(0.5, abs=1e-7)
    assert np.all(truth.ineqlin.marginals[5:] < -1e-9) and cost @ solved.x < 1.0 - 1e-6
    # without the arm rows the pooled LP earns more: the rows are what holds each arm to its share
    pooled = solve_lp(batch, constraints, reward, cost)
    assert reward @ pooled.x > reward @ solved.x + 1e-6


def test_two_dimensional_observations_pool_per_cell_at_the_mean_setting() -> None:
    from evaluation.experiment.methods.tuned import ArmTotals

    a = ArmTotals(users=2, sends=2, value=4, unsubscriptions=1, budget=1, top_k_sends=1, compared_sends=2)
    b = ArmTotals(users=2, sends=1, value=0, unsubscriptions=1, budget=1, top_k_sends=1, compared_sends=1)
    # cells of 0.5 in tau and 0.1 in s: the first and third arm-batches share a cell and pool into
    # one chunk of 4 users at their mean setting; the second is alone in its cell and short of 4
    history = [((0.1, 0.92), a), ((1.6, 0.75), b), ((0.3, 0.98), b)]
    X, Y = binned_observations(history, chunk_users=4, widths=(0.5, 0.1))
    np.testing.assert_allclose(X, [[0.2, 0.95]])
    np.testing.assert_allclose(Y, [[4 / 4, 2 / 2, 2 / 3]])
    # in one dimension it is banditlp_tuned's observations
    one = [(0.1, a), (1.6, b), (0.3, b)]
    for got, want in zip(
        binned_observations([((t,), c) for t, c in one], 2, (0.5,)), observations(one, 2, 0.5), strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_each_arm_spends_at_most_its_scaled_share_on_the_plans_costs(
    tiny_world: EmailWorld, tiny_book: BatchBook
) -> None:
    # the arm rows alone (banditlp's mean row and pacing off: the tiny world's LP is infeasible with
    # the mean row at this warm start, and an elastic plan would test nothing)
    unguarded = dataclasses.replace(QUICK, model=NeuralMethodConfig(scores="thompson", calibration="heuristic"))
    method = TunedBudgetMethod(unguarded, MethodContext(tiny_world.feature_dim, tiny_world))
    method.learn(tiny_book.warm_start(0, 80), generator(0, NAME, -1, "train"))
    truth = tiny_book.truth(0)
    plan = method.plan(truth.batch, truth.constraints, np.random.default_rng(1))
    assert not plan.elastic
    dist = method.distribution
    assert dist is not None
    np.testing.assert_array_equal(dist.points, list(zip(QUICK.warmup_taus, QUICK.warmup_scales)))
    assert method._positions is not None
    user_arm = dist.user_arms(method._positions)
    budget = float(truth.constraints.budget[0])
    n = np.unique(truth.batch.pair_user).size
    pair_arm = user_arm[truth.batch.pair_user]
    for a, (_, s) in enumerate(dist.points):
        users = np.unique(truth.batch.pair_user[pair_arm == a]).size
        assert plan.cost[pair_arm == a] @ plan.x[pair_arm == a] <= s * budget * users / n + 1e-7
    assert plan.cost @ plan.x <= budget + 1e-7
    assert plan.policy["scale_mean"] == pytest.approx(np.mean(QUICK.warmup_scales))


def _quick_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, NAME, MethodSpec(NAME, "quick", QUICK, TunedBudgetMethod))


def test_a_run_through_the_runner_tunes_tau_and_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    _quick_spec(monkeypatch)
    run = run_experiment(tiny_config(methods=(NAME,), seeds=1, batches=3))
    doc = results_document(run)["methods"][NAME]
    policy = doc["policy"]
    assert {"tau_mean", "scale_mean", "arm0_tau", "arm0_scale", "arm0_p", "arm4_scale"} <= set(policy)
    assert len(doc["reward"][0]) == 3 and all(v is not None for v in doc["unsub_usage"][0])
    arms = [[(policy[f"arm{k}_tau"][0][b], policy[f"arm{k}_scale"][0][b]) for k in range(5)] for b in range(3)]
    # batches 1 and 2: the warm-up arms (in order of tau); batch 3: the tuner's distribution
    warm = list(zip(QUICK.warmup_taus, QUICK.warmup_scales))
    assert arms[0] == warm and arms[1] == warm
    tuned = [(t, s, policy[f"arm{k}_p"][0][2]) for k, (t, s) in enumerate(arms[2]) if t is not None]
    assert tuned and [(t, s) for t, s, _ in tuned] != warm
    assert all(0.0 <= t <= 2.0 and 0.7 <= s <= 1.1 and p > 0 for t, s, p in tuned)
    assert sum(p for *_, p in tuned) == pytest.approx(1.0)
    assert policy["scale_mean"][0][2] == pytest.approx(sum(s * p for _, s, p in tuned))


def test_the_same_seed_gives_the_same_run_and_another_seed_another(
    monkeypatch: pytest.MonkeyPatch, tiny_book: BatchBook
) -> None:
    _quick_spec(monkeypatch)
    config = tiny_config(methods=(NAME,), seeds=1, batches=3)
    a = run_seed(tiny_book, config, NAME, 0)
    b = run_seed(tiny_book, config, NAME, 0)
    c = run_seed(tiny_book, config, NAME, 1)
    assert a.series.keys() == b.series.keys()
    for key in a.series:
        np.testing.assert_array_equal(a.series[key], b.series[key], err_msg=key)
    assert not np.array_equal(a.series["reward"], c.series["reward"])


def test_the_config_rejects_what_cannot_tune() -> None:
    with pytest.raises(EvaluationInputError, match="scale_bounds"):
        TunedBudgetConfig(scale_bounds=(1.0, 0.5))
    with pytest.raises(EvaluationInputError, match="warmup_scales"):
        TunedBudgetConfig(warmup_scales=(0.9, 1.0))
    with pytest.raises(EvaluationInputError, match="warmup_scales"):
        TunedBudgetConfig(warmup_scales=(0.9, 1.1, 0.7, 1.0, 1.5))
    with pytest.raises(EvaluationInputError, match="tau_bounds"):
        TunedBudgetConfig(tau_bounds=(1.0, 1.0))


def test_a_window_fits_on_the_last_batches_only(tiny_world: EmailWorld) -> None:
    from evaluation.experiment.methods.tuned import ArmTotals

    context = MethodContext(tiny_world.feature_dim, tiny_world)
    method = TunedBudgetMethod(TunedBudgetConfig(window_batches=2), context)
    # three fed-back batches: arm-batches 0-1, 2, 3-4
    method.history = [((0.1 * i, 1.0), ArmTotals(users=i)) for i in range(5)]
    method.batch_starts = [0, 2, 3]
    assert method._fitted_history() == method.history[2:]
    method.batch_starts = [0, 2]
    assert method._fitted_history() == method.history
    everything = TunedBudgetMethod(TunedBudgetConfig(), context)
    everything.history, everything.batch_starts = method.history, [0, 2, 3]
    assert everything._fitted_history() == method.history
    with pytest.raises(EvaluationInputError, match="window_batches"):
        TunedBudgetConfig(window_batches=-1)


def test_with_banditlp_s_guard_each_arm_also_spends_its_share_on_the_paced_means(
    tiny_world: EmailWorld, tiny_book: BatchBook
) -> None:
    method = TunedBudgetMethod(QUICK, MethodContext(tiny_world.feature_dim, tiny_world))
    method.learn(tiny_book.warm_start(0, 80), generator(0, NAME, -1, "train"))
    truth = tiny_book.truth(0)
    # the tiny world's model over-estimates costs; a looser budget keeps the guarded LP feasible
    constraints = dataclasses.replace(truth.constraints, budget=truth.constraints.budget * 4.0)
    plan = method.plan(truth.batch, constraints, np.random.default_rng(1))
    assert not plan.elastic
    dist, positions = method.distribution, method._positions
    assert dist is not None and positions is not None and plan.estimates is not None
    rho = method.inner.pacing_factor()
    budget = float(constraints.budget[0])
    n = np.unique(truth.batch.pair_user).size
    pair_arm = dist.user_arms(positions)[truth.batch.pair_user]
    for a, (_, s) in enumerate(dist.points):
        on = pair_arm == a
        share = s * budget * np.unique(truth.batch.pair_user[on]).size / n + 1e-7
        assert rho * plan.estimates.unsub_decision[on] @ plan.x[on] <= share
        assert rho * plan.cost[on] @ plan.x[on] <= share  # plan.cost: the calibrated means
