"""The environment protocol, the worlds and the runner: reproducible, regret against the world's truth."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.bandits.environment import Environment, Round
from evaluation.bandits.report import regret_table, write_run
from evaluation.bandits.runner import growth_exponent, parse_env_args, run_policy, summarise
from evaluation.bandits.worlds import LinearGaussianWorld, NonlinearWorld, linear_gaussian, nonlinear
from evaluation.errors import EvaluationInputError


class _TwoArms:
    """An environment written elsewhere: it only speaks the protocol (no expected rewards)."""

    n_actions = 2

    def reset(self, seed: int) -> None:
        self.gen = np.random.default_rng(seed)

    def next_round(self) -> Round:
        return Round(features=np.eye(2))

    def reward(self, action: int) -> float:
        return float(action) + 0.1 * float(self.gen.standard_normal())


def test_worlds_speak_the_protocol() -> None:
    for world in (LinearGaussianWorld(), NonlinearWorld(), NonlinearWorld(link="sin"), _TwoArms()):
        assert isinstance(world, Environment)


def test_an_outside_environment_plugs_in_unchanged() -> None:
    result = run_policy("linucb", _TwoArms, 50, seed=0)
    assert np.all(np.isnan(result.regret))
    assert np.mean(result.actions[-20:]) > 0.8


@pytest.mark.parametrize("factory", [linear_gaussian, nonlinear])
def test_runs_are_reproducible_and_regret_is_the_world_truth(factory: object) -> None:
    a = run_policy("lints", factory, 60, seed=3)  # type: ignore[arg-type]
    b = run_policy("lints", factory, 60, seed=3)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert np.all(a.regret >= 0) and np.all(np.isfinite(a.regret))
    world = factory()  # type: ignore[operator]
    world.reset(3)
    first = world.next_round()
    assert a.regret[0] == pytest.approx(first.expected.max() - first.expected[a.actions[0]])


def test_seeds_change_the_episode_not_the_world() -> None:
    w = NonlinearWorld(world_seed=1)
    w.reset(0)
    r0 = w.next_round().features
    w.reset(1)
    assert not np.array_equal(r0, w.next_round().features)
    np.testing.assert_array_equal(NonlinearWorld(world_seed=1)._theta, w._theta)


def test_summary_curve_is_the_mean_over_seeds(tmp_path: object) -> None:
    results = [run_policy("linucb", linear_gaussian, 40, seed=s) for s in range(3)]
    s = summarise(results)
    np.testing.assert_allclose(s.regret_curve, np.mean([r.cumulative_regret for r in results], axis=0))
    assert s.cumulative_regret == [float(r.cumulative_regret[-1]) for r in results]
    assert "linucb" in regret_table({"linucb": s})


def test_growth_exponent_recovers_a_power_law() -> None:
    t = np.arange(1, 2001, dtype=np.float64)
    assert growth_exponent(5 * t**0.5) == pytest.approx(0.5)
    assert growth_exponent(0.1 * t) == pytest.approx(1.0)
    assert np.isnan(growth_exponent(np.zeros(10)))


def test_write_run_files(tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path))
    s = summarise([run_policy("linucb", linear_gaussian, 10, seed=0)])
    paths = write_run(out, 10, {"linucb": s})
    assert all(p.exists() for p in paths.values())


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: LinearGaussianWorld(n_actions=1), "n_actions"),
        (lambda: LinearGaussianWorld(noise=-1.0), "noise"),
        (lambda: NonlinearWorld(link="cube"), "link"),
        (lambda: NonlinearWorld(scale=0.0), "scale"),
        (lambda: run_policy("linucb", linear_gaussian, 0, seed=0), "rounds"),
        (lambda: Round(features=np.zeros(3)), "features"),
        (lambda: Round(features=np.zeros((3, 2)), expected=np.zeros(2)), "expected"),
        (lambda: parse_env_args(["a"]), "key=value"),
    ],
)
def test_bad_inputs_are_typed_errors(build: object, match: str) -> None:
    with pytest.raises(EvaluationInputError, match=match):
        build()  # type: ignore[operator]


def test_parse_env_args_types() -> None:
    assert parse_env_args(["a=1", "b=0.5", "c=true", "d=sin"]) == {"a": 1, "b": 0.5, "c": True, "d": "sin"}
