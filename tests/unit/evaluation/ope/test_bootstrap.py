"""Bootstrap intervals and :func:`evaluate`: coverage of the true value, 1/sqrt(n) widths, seeding, selection."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from evaluation.errors import OPEInputError
from evaluation.ope import DR, ESTIMATORS, IPS, Estimate, LoggedPairs, SwitchDR, bootstrap_counts, evaluate
from evaluation.ope import bootstrap as bootstrap_module
from tests.unit.evaluation.ope.test_worlds import single_slot_world


def test_95_percent_intervals_of_ips_and_dr_cover_the_true_value_in_at_least_90_percent_of_logs() -> None:
    world = single_slot_world(150, seed=30)
    rng = np.random.default_rng(31)
    covered = {"ips": 0, "dr": 0}
    for i in range(200):
        result = evaluate(
            world.log(rng), world.target_pairs, world.predicted_pairs, estimators=["ips", "dr"], n_bootstrap=200, seed=i
        )["reward"]
        for name, estimate in result.items():
            covered[name] += estimate.ci[0] <= world.value <= estimate.ci[1]
    assert covered["ips"] >= 180
    assert covered["dr"] >= 180


def test_the_ips_interval_has_the_normal_theory_width_of_a_mean_over_rounds() -> None:
    world = single_slot_world(2000, seed=32)
    log = world.log(np.random.default_rng(33))
    estimate = evaluate(log, world.target_pairs, None, estimators=["ips"], n_bootstrap=1000, seed=1)["reward"]["ips"]
    # IPS is the mean of the per-round terms sum_e w_e y_e: its SE is their sd / sqrt(n).
    w = np.where(log.sent, world.target_pairs / log.propensity, 0.0)
    terms = np.nansum((w * np.nan_to_num(log.outcomes["reward"])).reshape(2000, -1), axis=1)
    normal_width = 2 * 1.959964 * terms.std(ddof=1) / math.sqrt(2000)
    assert estimate.ci[1] - estimate.ci[0] == pytest.approx(normal_width, rel=0.1)
    assert estimate.value == pytest.approx(terms.mean(), rel=1e-12)


def test_the_interval_shrinks_like_one_over_sqrt_n() -> None:
    # Mean widths over several worlds and logs at each size: one log's width varies by about 10%.
    mean_width = {}
    for n, n_logs in ((400, 16), (6400, 4)):
        widths = []
        for j in range(n_logs):
            world = single_slot_world(n, seed=34 + j)
            log = world.log(np.random.default_rng(35 + j))
            estimate = evaluate(log, world.target_pairs, world.predicted_pairs, estimators=["dr"], seed=j)
            widths.append(estimate["reward"]["dr"].ci[1] - estimate["reward"]["dr"].ci[0])
        mean_width[n] = float(np.mean(widths))
    assert 3.6 < mean_width[400] / mean_width[6400] < 4.4  # sqrt(6400 / 400) = 4


def test_the_same_seed_gives_the_same_intervals_and_another_seed_other_intervals() -> None:
    world = single_slot_world(100, seed=36)
    log = world.log(np.random.default_rng(37))
    args = (log, world.target_pairs, world.predicted_pairs)
    first, again, other = evaluate(*args, seed=5), evaluate(*args, seed=5), evaluate(*args, seed=6)
    assert first == again
    for name in ESTIMATORS:
        assert other["reward"][name].value == first["reward"][name].value
        assert other["reward"][name].ci != first["reward"][name].ci


def test_the_resamples_do_not_depend_on_how_the_count_matrix_is_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = np.concatenate(list(bootstrap_counts(50, 12, np.random.default_rng(7))))
    monkeypatch.setattr(bootstrap_module, "_CHUNK_ENTRIES", 50 * 5)  # chunks of 5 rows: 5, 5, 2
    chunks = list(bootstrap_counts(50, 12, np.random.default_rng(7)))
    assert [c.shape for c in chunks] == [(5, 50), (5, 50), (2, 50)]
    assert (np.concatenate(chunks) == whole).all()
    assert (whole.sum(axis=1) == 50).all()


def test_evaluate_gives_each_estimators_own_estimate_and_the_log_size() -> None:
    world = single_slot_world(80, seed=38)
    log = world.log(np.random.default_rng(39))
    switch = SwitchDR(tau=1.5)
    result = evaluate(log, world.target_pairs, world.predicted_pairs, estimators=["ips", "dr", switch], n_bootstrap=50)
    assert list(result) == ["reward"]
    assert list(result["reward"]) == ["ips", "dr", "switch_dr"]
    for estimator in (IPS(), DR(), switch):
        got = result["reward"][estimator.name]
        expected = estimator.estimate(log, world.target_pairs, world.predicted_pairs, outcome="reward")
        assert isinstance(got, Estimate)
        assert got.value == pytest.approx(expected, rel=1e-12)
        assert got.n_rounds == 80
        assert got.ci[0] < got.value < got.ci[1]


def _two_outcome_log() -> tuple[LoggedPairs, np.ndarray, np.ndarray]:
    world = single_slot_world(30, seed=40)
    log = world.log(np.random.default_rng(41))
    cost = np.where(log.sent, 0.5, np.nan)
    two = LoggedPairs(log.round_index, log.n_rounds, log.sent, log.propensity, {**log.outcomes, "cost": cost})
    return two, world.target_pairs, world.predicted_pairs["reward"]


def test_unnamed_model_estimators_run_only_for_the_outcomes_the_model_predicts() -> None:
    log, target, predicted = _two_outcome_log()
    without = evaluate(log, target, None, n_bootstrap=20)
    assert {k: sorted(v) for k, v in without.items()} == {"reward": ["ips", "snips"], "cost": ["ips", "snips"]}
    partial = evaluate(log, target, {"reward": predicted}, n_bootstrap=20)
    assert sorted(partial["reward"]) == sorted(ESTIMATORS)
    assert sorted(partial["cost"]) == ["ips", "snips"]
    only_cost = evaluate(log, target, None, outcomes=["cost"], estimators=["ips"], n_bootstrap=20)
    # Every sent pair costs 0.5 and IPS weighs them by target / propensity: the closed form.
    expected = 0.5 * float(np.sum(target[log.sent] / log.propensity[log.sent])) / log.n_rounds
    assert list(only_cost) == ["cost"] and list(only_cost["cost"]) == ["ips"]
    assert only_cost["cost"]["ips"].value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("models", "kwargs", "message"),
    [
        ("none", {"estimators": ["dr"]}, r"estimator 'dr' needs an outcome model of 'reward': predicted has none"),
        ("reward", {"estimators": ["ips", "dm"]}, r"estimator 'dm' needs an outcome model of 'cost'"),
        ("both", {"estimators": ["ipw"]}, r"unknown estimator 'ipw'; known: \['dm', 'dr', 'dros', 'ips', 'snips'"),
        ("both", {"estimators": ["ips", "ips"]}, r"estimators are repeated"),
        ("both", {"estimators": []}, "no estimator to run"),
        ("both", {"outcomes": ["click"]}, r"unknown outcome\(s\) \['click'\]; the log has \['cost', 'reward'\]"),
        ("both", {"outcomes": []}, "no outcome to evaluate"),
        ("both", {"outcomes": ["cost", "cost"]}, "outcome names are repeated"),
        ("both", {"n_bootstrap": 1}, "n_bootstrap must be an integer >= 2"),
        ("both", {"n_bootstrap": 10.0}, "n_bootstrap must be an integer >= 2"),
        ("both", {"alpha": 0.0}, r"alpha must lie in \(0, 1\)"),
        ("both", {"alpha": 1.0}, r"alpha must lie in \(0, 1\)"),
        ("both", {"alpha": math.nan}, r"alpha must lie in \(0, 1\)"),
        ("both", {"seed": -1}, "seed must be an integer >= 0"),
        ("both", {"seed": 1.5}, "seed must be an integer >= 0"),
    ],
)
def test_evaluate_rejects_bad_selections_and_options(models: str, kwargs: dict[str, Any], message: str) -> None:
    log, target, predicted = _two_outcome_log()
    chosen = {"none": None, "reward": {"reward": predicted}, "both": {"reward": predicted, "cost": predicted}}[models]
    with pytest.raises(OPEInputError, match=message):
        evaluate(log, target, chosen, **{"n_bootstrap": 20, **kwargs})
