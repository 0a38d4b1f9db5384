"""The policy scorer's rounds against the policy called directly, the catalogue's stability, and the
learner's rebuilt round against the round the scorer scored."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.policies.registry import make_policy
from streams.learn.policy_update import policy_feedback
from streams.learn.update import DecisionContext
from streams.records import FeedbackRecord
from streams.score.policy_round import Catalogue, layers, policy_scores, rounds

torch.set_num_threads(1)
N, D = 16, 5


def hand_rounds(features: np.ndarray, arms: np.ndarray, n_actions: int) -> list[tuple[list[int], np.ndarray]]:
    """The layers built the slow way: candidate by candidate, a new round when its arm is taken."""
    out: list[tuple[list[int], np.ndarray]] = []
    for j, arm in enumerate(arms.tolist()):
        for rows, matrix in out:  # noqa: B007 (the round found is used after the loop)
            if all(arms[r] != arm for r in rows):
                break
        else:
            rows, matrix = [], np.zeros((n_actions, features.shape[1]))
            out.append((rows, matrix))
        rows.append(j)
        matrix[arm] = features[j]
    return out


def test_an_items_arm_is_blake2b_of_its_id_and_the_same_in_any_catalogue_object() -> None:
    ids = [f"item-{i}" for i in range(200)] + ["i3", "ü-ñ", "a/b c"]
    first, second = Catalogue(37), Catalogue(37)
    arms = first.arms(ids)
    np.testing.assert_array_equal(arms, second.arms(list(reversed(ids)))[::-1])
    np.testing.assert_array_equal(arms, first.arms(ids))  # cached: the same
    for item, arm in zip(ids, arms.tolist()):
        digest = hashlib.blake2b(b"arm\x1f" + item.encode(), digest_size=8).digest()
        assert arm == int.from_bytes(digest, "big") % 37
    # spread over the arms: 203 ids on 37 arms leave few empty (expected 37 * (36/37)^203 ~ 0.15)
    assert len(set(arms.tolist())) >= 33


def test_the_cache_is_bounded_and_gives_the_same_arms_after_a_reset() -> None:
    cat = Catalogue(11, max_cached=10)
    ids = [f"x{i}" for i in range(25)]
    np.testing.assert_array_equal(cat.arms(ids[:8]), Catalogue(11).arms(ids[:8]))
    np.testing.assert_array_equal(cat.arms(ids[5:]), Catalogue(11).arms(ids[5:]))
    assert len(cat._cache) <= 20


@given(st.lists(st.integers(0, 6), min_size=1, max_size=40))
def test_layers_put_every_candidate_on_its_own_arm_once_per_round(arm_list: list[int]) -> None:
    arms = np.array(arm_list, dtype=np.int64)
    layer = layers(arms)
    for c in np.unique(layer):
        in_layer = arms[layer == c]
        assert len(set(in_layer.tolist())) == in_layer.size  # no arm twice in one round
    for j in range(arms.size):  # the layer is the arm's occurrence count before j
        assert layer[j] == int(np.sum(arms[:j] == arms[j]))


def test_rounds_equal_the_rounds_built_candidate_by_candidate() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(9, D))
    arms = np.array([3, 1, 3, 0, 1, 3, 7, 2, 0])
    got = rounds(features, arms, N)
    want = hand_rounds(features, arms, N)
    assert len(got) == len(want) == 3
    for (rows, matrix), (hand_rows, hand_matrix) in zip(got, want):
        assert rows.tolist() == hand_rows
        np.testing.assert_array_equal(matrix, hand_matrix)


@pytest.mark.parametrize("name", ["linucb", "lints", "shared_lints", "mets", "two_stage_galm_ucb_dynamic"])
def test_policy_scores_equal_the_policy_called_on_the_same_rounds_and_generator(name: str) -> None:
    rng = np.random.default_rng(1)
    policy = make_policy(name, N, D, seed=3)
    for _ in range(12):  # some learned state, so the scores are not the prior's
        X = rng.normal(size=(N, D))
        policy.update(int(rng.integers(N)), X, float(rng.random() < 0.4))
    features = rng.normal(size=(7, D)).astype(np.float32)
    arms = np.array([5, 2, 5, 11, 0, 2, 9])
    got = policy_scores(policy, features, arms, np.random.default_rng(42), n_draws=2)

    direct = np.random.default_rng(42)
    want_draws, want_mean, want_std = np.zeros((2, 7)), np.zeros(7), np.zeros(7)
    layered = hand_rounds(features.astype(np.float64), arms, N)
    for k in range(2):
        for rows, matrix in layered:
            s = policy.score(matrix, direct)
            for j in rows:
                value, mean = s.value[arms[j]], s.mean[arms[j]]
                finite = [s.value[arms[r]] for r in rows if np.isfinite(s.value[arms[r]])]
                finite_mean = [s.mean[arms[r]] for r in rows if np.isfinite(s.mean[arms[r]])]
                want_draws[k, j] = value if np.isfinite(value) else min(finite, default=0.0)
                if k == 0:
                    want_mean[j] = mean if np.isfinite(mean) else min(finite_mean, default=0.0)
                    want_std[j] = s.uncertainty[arms[j]] if np.isfinite(value) else 0.0
    np.testing.assert_array_equal(got.draws, want_draws)
    np.testing.assert_array_equal(got.mean, want_mean)
    np.testing.assert_array_equal(got.std, want_std)
    assert np.all(np.isfinite(got.draws)) and np.all(got.std >= 0)


def test_the_learners_round_and_action_are_the_ones_the_scorer_scored() -> None:
    rng = np.random.default_rng(2)
    cat = Catalogue(4)  # 6 items on 4 arms: collisions, so some items sit in a second round
    items = [f"i{j}" for j in range(6)]
    features = rng.normal(size=(6, D)).astype(np.float32)
    arms = cat.arms(items)
    assert len(set(arms.tolist())) < 6
    scored = {j: (int(arms[j]), matrix) for rows, matrix in rounds(features, arms, 4) for j in rows.tolist()}
    context = DecisionContext(features, np.zeros((6, 0), np.float32), np.zeros(6), "b1", items, 0)
    for j, item in enumerate(items):
        fb = FeedbackRecord("b1/u1", "b1", "u1", item, j % 2 == 0, False, 1.0, 0)
        obs = policy_feedback(fb, context, cat)
        assert obs.action == scored[j][0] and obs.reward == float(j % 2 == 0)
        np.testing.assert_array_equal(obs.features, scored[j][1])
