"""The Open Bandit Dataset as a replay log: the same candidate pairs, propensities and clicks as
``evaluation.datasets.obd_logged_pairs``, and ``bts`` the same probabilities as ``obd_target``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evaluation.datasets.bts import bts_action_dist, load_bts_prior
from evaluation.datasets.obd import LEN_LIST, obd_logged_pairs, obd_target
from streams.replay.errors import ReplayInputError
from streams.replay.obd import load_obd_log, obd_replay_log
from streams.replay.targets import TargetSettings, make_target
from tests.unit.evaluation.datasets import obd_root


@pytest.fixture(scope="module")
def men() -> tuple:
    log, clicks = load_obd_log(obd_root(), "random", "men", rows=2_500, seed=0)
    return log, clicks, obd_replay_log(log, clicks, rows_per_batch=1_000)


def test_the_replay_log_is_the_dataset_s_logged_pairs(men: tuple) -> None:
    log, clicks, replay = men
    expected, got = obd_logged_pairs(log), replay.logged_pairs()
    for name in ("round_index", "sent", "propensity"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    np.testing.assert_array_equal(got.outcomes["reward"], expected.outcomes["click"])
    np.testing.assert_array_equal(replay.predicted()["reward"], clicks.ravel())
    assert not replay.predicted()["unsubscription"].any()
    assert [b.batch_id for b in replay.batches] == [f"obd-random-men-{b:04d}" for b in range(3)]
    assert [b.expected_users for b in replay.batches] == [1_000, 1_000, 500]
    assert replay.decision_ids[1_000] == "obd-random-men-0001/row-001000"
    # features: the position one-hot, then the user's affinity with the item
    position = replay.features[:, :LEN_LIST].argmax(axis=1)
    np.testing.assert_array_equal(position, log.position[replay.round_index])
    np.testing.assert_allclose(replay.features[:, LEN_LIST], log.affinity.ravel().astype(np.float32))


def test_bts_is_the_dataset_s_bernoulli_thompson_sampling_at_each_row_s_position(men: tuple) -> None:
    log, _, replay = men
    settings = TargetSettings(dataset_root=obd_root(), campaign="men", n_sim=20_000, seed=4)
    dist = bts_action_dist(load_bts_prior(obd_root(), "men"), LEN_LIST, n_sim=20_000, seed=4)
    np.testing.assert_array_equal(make_target("bts", settings).probabilities(replay), obd_target(log, dist))
    uniform = make_target("uniform").probabilities(replay)
    np.testing.assert_allclose(uniform, 1.0 / log.n_actions)  # the random log's own policy


def test_bts_needs_the_dataset_s_folder_and_its_layout(men: tuple) -> None:
    _, _, replay = men
    with pytest.raises(ReplayInputError, match="needs the Open Bandit Dataset's folder"):
        make_target("bts").probabilities(replay)
    settings = TargetSettings(dataset_root=obd_root(), campaign="men", n_sim=100)
    for changed, match in (
        (dataclasses.replace(replay, features=None), "not an Open Bandit Dataset log"),
        (dataclasses.replace(replay, features=replay.features * 2), "position one-hot"),
        (dataclasses.replace(replay, item_ids=("x1",) * replay.n_pairs), "not the dataset's"),
        (dataclasses.replace(replay, item_ids=("i999",) * replay.n_pairs), "outside the campaign's"),
    ):
        with pytest.raises(ReplayInputError, match=match):
            make_target("bts", settings).probabilities(changed)


def test_bad_dataset_options_are_typed_errors() -> None:
    with pytest.raises(ReplayInputError, match="behavior must be one of"):
        load_obd_log(obd_root(), "greedy", "all")
    with pytest.raises(ReplayInputError, match="rows must be >= 1"):
        load_obd_log(obd_root(), "random", "all", rows=0)
