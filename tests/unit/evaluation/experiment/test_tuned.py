"""``banditlp_tuned``: users on arms by the hash, per-arm counts by hand, the loop through the runner, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.email_world import EmailWorld
from evaluation.errors import EvaluationInputError
from evaluation.experiment import results_document, run_experiment
from evaluation.experiment.batches import BatchBook
from evaluation.experiment.methods import METHODS, MethodContext, MethodSpec
from evaluation.experiment.methods.tuned import (
    ArmDistribution,
    ArmTotals,
    TunedConfig,
    TunedMethod,
    arm_metrics,
    match_rows,
    observations,
)
from evaluation.experiment.runner import run_seed
from evaluation.experiment.seeding import generator
from models.tuner.assignment import initial_layout, user_positions
from models.tuner.thompson import arm_id
from tests.unit.evaluation.experiment.conftest import tiny_config

#: A tuner that fits after one batch of the tiny world (40 users) with few draws.
QUICK = TunedConfig(warmup_batches=1, chunk_users=5, n_samples=64, n_candidates=16)


def test_users_are_on_the_arm_whose_interval_holds_their_hash_at_the_arms_shares() -> None:
    taus = np.array([0.0, 0.7, 2.0])
    probs = np.array([0.2, 0.5, 0.3])
    dist = ArmDistribution.of(taus, probs, None)
    n = 20_000
    positions = user_positions(list(range(n)), "banditlp_tuned", salt="7")
    arms = dist.user_arms(positions)
    # the truth: the layout of the arm ids' masses, located by models.tuner's own assignment
    ids = [arm_id(np.array([t])) for t in taus]
    expected = initial_layout(dict(zip(ids, probs))).assign(positions)
    assert [dist.arm_ids[a] for a in arms] == expected
    shares = np.bincount(arms, minlength=3) / n
    np.testing.assert_array_less(np.abs(shares - probs), 3 * np.sqrt(probs * (1 - probs) / n))


def test_the_method_serves_the_warm_up_arms_by_the_salted_hash(tiny_world: EmailWorld, tiny_book: BatchBook) -> None:
    method = TunedMethod(QUICK, MethodContext(tiny_world.feature_dim, tiny_world))
    method.learn(tiny_book.warm_start(0, 80), generator(0, "banditlp_tuned", -1, "train"))
    n = tiny_world.config.n_users
    positions = user_positions(list(range(n)), "banditlp_tuned", salt=str(method.tuner_seed))
    taus = QUICK.warmup_taus
    layout = initial_layout({arm_id(np.array([t])): 1 / len(taus) for t in taus})
    tau_of = {arm_id(np.array([t])): t for t in taus}
    np.testing.assert_array_equal(method.user_taus(), [tau_of[a] for a in layout.assign(positions)])


def test_per_arm_counts_and_observations_match_a_hand_computation() -> None:
    # 4 users: 0 and 3 on arm 0, 1 and 2 on arm 1; budget 2, so each arm's share is 1.
    user_arm = np.array([0, 1, 1, 0])
    sent_user = np.array([0, 1, 3])
    sent_item = np.array([1, 2, 0])
    value = np.array([3.0, 0.0, 1.0])
    unsubscribed = np.array([0.0, 1.0, 1.0])
    counts = arm_metrics(user_arm, 2, 2.0, sent_user, sent_item, value, unsubscribed, np.array([0, 2]))
    assert counts[0] == ArmTotals(
        users=2, sends=2, value=4, unsubscriptions=1, budget=1, top_k_sends=1, compared_sends=2
    )
    assert counts[1] == ArmTotals(
        users=2, sends=1, value=0, unsubscriptions=1, budget=1, top_k_sends=1, compared_sends=1
    )
    first = arm_metrics(user_arm, 2, 2.0, sent_user, sent_item, value, unsubscribed, None)
    assert first[0].compared_sends == 0 and first[0].top_k_sends == 0
    history = [(0.25, counts[0]), (1.5, counts[1])]
    X, Y = observations(history, chunk_users=1, tau_bin=0.5)
    np.testing.assert_array_equal(X, [[0.25], [1.5]])
    # reward per user, unsubscriptions over the budget share, sends to the previous top-K over sends
    np.testing.assert_allclose(Y, [[4 / 2, 1 / 1, 1 / 2], [0 / 2, 1 / 1, 1 / 1]])
    # chunks of >= 3 users per bin, oldest first: the first two arm-batches of bin [0, 0.5) pool into
    # one row at their users' mean tau, the third waits; bin [1.5, 2)'s only chunk has no previous
    # batch to compare with (a first batch), so it is no row
    history = [(0.1, counts[0]), (1.6, first[1]), (0.3, counts[0]), (1.7, first[1]), (0.2, counts[0])]
    X, Y = observations(history, chunk_users=3, tau_bin=0.5)
    np.testing.assert_allclose(X, [[0.2]])
    np.testing.assert_allclose(Y, [[8 / 4, 2 / 2, 2 / 4]])
    X, Y = observations([(1.5, first[1]), (1.5, counts[1])], chunk_users=4, tau_bin=0.5)
    np.testing.assert_allclose(Y, [[0 / 4, 2 / 2, 1 / 1]])
    # summed with the users' shares, the arms' usages are the batch's realised usage
    usage = sum(c.unsubscriptions / c.budget * c.users / 4 for c in counts)
    assert usage == pytest.approx(unsubscribed.sum() / 2.0)


def test_feedback_rows_are_matched_to_their_pairs_by_features(tiny_book: BatchBook) -> None:
    features = np.asarray(tiny_book.truth(0).batch.features)
    picked = np.random.default_rng(0).permutation(features.shape[0])[:25]
    np.testing.assert_array_equal(match_rows(features, features[picked]), picked)
    with pytest.raises(EvaluationInputError, match="not pairs of the last planned batch"):
        match_rows(features, features[:2] + 1.0)


def test_zero_tau_users_are_scored_at_their_means_and_plan_leaves_the_state(
    tiny_world: EmailWorld, tiny_book: BatchBook
) -> None:
    method = TunedMethod(QUICK, MethodContext(tiny_world.feature_dim, tiny_world))
    method.learn(tiny_book.warm_start(0, 80), generator(0, "banditlp_tuned", -1, "train"))
    truth = tiny_book.truth(0)
    before = method.distribution
    first = method.plan(truth.batch, truth.constraints, np.random.default_rng(1))
    other = method.plan(truth.batch, truth.constraints, np.random.default_rng(2))
    again = method.plan(truth.batch, truth.constraints, np.random.default_rng(1))
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.reward, other.reward)
    assert method.distribution is before and method.step == 0
    cold = method.user_taus()[truth.batch.pair_user] == 0.0
    assert cold.any() and (~cold).any()
    est = first.estimates
    assert est is not None
    # banditlp's budget holds on the calibrated means; the LP's draws are the means at tau = 0 only
    np.testing.assert_array_equal(first.cost, est.unsub_calibrated)
    np.testing.assert_array_equal(est.unsub_decision[cold], est.unsub_calibrated[cold])
    assert np.all(est.unsub_decision[~cold] != est.unsub_calibrated[~cold])
    assert first.policy["tau_mean"] == pytest.approx(np.mean(QUICK.warmup_taus))


def _quick_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, "banditlp_tuned", MethodSpec("banditlp_tuned", "quick", QUICK, TunedMethod))


def test_a_run_through_the_runner_tunes_and_reports_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    _quick_spec(monkeypatch)
    run = run_experiment(tiny_config(methods=("banditlp_tuned",), seeds=1, batches=3))
    doc = results_document(run)["methods"]["banditlp_tuned"]
    policy = doc["policy"]
    assert {"tau_mean", "arm0_tau", "arm0_p", "arm4_tau", "arm4_p"} <= set(policy)
    assert len(doc["reward"][0]) == 3 and all(v is not None for v in doc["unsub_usage"][0])
    # batches 1 and 2: the warm-up arms; after batch 2's feedback (the first with a previous
    # batch to compare with) the tuner fits and batch 3 is served its distribution
    warm = [policy[f"arm{k}_tau"][0][0] for k in range(5)]
    assert warm == list(QUICK.warmup_taus)
    assert [policy[f"arm{k}_tau"][0][1] for k in range(5)] == warm
    tuned = [(policy[f"arm{k}_tau"][0][2], policy[f"arm{k}_p"][0][2]) for k in range(5)]
    tuned = [(t, p) for t, p in tuned if t is not None]
    assert tuned and [t for t, _ in tuned] != warm
    assert all(0.0 <= t <= 2.0 and p is not None and p > 0 for t, p in tuned)
    assert sum(p for _, p in tuned) == pytest.approx(1.0)
    assert policy["tau_mean"][0][2] == pytest.approx(sum(t * p for t, p in tuned))


def test_the_same_seed_gives_the_same_run_and_another_seed_another(
    monkeypatch: pytest.MonkeyPatch, tiny_book: BatchBook
) -> None:
    _quick_spec(monkeypatch)
    config = tiny_config(methods=("banditlp_tuned",), seeds=1, batches=3)
    a = run_seed(tiny_book, config, "banditlp_tuned", 0)
    b = run_seed(tiny_book, config, "banditlp_tuned", 0)
    c = run_seed(tiny_book, config, "banditlp_tuned", 1)
    assert a.series.keys() == b.series.keys()
    for key in a.series:
        np.testing.assert_array_equal(a.series[key], b.series[key], err_msg=key)
    assert not np.array_equal(a.series["reward"], c.series["reward"])


def test_the_config_rejects_what_cannot_tune() -> None:
    with pytest.raises(EvaluationInputError, match="tau_bounds"):
        TunedConfig(tau_bounds=(1.0, 1.0))
    with pytest.raises(EvaluationInputError, match="warmup_taus"):
        TunedConfig(warmup_taus=(3.0,))
    with pytest.raises(EvaluationInputError, match="max_arms"):
        TunedConfig(max_arms=2)
