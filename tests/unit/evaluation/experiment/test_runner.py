"""The experiment loop: shared inputs, measures consistent with each other, seeded reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.errors import EvaluationInputError
from evaluation.experiment import ExperimentRun, results_document, run_experiment, tasks
from evaluation.experiment.batches import BatchBook
from evaluation.experiment.runner import run_seed
from evaluation.experiment.seeding import OUTCOMES, generator
from tests.unit.evaluation.experiment.conftest import tiny_config


def test_the_warm_start_is_one_random_candidate_per_user_per_logged_batch(tiny_book: BatchBook) -> None:
    rows = tiny_book.warm_start(seed=2, n_rows=100)  # 2.5 batches of 40 users
    assert rows.n == 100
    again = tiny_book.warm_start(seed=2, n_rows=100)
    np.testing.assert_array_equal(rows.features, again.features)
    np.testing.assert_array_equal(rows.unsubscribed, again.unsubscribed)
    assert not np.array_equal(rows.features, tiny_book.warm_start(seed=3, n_rows=100).features)
    np.testing.assert_array_equal(rows.take(np.arange(40)).features, tiny_book.warm_start(2, 40).features)
    with pytest.raises(EvaluationInputError, match="at least one row"):
        tiny_book.warm_start(0, 0)


def test_outcomes_are_the_worlds_draws_from_the_shared_stream(tiny_book: BatchBook) -> None:
    batch = tiny_book.truth(1).batch
    out = tiny_book.outcomes(seed=4, index=1)
    converted, unsubscribed, value = tiny_book.world.draw_outcomes(
        batch.pair_user, batch.pair_item, generator(4, OUTCOMES, 1, "outcomes")
    )
    np.testing.assert_array_equal(out.converted, converted)
    np.testing.assert_array_equal(out.unsubscribed, unsubscribed)
    np.testing.assert_array_equal(out.value, value)


def test_measures_agree_with_each_other(tiny_run: ExperimentRun) -> None:
    for name, runs in tiny_run.methods.items():
        for run in runs:
            s = run.series
            np.testing.assert_allclose(s["oracle_fraction"], s["reward"] / s["oracle_reward"], rtol=1e-12)
            assert np.isnan(s["overlap_at_k"][0]) and np.all(s["overlap_at_k"][1:] >= 0)
            assert np.all(s["sends"] <= 40)  # one send per user at most
            assert np.all((s["lp_elastic"] == 0) | (s["lp_elastic"] == 1)), name


def test_diagnostics_exist_for_model_methods_only(tiny_run: ExperimentRun) -> None:
    for name in ("banditlp", "banditlp_naive_calibration", "nn_lp", "nnts"):
        s = tiny_run.methods[name][0].series
        assert np.all(np.isfinite(s["chosen_unsub.decision"])), name
        assert np.all(np.isfinite(s["calibration_error.unsubscription_chosen"])), name
        assert np.isnan(s["version_spread.unsubscription"][0]) and np.all(s["version_spread.unsubscription"][1:] > 0)
        assert set(tiny_run.methods[name][0].curves) == {
            "conversion_all",
            "conversion_chosen",
            "unsubscription_all",
            "unsubscription_chosen",
        }
    assert np.all(np.isfinite(tiny_run.methods["oracle_lp"][0].series["chosen_unsub.true"]))
    assert np.all(np.isnan(tiny_run.methods["oracle_lp"][0].series["chosen_unsub.predicted"]))
    assert tiny_run.methods["oracle_lp"][0].curves == {}
    # LinUCB models the reward directly: an unsubscription estimate but no conversion one
    lin = tiny_run.methods["linucb_lp"][0].series
    assert np.all(np.isnan(lin["calibration_error.conversion_all"]))
    assert np.all(np.isfinite(lin["calibration_error.unsubscription_all"]))


def test_the_same_config_gives_identical_results() -> None:
    config = tiny_config(methods=("banditlp_naive_calibration", "random_lp", "linucb_lp"), taus=(1.0, 0.5))
    first, second = run_experiment(config), run_experiment(config)
    assert json.dumps(results_document(first)) == json.dumps(results_document(second))


def test_a_methods_results_do_not_depend_on_the_other_methods(tiny_book: BatchBook, tiny_run: ExperimentRun) -> None:
    alone = run_seed(tiny_book, tiny_run.config, "banditlp", seed=tiny_run.config.experiment_seeds[1])
    with_others = tiny_run.methods["banditlp"][1]
    for key, values in with_others.series.items():
        np.testing.assert_array_equal(alone.series[key], values, err_msg=key)


def test_sweep_points_equal_to_the_comparison_reuse_its_runs(tiny_run: ExperimentRun) -> None:
    assert list(tiny_run.sweeps) == ["tau", "train_rows"]
    assert list(tiny_run.sweeps["tau"]) == ["0.25", "1"]
    assert tiny_run.sweeps["tau"]["1"]["banditlp"] is tiny_run.methods["banditlp"]
    assert list(tiny_run.sweeps["train_rows"]) == ["30"]
    swept = tiny_run.sweeps["tau"]["0.25"]["banditlp"][0].series["reward"]
    assert not np.array_equal(swept, tiny_run.methods["banditlp"][0].series["reward"])


def test_tasks_list_the_comparison_then_the_sweep_points_not_in_it() -> None:
    config = tiny_config(methods=("nn_lp", "banditlp"), taus=(1.0, 2.0), train_rows=(80, 10))
    labels = [t.label for t in tasks(config)]
    # warm_start_rows of the comparison is 2 batches x 40 users = 80: that point is the comparison
    assert labels == ["nn_lp", "banditlp", "tau=2 banditlp", "train_rows=10 banditlp"]
    only_sweep = tiny_config(methods=("nn_lp",), taus=(1.0, 2.0))
    assert [t.label for t in tasks(only_sweep)] == ["nn_lp", "tau=1 banditlp", "tau=2 banditlp"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seeds": 0}, "seeds must be >= 1"),
        ({"batches": 0}, "batches must be >= 1"),
        ({"methods": ()}, "at least one method"),
        ({"methods": ("nn_lp", "nn_lp")}, "methods must not repeat"),
        ({"methods": ("nope",)}, "unknown method 'nope'"),
        ({"taus": (1.0, 1.0)}, "taus must not repeat"),
        ({"taus": (-1.0,)}, "every tau must be finite and >= 0"),
        ({"train_rows": (0,)}, "every train_rows size must be >= 1"),
        ({"world_name": "mars"}, "world must be one of email"),
        ({"summary_from": 9}, r"summary_from must be in \[1, 3\]"),
        ({"variance_draws": -1}, "variance_draws must be >= 0"),
    ],
)
def test_the_config_rejects_what_cannot_run(fields: dict[str, object], message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        tiny_config(**fields)
