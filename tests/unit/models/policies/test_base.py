"""The contract's own behaviour on a toy policy: validation, floor propensities, snapshots."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from banditlp.arrays import FloatArray
from models.errors import ModelInputError, ShapeError
from models.policies.base import Policy, PolicyParams, Scores


class _Fixed(Policy):
    """Scores each action by its first feature; deterministic."""

    name = "_fixed_test_policy"
    snapshot_kind = "policy:_fixed_test_policy"

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        v = np.asarray(features[:, 0], dtype=np.float64)
        return Scores(mean=v, uncertainty=np.zeros_like(v), value=v)

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        self.check_feedback(action, features, reward)
        self.n_observations += 1

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        ties = np.flatnonzero(scores.value == scores.value.max())
        return 1.0 / ties.size if action in ties else 0.0

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        pass


def test_floor_mixes_uniform_into_the_propensity() -> None:
    policy = _Fixed(4, 2, floor=0.2)
    X = np.array([[0.0, 0], [1, 0], [0.5, 0], [0.2, 0]])
    choices = [policy.choose(X, np.random.default_rng(s)) for s in range(2000)]
    for c in choices:
        assert c.propensity == pytest.approx(0.8 + 0.05 if c.action == 1 else 0.05)
    assert np.mean([c.action == 1 for c in choices]) == pytest.approx(0.85, abs=0.03)


def test_ties_are_broken_uniformly_and_share_the_propensity() -> None:
    policy = _Fixed(3, 1)
    c = policy.choose(np.ones((3, 1)), np.random.default_rng(0))
    assert c.propensity == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_actions": 0, "dim": 1}, ModelInputError, "n_actions"),
        ({"n_actions": 2, "dim": 0}, ModelInputError, "dim"),
        ({"n_actions": 2, "dim": 1, "seed": -1}, ModelInputError, "seed"),
        ({"n_actions": 2, "dim": 1, "floor": 1.0}, ModelInputError, "floor"),
        ({"n_actions": 2, "dim": 1, "propensity_draws": 0}, ModelInputError, "propensity_draws"),
        ({"n_actions": 2, "dim": 1, "nonsense": 3}, ModelInputError, "nonsense"),
    ],
)
def test_bad_construction(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        _Fixed(**kwargs)  # type: ignore[arg-type]


def test_bad_rounds_and_feedback() -> None:
    policy = _Fixed(2, 3)
    with pytest.raises(ShapeError, match=r"\(2, 3\)"):
        policy.choose(np.zeros((3, 3)), np.random.default_rng(0))
    with pytest.raises(ModelInputError, match="NaN"):
        policy.choose(np.full((2, 3), np.nan), np.random.default_rng(0))
    with pytest.raises(ModelInputError, match="action"):
        policy.update(2, np.zeros((2, 3)), 1.0)
    with pytest.raises(ModelInputError, match="reward"):
        policy.update(0, np.zeros((2, 3)), float("inf"))
    with pytest.raises(ShapeError, match="n_actions"):
        Scores(mean=np.zeros(2), uncertainty=np.zeros(3), value=np.zeros(2))


def test_params_are_the_configuration() -> None:
    policy = _Fixed(2, 3, seed=5, floor=0.1)
    assert policy.snapshot_config() == {
        "n_actions": 2,
        "dim": 3,
        "seed": 5,
        "params": {"floor": 0.1, "propensity_draws": PolicyParams().propensity_draws},
    }
