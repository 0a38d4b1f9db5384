"""The meTS experiment: its world follows the model and the protocol, and a tiny run writes every file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.bandits.environment import Environment
from evaluation.bandits.mets_experiment import MixedEffectWorld, MixedEffectWorldConfig, main, policy_specs
from evaluation.errors import EvaluationInputError
from models.policies.registry import make_policy


def test_world_speaks_the_environment_protocol_and_is_seeded() -> None:
    world = MixedEffectWorld(MixedEffectWorldConfig(n_actions=7, n_effects=2, dim=3))
    assert isinstance(world, Environment)
    world.reset(4)
    first = [world.next_round() for _ in range(3)]
    theta = world.theta.copy()
    world.reset(4)
    again = [world.next_round() for _ in range(3)]
    np.testing.assert_array_equal(world.theta, theta)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.features, b.features)
        assert a.features.shape == (7, 3) and np.all(a.features == a.features[0])  # one shared context
        assert a.expected is not None
        np.testing.assert_allclose(a.expected, theta @ a.features[0])


def test_instances_follow_the_mixed_effect_model() -> None:
    """Over many seeds θ_i − Σ_ℓ b_iℓ ψ_ℓ has std σ_0, the effects std σ_q, and b_i lies on the simplex."""
    config = MixedEffectWorldConfig()
    world = MixedEffectWorld(config)
    residuals, effects = [], []
    for seed in range(200):
        world.reset(seed)
        np.testing.assert_allclose(world.mixing.sum(axis=1), 1.0)
        residuals.append(world.theta - world.mixing @ world.effects)
        effects.append(world.effects)
    assert np.std(residuals) == pytest.approx(config.action_std, rel=0.03)
    assert np.std(effects) == pytest.approx(config.effect_std, rel=0.1)


def test_logistic_rewards_are_bernoulli_of_the_expected() -> None:
    world = MixedEffectWorld(MixedEffectWorldConfig(likelihood="logistic", n_actions=3))
    world.reset(1)
    rnd = world.next_round()
    assert rnd.expected is not None and np.all((rnd.expected > 0) & (rnd.expected < 1))
    draws = []
    for _ in range(4000):
        rnd = world.next_round()
        draws.append((world.reward(0), rnd.expected[0] if rnd.expected is not None else np.nan))
    y, p = np.array(draws).T
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert abs(y.mean() - p.mean()) < 4 * np.sqrt(0.25 / len(y))


@pytest.mark.parametrize("likelihood", ["linear", "logistic"])
def test_every_spec_builds_a_policy(likelihood: str) -> None:
    world = MixedEffectWorld(MixedEffectWorldConfig(likelihood=likelihood, n_actions=6))  # type: ignore[arg-type]
    specs = policy_specs(world)
    assert {"lints", "hierts"} <= set(specs)
    assert ("mets" if likelihood == "linear" else "mets_glm") in specs
    for name, params in specs.values():
        make_policy(name, 6, 2, **params)


def test_bad_config_is_refused() -> None:
    with pytest.raises(EvaluationInputError, match="likelihood"):
        MixedEffectWorldConfig(likelihood="poisson")  # type: ignore[arg-type]
    with pytest.raises(EvaluationInputError, match="> 0"):
        MixedEffectWorldConfig(action_std=0.0)


def test_tiny_run_writes_tables_plots_and_summary(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--rounds", "30", "--seeds", "2", "--workers", "1"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["settings"]) == {"linear", "logistic"}
    for setting in ("linear", "logistic"):
        for name in ("summary.json", "regret.png", "regret.csv", "table.md"):
            assert (tmp_path / setting / name).stat().st_size > 0
        policies = summary["settings"][setting]["policies"]
        for record in policies.values():
            assert len(record["cumulative_regret"]) == 2 and len(record["regret_curve"]) == 30
            assert min(record["cumulative_regret"]) >= 0.0
        assert isinstance(summary["done_when"][setting]["beats_lints"], bool)
