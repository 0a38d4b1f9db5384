"""Algorithms 1 and 2 of the two-stage paper on hand-checked cases, and the budget B."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ModelInputError
from models.policies.registry import make_policy
from models.policies.two_stage import GalmHead, TwoStageGalmUcb, dyna_topic_rec


def test_dyna_topic_rec_by_hand() -> None:
    # topics by decreasing α_1: 2, 0, 3, 1, 4 with sizes 5, 1, 2, 7, 3 (indexed by topic)
    sizes = [1, 7, 5, 2, 3]
    ranked = [2, 0, 3, 1, 4]
    # m = 1, p = 6: S¹ = {2} (5 ≤ 6) + 0 → 6 ≤ 6 + 3 → 8 > 6: stop
    assert dyna_topic_rec(1, ranked, sizes, 6) == [[2, 0, 3]]
    # m = 2, p = 4: S¹ = {2} (5 > 4), S² = {0} (1 ≤ 4) + 3 → 3 + 1 → 10: stop
    assert dyna_topic_rec(2, ranked, sizes, 4) == [[2], [0, 3, 1]]
    # m = 2, p = 100: both keep taking in turn until the list is empty
    assert dyna_topic_rec(2, ranked, sizes, 100) == [[2, 3, 4], [0, 1]]
    with pytest.raises(ModelInputError, match="m <= q"):
        dyna_topic_rec(6, ranked, sizes, 1)


def _hand_policy(name: str, **params: object) -> TwoStageGalmUcb:
    """6 items in topics [0, 0, 0, 1, 1, 2], d_1 = 1, d_2 = 1 (γ = 1: the item term alone)."""
    policy = make_policy(name, 6, 2, topics=[0, 0, 0, 1, 1, 2], gamma=1.0, beta=0.0, **params)
    assert isinstance(policy, TwoStageGalmUcb)
    # θ_x = (1, 0): ρ(x), so topics rank by their mean x and items by x
    policy.topic_head.theta_x = np.array([1.0, 0.0])
    policy.item_head.theta_x = np.array([1.0, 0.0])
    return policy


# x: topic 0 = (0, 1, 3) mean 4/3; topic 1 = (2, 2.5) mean 2.25; topic 2 = (5)
X = np.array([[0.0, 0.3], [1.0, 0.3], [3.0, 0.3], [2.0, 0.3], [2.5, 0.3], [5.0, 0.3]])


def test_algorithm_1_scores_only_the_top_topic() -> None:
    policy = _hand_policy("two_stage_galm_ucb")
    choice = policy.choose(X, np.random.default_rng(0))
    assert choice.action == 5  # topic 2 ranks first and holds item 5 alone
    assert np.isfinite(choice.scores.value).tolist() == [False] * 5 + [True]
    assert policy.last_scored == 3 + 1
    assert choice.propensity == 1.0


def test_algorithm_2_groups_the_top_topics() -> None:
    # p = 1: S¹ = {2} (1 ≤ 1) + topic 1 → 3 > 1: items 3, 4, 5 scored, 5 is best
    policy = _hand_policy("two_stage_galm_ucb_dynamic", min_topic_size=1)
    X2 = X.copy()
    X2[5, 0] = 2.4  # topic 2 still ranks first (2.4 > 2.25 > 4/3), but item 4 (2.5) beats it
    choice = policy.choose(X2, np.random.default_rng(0))
    assert choice.action == 4
    assert np.flatnonzero(np.isfinite(choice.scores.value)).tolist() == [3, 4, 5]
    # without dynamic topics the same round can only pick item 5
    assert _hand_policy("two_stage_galm_ucb").choose(X2, np.random.default_rng(0)).action == 5


def test_galm_head_matches_equation_3() -> None:
    head = GalmHead(2, 2, gamma=0.3, eta=1.0, confidence="shared")
    rng = np.random.default_rng(1)
    for _ in range(5):
        head.update(rng.normal(size=4), float(rng.random() < 0.5))
    rows = rng.normal(size=(3, 4))
    mean, unc, value = head.acquisition(rows, beta=0.7)
    xt = np.c_[rows[:, :2], np.ones(3)]
    A_x = np.linalg.inv(head.Ainv_x)
    logit = 0.3 * xt @ head.theta_x + 0.7 * rows[:, 2:] @ head.theta_z
    expect_unc = 0.3 * np.sqrt(np.einsum("ni,ij,nj->n", xt, np.linalg.inv(A_x), xt)) + 0.7 * np.sqrt(
        np.einsum("ni,ij,nj->n", rows[:, 2:], head.Ainv_z, rows[:, 2:])
    )
    np.testing.assert_allclose(mean, 1 / (1 + np.exp(-logit)))
    np.testing.assert_allclose(unc, expect_unc)
    np.testing.assert_allclose(value, mean + 0.7 * unc)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("galm_ucb", {}),
        ("n_greedy", {}),
        ("two_stage_galm_ucb", {"topics": "zipf"}),
        ("two_stage_galm_ucb_dynamic", {"topics": "zipf", "min_topic_size": 40}),
        ("gblm_ucb", {}),
        ("glm_ucb", {}),
        ("n_glm_ucb", {"retrain_every": 10, "steps": 5}),
        ("n_dropout_ucb", {"retrain_every": 10, "steps": 5}),
        ("n_greedy_net", {"retrain_every": 10, "steps": 5}),
        ("two_stage_gblm_ucb_dynamic", {"topics": "zipf", "min_topic_size": 40}),
        ("two_stage_n_greedy_dynamic", {"topics": "zipf", "min_topic_size": 40}),
        ("two_stage_n_dropout_ucb_dynamic", {"topics": "zipf", "min_topic_size": 40, "retrain_every": 10, "steps": 5}),
        ("two_stage_n_greedy_net_dynamic", {"topics": "zipf", "min_topic_size": 40, "retrain_every": 10, "steps": 5}),
        ("two_stage_random", {"topics": "zipf", "min_topic_size": 40}),
    ],
)
def test_the_budget_bounds_the_scores_per_round(name: str, extra: dict[str, object]) -> None:
    n, q, budget = 600, 12, 40
    labels = np.repeat(np.arange(q), np.maximum(1, (n / np.arange(1, q + 1) / 3.1).astype(int)))[:n]
    labels = np.concatenate([labels, np.zeros(n - labels.size, dtype=int)])
    params = {**extra, "budget": budget, "propensity_draws": 2}
    if "topics" in params:
        params["topics"] = labels.tolist()
    policy = make_policy(name, n, 4, seed=0, **params)
    rng = np.random.default_rng(0)
    gen = np.random.default_rng(1)
    for _ in range(30):
        features = gen.normal(size=(n, 4))
        choice = policy.choose(features, rng)
        assert policy.last_scored <= budget  # type: ignore[attr-defined]
        assert int(np.isfinite(choice.scores.value).sum()) <= budget
        assert 0.0 < choice.propensity <= 1.0
        policy.update(choice.action, features, float(gen.random() < 0.3))


def test_topics_and_budget_are_checked() -> None:
    with pytest.raises(ModelInputError, match="one label per action"):
        make_policy("two_stage_galm_ucb", 4, 2, topics=[0, 1])
    with pytest.raises(ModelInputError, match="budget must exceed"):
        make_policy("two_stage_galm_ucb", 4, 2, topics=[0, 1, 2, 3], budget=4)
    with pytest.raises(ModelInputError, match="beta"):
        make_policy("galm_ucb", 4, 2, beta=-1.0)
    with pytest.raises(ModelInputError, match="min_topic_size"):
        make_policy("two_stage_galm_ucb_dynamic", 4, 2, min_topic_size=-1)
    with pytest.raises(ModelInputError, match="confidence"):
        make_policy("galm_ucb", 4, 2, confidence="other")
    with pytest.raises(ModelInputError, match="user_dim >= 1"):
        make_policy("n_dropout_ucb", 4, 2, user_dim=0)
    with pytest.raises(ModelInputError, match="dropout"):
        make_policy("n_dropout_ucb", 4, 2, dropout=1.0)


def test_two_stage_random_keeps_a_random_topic_group() -> None:
    """2-Random: the scored items are exactly one DynaTopicRec group of some topic order (p = 1)."""
    topics = [0, 0, 0, 1, 1, 2]
    policy = make_policy("two_stage_random", 6, 2, topics=topics, min_topic_size=1, propensity_draws=5)
    groups = set()
    for s in range(200):
        choice = policy.choose(X, np.random.default_rng(s))
        scored = frozenset(np.flatnonzero(np.isfinite(choice.scores.value)).tolist())
        assert choice.action in scored
        groups.add(scored)
    # p = 1: topic 2 (1 item) takes the next topic; topics 0 and 1 (3 and 2 items) stand alone
    assert groups == {frozenset({0, 1, 2}), frozenset({3, 4}), frozenset({5, 0, 1, 2}), frozenset({5, 3, 4})}
