"""results.json: the documented shape, strict JSON, and the checker's messages."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evaluation.errors import EvaluationInputError
from evaluation.experiment import ExperimentRun, check_results, results_document, write_results
from evaluation.experiment.results import CORE_MEASURES, per_seed_array


def _strict_json(text: str) -> Any:
    def no_constant(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_constant)


def test_the_file_is_strict_json_in_the_documented_shape(tiny_run: ExperimentRun, tmp_path: Path) -> None:
    path = write_results(tiny_run, tmp_path / "out")
    assert path == tmp_path / "out" / "results.json"
    doc = _strict_json(path.read_text())
    check_results(doc)
    assert set(doc) == {"config", "methods", "sweeps"}
    assert doc["config"]["seeds"] == [0, 1] and doc["config"]["batches"] == 3
    assert doc["config"]["world"] == "email" and doc["config"]["world_config"]["n_users"] == 40
    assert doc["config"]["world_config"]["provider_max_fraction"] is None  # inf
    assert list(doc["methods"]) == list(tiny_run.methods)
    for name, measures in doc["methods"].items():
        for key in CORE_MEASURES:
            assert len(measures[key]) == 2 and all(len(per_seed) == 3 for per_seed in measures[key]), (name, key)
        assert measures["overlap_at_k"][0][0] is None  # no previous allocation in batch 1
        assert set(measures["chosen_unsub"]) == {"true", "predicted", "calibrated", "decision"}
    curve = doc["methods"]["banditlp"]["calibration_curve"]["unsubscription_chosen"]
    assert set(curve) == {"prob_pred", "prob_true"} and len(curve["prob_pred"]) == 2
    assert "calibration_curve" not in doc["methods"]["oracle_lp"]
    assert list(doc["sweeps"]["tau"]) == ["0.25", "1"]
    assert list(doc["sweeps"]["tau"]["0.25"]) == ["banditlp"]
    assert "reward" in doc["sweeps"]["train_rows"]["30"]["banditlp"]


def test_the_numbers_are_the_runs(tiny_run: ExperimentRun) -> None:
    doc = results_document(tiny_run)
    for seed, run in enumerate(tiny_run.methods["nn_lp"]):
        np.testing.assert_array_equal(per_seed_array(doc["methods"]["nn_lp"]["reward"])[seed], run.series["reward"])
        got = per_seed_array(doc["methods"]["nn_lp"]["calibration_error"]["unsubscription_all"])[seed]
        np.testing.assert_array_equal(got, run.series["calibration_error.unsubscription_all"])


def _broken(doc: dict[str, Any], change: str) -> dict[str, Any]:
    bad = copy.deepcopy(doc)
    measures = bad["methods"]["banditlp"]
    if change == "missing":
        del measures["unsub_usage"]
    elif change == "short seed":
        measures["reward"][0] = measures["reward"][0][:-1]
    elif change == "one seed":
        measures["reward"] = measures["reward"][:1]
    elif change == "nan":
        measures["oracle_fraction"][0][0] = math.nan
    elif change == "text":
        measures["chosen_unsub"]["true"][1][2] = "high"
    elif change == "sweep":
        del bad["sweeps"]["tau"]["0.25"]["banditlp"]["overlap_at_k"]
    return bad


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", "methods.banditlp: missing measure 'unsub_usage'"),
        ("short seed", "methods.banditlp.reward: expected 2 lists of 3 numbers or nulls"),
        ("one seed", "methods.banditlp.reward: expected 2 lists of 3 numbers or nulls"),
        ("nan", "methods.banditlp.oracle_fraction: expected 2 lists"),
        ("text", "methods.banditlp.chosen_unsub.true: expected 2 lists"),
        ("sweep", "sweeps.tau.0.25.banditlp: missing measure 'overlap_at_k'"),
    ],
)
def test_the_checker_names_what_is_out_of_shape(tiny_run: ExperimentRun, change: str, message: str) -> None:
    doc = results_document(tiny_run)
    check_results(doc)
    with pytest.raises(EvaluationInputError, match=message):
        check_results(_broken(doc, change))


def test_the_checker_rejects_a_document_without_config_or_methods() -> None:
    for doc in ([], {"methods": {}}, {"config": {}, "methods": []}):
        with pytest.raises(EvaluationInputError, match="'config' and 'methods' objects"):
            check_results(doc)
