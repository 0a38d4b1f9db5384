"""The two-stage paper's semi-synthetic world: protocol, seeding, imbalanced topics, flip rate."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.bandits.environment import Environment
from evaluation.bandits.two_stage_world import TwoStageWorld, zipf_topic_sizes
from evaluation.errors import EvaluationInputError


@pytest.fixture(scope="module")
def world() -> TwoStageWorld:
    return TwoStageWorld()


def test_speaks_the_environment_protocol(world: TwoStageWorld) -> None:
    assert isinstance(world, Environment)
    world.reset(0)
    rnd = world.next_round()
    assert world.n_actions == 10_000
    assert rnd.features.shape == (10_000, world.feature_dim)
    assert rnd.expected is not None and rnd.expected.shape == (10_000,)
    # every row carries the same user in its second half, its own item in the first
    np.testing.assert_array_equal(
        rnd.features[:, world.dim :], np.broadcast_to(rnd.features[0, world.dim :], (10_000, world.dim))
    )
    np.testing.assert_array_equal(rnd.features[:, : world.dim], world.items)
    assert world.reward(0) in (0.0, 1.0)


def test_seeding_repeats_episodes_and_world_seed_fixes_the_catalogue(world: TwoStageWorld) -> None:
    def episode(w: TwoStageWorld, seed: int) -> list[float]:
        w.reset(seed)
        out = []
        for _ in range(20):
            r = w.next_round()
            out += [float(r.features[0, -1]), w.reward(int(np.argmax(r.expected)))]
        return out

    assert episode(world, 3) == episode(world, 3)
    assert episode(world, 3) != episode(world, 4)
    np.testing.assert_array_equal(TwoStageWorld(world_seed=0).topics, world.topics)
    assert not np.array_equal(TwoStageWorld(world_seed=1).items, world.items)


def test_topics_are_many_and_imbalanced(world: TwoStageWorld) -> None:
    sizes = world.topic_sizes
    assert sizes.shape == (50,) and sizes.sum() == 10_000 and sizes.min() >= 1
    assert sizes.max() / sizes.min() > 20  # Zipf(1) over 50 topics: about 2,200 against 45
    np.testing.assert_array_equal(np.sort(sizes)[::-1], zipf_topic_sizes(10_000, 50, 1.0))


def test_threshold_gives_the_positive_rate_and_expected_rewards(world: TwoStageWorld) -> None:
    assert world.clicks.mean() == pytest.approx(0.05, abs=1e-3)
    mu = world.expected_rewards(0)
    np.testing.assert_array_equal(np.unique(mu), [0.1, 0.9])


def test_flip_rate_is_one_tenth_within_its_standard_error(world: TwoStageWorld) -> None:
    world.reset(7)
    n, flips = 20_000, 0
    for _ in range(n):
        world._user = int(world._gen.integers(world.n_users))  # a round's user without building its rows
        action = int(world._gen.integers(world.n_items))
        flips += int(world.reward(action) != float(world.clicks[world._user, action]))
    se = np.sqrt(0.1 * 0.9 / n)
    assert abs(flips / n - 0.1) < 4 * se


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_topics": 0}, "n_topics"),
        ({"n_items": 10, "n_topics": 20}, "n_topics"),
        ({"flip": 0.7}, "flip"),
        ({"positive_rate": 0.0}, "positive_rate"),
        ({"n_users": 0}, "n_users"),
    ],
)
def test_bad_configurations_are_typed_errors(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(EvaluationInputError, match=match):
        TwoStageWorld(**kwargs)  # type: ignore[arg-type]
