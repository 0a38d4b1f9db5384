"""Sweeps in results.json: the shapes read, the per-seed reduction, and shapes left out."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from evaluation.reporting.sweeps import parameter_name, read_sweeps


def test_the_experiments_shape_reduces_each_seed_as_the_summary_does() -> None:
    # sweeps.tau.VALUE.METHOD.MEASURE = [[per batch] per seed], as `banditlp experiment` writes it.
    point = {
        "reward": [[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]],
        "oracle_fraction": [[0.1, 0.2, 0.3, 0.9], [0.1, 0.2, 0.3, 0.7]],
        "unsub_usage": [[5.0, 5.0, 5.0, 1.0], [5.0, 5.0, 5.0, 0.8]],
        "chosen_unsub": {"true": [[0.01, 0.03, None, None]]},
    }
    sweeps, notes = read_sweeps({"sweeps": {"tau": {"1.0": {"banditlp": point}, "0.5": {"banditlp": point}}}})
    assert notes == []
    (sweep,) = sweeps
    assert (sweep.key, sweep.symbol, sweep.parameter) == ("sweeps.tau", "τ", "τ (Thompson temperature)")
    assert sweep.labels == ("0.5", "1.0")  # numeric order
    assert sweep.positions is not None and sweep.positions.tolist() == [0.5, 1.0]
    assert sweep.measures["reward"]["banditlp"].tolist() == [7.0, 7.0]  # cumulative 10 and 4
    assert sweep.measures["oracle_fraction"]["banditlp"][0] == pytest.approx(0.8)  # last batch
    assert sweep.measures["unsub_usage"]["banditlp"][0] == pytest.approx(0.9)  # batch 4 only
    assert sweep.measures["chosen_unsub.true"]["banditlp"][0] == pytest.approx(0.02)
    assert sweep.descriptions == {
        "reward": "cumulative",
        "oracle_fraction": "last batch",
        "unsub_usage": "mean of batches 4–4",
        "chosen_unsub.true": "mean over batches",
    }
    # Two seeds: a t-interval; one seed: none.
    assert sweep.half_widths["reward"]["banditlp"][0] == pytest.approx(12.7062 * 3.0, rel=1e-4)
    assert math.isnan(sweep.half_widths["chosen_unsub.true"]["banditlp"][0])


def test_by_column_shape_and_numbers_as_written() -> None:
    document = {"train_rows_sweep": {"values": [500, 100], "methods": {"banditlp": {"reward": [2.0, 1.0]}}}}
    (sweep,), _ = read_sweeps(document)
    assert sweep.parameter == "train rows" and sweep.labels == ("100", "500")
    assert sweep.measures["reward"]["banditlp"].tolist() == [1.0, 2.0]
    assert sweep.descriptions == {}


def test_methods_outside_values_inside() -> None:
    document = {"tau_sweep": {"banditlp": {"0.5": {"reward": 1.0}, "2": {"reward": 3.0}}, "nn_lp": {"2": 4.0}}}
    (sweep,), _ = read_sweeps(document, methods=["banditlp", "nn_lp"])
    assert sweep.labels == ("0.5", "2")
    assert sweep.measures["reward"]["banditlp"].tolist() == [1.0, 3.0]
    nn_lp = sweep.measures["value"]["nn_lp"]
    assert math.isnan(nn_lp[0]) and nn_lp[1] == 4.0


def test_categorical_values_keep_their_order() -> None:
    document = {"size_sweep": {"small": {"banditlp": {"reward": 1.0}}, "large": {"banditlp": {"reward": 2.0}}}}
    (sweep,), _ = read_sweeps(document)
    assert sweep.positions is None and sweep.labels == ("small", "large")


@pytest.mark.parametrize(
    "value",
    [3.5, "text", [], {}, [1, 2, 3], {"0.5": 1.0}, {"0.5": {"banditlp": "high"}}, {"values": [1], "methods": {"a": 1}}],
)
def test_other_shapes_are_noted_not_raised(value: Any) -> None:
    sweeps, notes = read_sweeps({"odd": value})
    assert sweeps == ()
    assert len(notes) == 1 and notes[0].startswith("odd: not shown")


def test_parameter_names() -> None:
    assert parameter_name("tau_sweep") == ("τ", "τ (Thompson temperature)")
    assert parameter_name("sweeps.train_rows") == ("train rows", "train rows")
    assert parameter_name("sweep") == ("sweep", "sweep")


def test_a_sweep_measure_without_any_finite_value_is_skipped() -> None:
    (sweep,), _ = read_sweeps({"tau": {"1": {"banditlp": {"reward": [[None, None]], "sends": [[np.float64(2.0)]]}}}})
    assert list(sweep.measures) == ["sends"]
