"""Run summaries: hand-computed numbers, oracle and greedy runs, validation, entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.email_world import EmailWorld, EmailWorldConfig
from evaluation.errors import EvaluationInputError
from evaluation.run_summary import BatchOutcome, mean_user_entropy, summarise, summary_rows


def _outcome(**overrides: object) -> BatchOutcome:
    fields: dict[str, object] = {
        "batch_id": "b0",
        "x": np.array([1.0, 0.0, 1.0]),
        "pair_item": np.array([4, 5, 6]),
        "pair_provider": np.array([0, 1, 1]),
        "expected_reward": np.array([2.0, 5.0, 3.0]),
        "expected_unsub": np.array([0.1, 0.2, 0.3]),
        "realised_value": np.array([0.0, 0.0, 7.5]),
        "realised_unsub": np.array([1.0, 0.0, 0.0]),
        "oracle_objective": 6.0,
        "unsub_budget": 0.5,
        "provider_min": np.array([1.0, 2.0]),
        "provider_max": np.array([np.inf, 3.0]),
    }
    fields.update(overrides)
    return BatchOutcome(**fields)  # type: ignore[arg-type]


def test_summary_matches_hand_computation() -> None:
    first = _outcome(mean_entropy=0.25)
    # Second batch: fractional decisions, only provider 0 sent, item 4 twice.
    second = _outcome(
        batch_id="b1",
        x=np.array([0.5, 0.0, 0.0]),
        pair_provider=np.array([0, 0, 1]),
        realised_value=np.array([4.0, 0.0, 0.0]),
        realised_unsub=np.array([0.0, 0.0, 0.0]),
        oracle_objective=2.0,
        unsub_budget=0.025,
    )
    summary = summarise([first, second])
    assert summary.batch_ids == ("b0", "b1")
    np.testing.assert_allclose(summary.expected_reward, [5.0, 1.0])
    np.testing.assert_allclose(summary.cumulative_oracle_reward, [6.0, 8.0])
    np.testing.assert_allclose(summary.cumulative_regret, [1.0, 2.0])
    assert summary.total_regret == pytest.approx(2.0)
    assert summary.reward_fraction == pytest.approx(6.0 / 8.0)
    np.testing.assert_allclose(summary.realised_reward, [7.5, 2.0])
    np.testing.assert_allclose(summary.expected_unsub, [0.4, 0.05])
    np.testing.assert_allclose(summary.unsub_usage, [0.8, 2.0])
    assert summary.budget_violations == 1
    np.testing.assert_allclose(summary.realised_unsubs, [1.0, 0.0])
    # Exposures: b0 [1, 1] vs min [1, 2] -> worst 0.5; b1 [0.5, 0] -> worst 0.
    np.testing.assert_allclose(summary.provider_min_ratio, [0.5, 0.0])
    np.testing.assert_allclose(summary.providers_below_min, [1, 2])
    np.testing.assert_allclose(summary.provider_max_ratio, [1.0 / 3.0, 0.0])
    assert summary.provider_violations == 2
    np.testing.assert_allclose(summary.distinct_items, [2, 1])
    np.testing.assert_allclose(summary.sends, [2.0, 0.5])
    assert summary.mean_entropy[0] == 0.25 and math.isnan(summary.mean_entropy[1])
    assert not summary.expected_reward.flags.writeable


def test_oracle_run_has_no_regret_or_violations_and_greedy_overspends() -> None:
    world = EmailWorld(EmailWorldConfig(n_users=60, n_items=15, n_providers=4, candidates_per_user=5, seed=2))
    rng = np.random.default_rng(0)
    oracle_run, greedy_run = [], []
    for batch_index in range(3):
        batch = world.candidates(batch_index)
        cons = world.constraints(batch)
        oracle = world.oracle(batch, cons)
        for run, x in ((oracle_run, oracle.x), (greedy_run, world.greedy(batch).x)):
            run.append(world.batch_outcome(batch, x, rng, constraints=cons, oracle_objective=oracle.objective))
    on_oracle = summarise(oracle_run)
    assert np.allclose(on_oracle.cumulative_regret, 0.0, atol=1e-6)
    assert on_oracle.budget_violations == 0 and on_oracle.provider_violations == 0
    assert np.all(on_oracle.provider_min_ratio >= 1 - 1e-6)
    on_greedy = summarise(greedy_run)
    np.testing.assert_allclose(on_greedy.unsub_usage, 1 / world.config.unsub_budget_fraction, rtol=1e-9)
    assert on_greedy.budget_violations == 3
    assert on_greedy.total_regret < 0  # greedy out-earns the oracle by breaking the constraints


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"x": np.array([1.0, 0.0])}, "expected_reward must have shape"),
        ({"x": np.array([[1.0, 0.0, 1.0]])}, "1-D"),
        ({"x": np.array([1.0, 0.0, 1.5])}, r"\[0, 1\]"),
        ({"expected_reward": np.array([1.0, np.nan, 0.0])}, "NaN"),
        ({"pair_provider": np.array([0, 1, 2])}, "pair_provider"),
        ({"provider_max": np.array([np.inf])}, "equal length"),
        ({"provider_max": np.array([0.5, 3.0])}, "provider_max must be >="),
        ({"unsub_budget": 0.0}, "unsub_budget"),
        ({"oracle_objective": math.inf}, "oracle_objective"),
    ],
)
def test_batch_outcome_rejects_invalid_records(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        _outcome(**overrides)


def test_summarise_needs_a_batch() -> None:
    with pytest.raises(EvaluationInputError, match="at least one"):
        summarise([])


def test_summary_rows_cover_reward_constraints_and_exploration() -> None:
    rows = summary_rows(summarise([_outcome(mean_posterior_std=0.125)]))
    table = dict(rows)
    assert table["batches"] == "1"
    assert table["cumulative regret"] == "1.000 (16.7% of oracle)"
    assert table["batches over unsub budget (true probabilities)"] == "0 of 1"
    assert table["worst provider exposure / minimum"] == "0.500"
    assert table["mean selection entropy"] == "n/a"
    assert table["mean posterior std"] == "0.125"
    assert all(isinstance(label, str) and isinstance(value, str) for label, value in rows)


def test_mean_user_entropy_closed_forms() -> None:
    users = np.repeat(np.arange(3), 4)
    uniform = np.full(12, 0.25)
    assert mean_user_entropy(uniform, users) == pytest.approx(math.log(4))
    deterministic = np.tile([1.0, 0.0, 0.0, 0.0], 3)
    assert mean_user_entropy(deterministic, users) == pytest.approx(0.0)
    # Unnormalised weights are normalised per user: 2 users uniform over 4, 1 over 2.
    mixed = np.array([3.0] * 4 + [1.0] * 4 + [5.0, 5.0, 0.0, 0.0])
    assert mean_user_entropy(mixed, users) == pytest.approx((2 * math.log(4) + math.log(2)) / 3)
    with pytest.raises(EvaluationInputError, match="finite"):
        mean_user_entropy(np.array([-0.1, 1.1]), np.array([0, 0]))


def test_constraint_usage_is_measured_on_the_planned_allocation_when_given() -> None:
    """Sends [1, 0, 1] rounded from x_planned [0.5, 1, 0.5]: reward and realised figures follow
    the sends, budget and exposure the plan (their expectation over the rounding)."""
    planned = np.array([0.5, 1.0, 0.5])
    summary = summarise([_outcome(x_planned=planned)])
    np.testing.assert_allclose(summary.expected_reward, [5.0])  # sends: 2 + 3
    np.testing.assert_allclose(summary.expected_unsub, [0.05 + 0.2 + 0.15])  # plan
    np.testing.assert_allclose(summary.provider_min_ratio, [0.5 / 1.0])  # plan: [0.5, 1.5] vs [1, 2]
    np.testing.assert_allclose(summary.providers_below_min, [2])
    with pytest.raises(EvaluationInputError, match="x_planned"):
        _outcome(x_planned=np.array([0.5, 1.5, 0.0]))
