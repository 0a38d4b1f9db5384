"""The shifted world against its definition, and the drift experiment end to end on a tiny world."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from scipy.special import logit
from typer.testing import CliRunner

from evaluation.email_world import EmailWorld, EmailWorldConfig
from evaluation.errors import EvaluationInputError
from evaluation.experiment import ExperimentConfig, check_results, run_experiment
from evaluation.experiment.batches import FIRST_LOGGED_BATCH, BatchBook
from evaluation.health.drift import false_alarm_rates, first_alarm_delays
from evaluation.health.monitor import ALARM_NAMES
from evaluation.health.shift import Shift, ShiftedWorld, shifted_copy
from streams.cli.experiment import experiment

TINY_WORLD = EmailWorldConfig(n_users=40, n_items=8, n_providers=2, candidates_per_user=4, seed=3)


@pytest.fixture(scope="module")
def world() -> EmailWorld:
    return EmailWorld(TINY_WORLD)


def _pairs(world: EmailWorld) -> tuple[np.ndarray, np.ndarray]:
    c = world.config
    u, i = np.divmod(np.arange(c.n_users * c.n_items), c.n_items)
    return u, i


@pytest.mark.parametrize("kind,index", [("conversion", 0), ("unsubscription", 1)])
def test_a_rate_shift_moves_that_logit_by_its_size_and_nothing_else(world: EmailWorld, kind: str, index: int) -> None:
    u, i = _pairs(world)
    base = world.true_probabilities(u, i)
    moved = shifted_copy(world, Shift(kind, 0, 0.7)).true_probabilities(u, i)
    np.testing.assert_allclose(logit(moved[index]) - logit(base[index]), 0.7, atol=1e-9)
    np.testing.assert_array_equal(moved[1 - index], base[1 - index])
    np.testing.assert_array_equal(world.true_probabilities(u, i)[index], base[index])  # the base is untouched


def test_a_feature_shift_moves_the_user_features_and_the_truth_linearly(world: EmailWorld) -> None:
    u, i = _pairs(world)
    c = world.config
    moved = shifted_copy(world, Shift("features", 0, 0.5))
    f0, f1 = world.pair_features(u, i), moved.pair_features(u, i)
    np.testing.assert_allclose(f1[:, : c.user_dim] - f0[:, : c.user_dim], 0.5, atol=1e-6)
    np.testing.assert_array_equal(
        f1[:, c.user_dim : c.user_dim + c.item_dim], f0[:, c.user_dim : c.user_dim + c.item_dim]
    )
    # Every user-side term is linear in the features: shifting by +d then -d is the identity, and
    # a shift of 0 changes nothing.
    back = shifted_copy(moved, Shift("features", 0, -0.5))
    for a, b in zip(back.true_probabilities(u, i), world.true_probabilities(u, i)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(back.pair_features(u, i), f0, atol=1e-5)
    same = shifted_copy(world, Shift("features", 0, 0.0))
    np.testing.assert_allclose(same.true_probabilities(u, i)[0], world.true_probabilities(u, i)[0], rtol=1e-9)
    assert not np.allclose(moved.true_probabilities(u, i)[0], world.true_probabilities(u, i)[0])


def test_the_book_plays_batches_before_the_shift_in_the_base_world(world: EmailWorld) -> None:
    shifted = ShiftedWorld(world, Shift("conversion", 2, math.log(2)))
    book, plain = BatchBook(shifted), BatchBook(world)
    for b in (0, 1):
        np.testing.assert_array_equal(book.truth(b).p_conversion, plain.truth(b).p_conversion)
        np.testing.assert_array_equal(book.outcomes(0, b).converted, plain.outcomes(0, b).converted)
    assert book.truth(2).p_conversion.mean() > 1.5 * plain.truth(2).p_conversion.mean()
    assert shifted.at(FIRST_LOGGED_BATCH) is world
    np.testing.assert_array_equal(book.warm_start(0, 50).converted, plain.warm_start(0, 50).converted)


def test_bad_shifts_are_rejected() -> None:
    with pytest.raises(EvaluationInputError, match="kind"):
        Shift.of("weather", 1)
    with pytest.raises(EvaluationInputError, match="batch"):
        Shift("features", -1, 0.5)
    with pytest.raises(EvaluationInputError, match="shift batch"):
        ExperimentConfig(world=TINY_WORLD, batches=3, summary_from=1, shift=Shift("features", 3, 0.5))


def test_delays_and_false_alarm_rates_by_hand() -> None:
    alarms = np.array([[0, 1, 0, 0, 1], [0, 0, 0, 0, 0], [1, 0, 0, 1, 0]], dtype=float)
    assert first_alarm_delays(alarms, 2) == [2, None, 1]
    rates = false_alarm_rates(alarms, 2)
    assert rates["per_batch"] == pytest.approx(2 / 9) and rates["per_run"] == pytest.approx(2 / 3)


def test_a_feature_shift_raises_its_alarm_in_the_experiment() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = ExperimentConfig(
            world=TINY_WORLD,
            seeds=1,
            batches=6,
            warm_start_batches=2,
            variance_draws=0,
            methods=("banditlp",),
            baseline="banditlp",
            summary_from=1,
            shift=Shift("features", 4, 1.0),
        )
        run = run_experiment(config)
    finally:
        torch.set_num_threads(before)
    series = run.methods["banditlp"][0].series
    # One standard deviation on every user feature: a PSI of ~1 per user feature, above the tiny
    # world's sampling noise (80 reference rows against 160 pairs) before the shift.
    psi_max = series["health.feature_psi_max"]
    assert series["alarm.feature_drift"][4:].tolist() == [1, 1]
    assert psi_max[4:].min() > 0.5 > psi_max[:4].max()
    assert all(f"alarm.{name}" in series for name in ALARM_NAMES)
    assert len(run.methods["banditlp"][0].health) == 6


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("experiment")(experiment)

    @app.command("other")
    def other() -> None:  # a second command, so typer keeps "experiment" as a subcommand
        """Nothing."""

    return app


def test_the_command_writes_health_beside_the_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["experiment", "--users", "40", "--items", "8", "--providers", "2", "--candidates", "4"]
    args += ["--world-seed", "3", "--seeds", "1", "--batches", "4", "--warm-start-batches", "2"]
    args += ["--methods", "banditlp", "--baseline", "banditlp", "--summary-from", "1", "--variance-draws", "1"]
    args += ["--shift", "unsubscription", "--shift-batch", "3", "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    check_results(doc)
    assert doc["config"]["shift"] == {"kind": "unsubscription", "batch": 2, "size": pytest.approx(math.log(2))}
    assert set(doc["methods"]["banditlp"]["alarm"]) == set(ALARM_NAMES)
    health = json.loads((out / "health.json").read_text())
    assert len(health["methods"]["banditlp"][0]["batches"]) == 4
    assert (out / "health.png").stat().st_size > 1000
    assert "alarms" in result.output and "health:" in result.output
    bad = CliRunner().invoke(_app(), [*args[:-4], "--shift", "weather", "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "shift kind" in bad.output
