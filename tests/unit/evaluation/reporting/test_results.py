"""Reading results.json: per-seed matrices, grouped measures, calibration curves."""

from __future__ import annotations

import math

import pytest

from evaluation.reporting import ReportInputError
from evaluation.reporting.experiment_results import parse_results
from evaluation.reporting.json_values import per_seed_matrix


def test_a_flat_list_is_one_seed_and_null_is_missing() -> None:
    matrix = per_seed_matrix([1, None, 2.5], "x")
    assert matrix.shape == (1, 3) and math.isnan(matrix[0, 1]) and not matrix.flags.writeable


def test_grouped_measures_become_dotted_series_and_curves_are_read() -> None:
    results = parse_results(
        {
            "config": {"summary_from": 2},
            "methods": {
                "banditlp": {
                    "reward": [[1.0, 2.0]],
                    "calibration_error": {"unsubscription_all": [[0.1, 0.2]], "conversion_all": [[0.3, None]]},
                    "calibration_curve": {
                        "unsubscription_chosen": {"prob_pred": [[0.1, 0.2], [0.3, 0.4]], "prob_true": [[0.1, None]]}
                    },
                },
                "oracle_lp": {"reward": [[2.0, 2.0]], "calibration_error": {"unsubscription_all": [[None, None]]}},
            },
        }
    )
    assert results.usage_from == 2
    banditlp = results.methods["banditlp"]
    assert set(banditlp.series) == {
        "reward",
        "calibration_error.unsubscription_all",
        "calibration_error.conversion_all",
    }
    (curve,) = banditlp.curves
    assert curve.label == "unsubscription_chosen"
    assert curve.predicted.tolist() == pytest.approx([0.2, 0.3])  # mean over seeds
    assert curve.observed[0] == pytest.approx(0.1) and math.isnan(curve.observed[1])
    # The oracle's all-null diagnostic is held but not drawn.
    assert list(results.holding("calibration_error.unsubscription_all")) == ["banditlp"]
    assert results.series_names()[0] == "reward"


def test_a_malformed_optional_key_is_noted_and_a_core_one_raises() -> None:
    results = parse_results({"methods": {"a": {"reward": [[1.0]], "notes": "x", "group": {"bad": [["y"]]}}}})
    assert list(results.methods["a"].series) == ["reward"]
    assert len(results.not_shown) == 2
    with pytest.raises(ReportInputError, match=r"results.json: methods.a.overlap_at_k.k5: seed 0, batch 1"):
        parse_results({"methods": {"a": {"overlap_at_k": {"k5": [["y"]]}}}})
