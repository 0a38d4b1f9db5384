"""The per-method summary table and the paired reward comparison, against hand computations."""

from __future__ import annotations

import math
from typing import Any

import pytest

from evaluation.reporting.experiment_results import parse_results
from evaluation.reporting.experiment_summary import comparison_table, summary_table
from evaluation.reporting.html_page import Cell
from evaluation.reporting.reductions import usage_window


def _cells(row: tuple[Cell | str, ...]) -> list[Cell]:
    return [c if isinstance(c, Cell) else Cell(c) for c in row]


def _results(methods: dict[str, dict[str, Any]], **config: Any) -> Any:
    return parse_results({"config": config, "methods": methods})


@pytest.mark.parametrize(("n_batches", "window"), [(20, (4, 20)), (30, (4, 20)), (6, (4, 6)), (3, (1, 3)), (1, (1, 1))])
def test_usage_window(n_batches: int, window: tuple[int, int]) -> None:
    assert usage_window(n_batches) == window


def test_summary_row_of_one_method() -> None:
    usage = [[0.5, 0.5, 0.5, 1.0, 0.9, 0.8], [0.5, 0.5, 0.5, 1.0, 1.1, 1.2]]
    results = _results(
        {
            "banditlp": {
                "reward": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]],
                "oracle_fraction": [[0.5, 0.6, 0.7, 0.8, 0.9, 0.8], [0.5, 0.5, 0.5, 0.5, 0.5, 0.6]],
                "unsub_usage": usage,
                "provider_min_shortfall": [[0.0] * 6, [0.0] * 6],
            },
            "oracle_lp": {"reward": [[6.0] * 6, [6.0] * 6], "unsub_usage": [[1.0] * 6, [1.0] * 6]},
        }
    )
    table = summary_table(results)
    assert table.header[5] == "unsub usage, mean of batches 4–6"
    row = _cells(table.rows[0])
    assert row[0].text == "banditlp" and row[1].text == "2 × 6"
    # Cumulative rewards 21 and 12: mean 16.5, half-width t(0.975,1) * sd / sqrt(2) = 12.7062 * 4.5.
    assert row[2].text == "16.50 ± 57.18"
    # Regret 36 - 21 = 15 and 36 - 12 = 24: mean 19.5, the same spread.
    assert row[3].text == "19.50 ± 57.18"
    assert row[4].text.startswith("0.700 ±")  # last batch: 0.8 and 0.6
    # Batches 4-6: seed means 0.9 and 1.1, mean 1.0, not above 1.00.
    assert row[5].text.startswith("1.000 ±") and "bad" not in row[5].css
    assert row[6].text == "1.200 (batch 6, seed 1)" and "bad" in row[6].css
    assert row[7].text == "0.000 / 0.000" and "bad" not in row[7].css
    oracle = _cells(table.rows[1])
    assert oracle[3].text == "n/a" and oracle[4].text == "n/a" and oracle[7].text == "n/a"


def test_summary_window_follows_the_configs_summary_from() -> None:
    results = _results({"banditlp": {"unsub_usage": [[2.0, 2.0, 1.0, 1.0]]}}, summary_from=3)
    table = summary_table(results)
    assert table.header[5] == "unsub usage, mean of batches 3–4"
    assert _cells(table.rows[0])[5].text == "1.000"  # one seed: no interval


def test_mean_usage_above_the_budget_is_marked() -> None:
    results = _results({"nnts": {"unsub_usage": [[1.0, 1.0, 1.0, 1.02, 1.01]], "provider_min_shortfall": [[0.1] * 5]}})
    row = _cells(summary_table(results).rows[0])
    assert "bad" in row[5].css and "bad" not in row[6].css  # 1.015 mean; no batch above 1.05
    assert "bad" in row[7].css


def test_comparison_is_paired_by_seed() -> None:
    results = _results(
        {
            "nn_lp": {"reward": [[1.0, 1.0], [5.0, 5.0], [3.0, 3.0]]},
            "banditlp": {"reward": [[2.0, 2.0], [6.0, 6.0], [3.0, 5.0]]},
            "random_lp": {"reward": [[1.0, 1.0]]},
        }
    )
    table = comparison_table(results)
    assert table is not None and table.header[1] == "banditlp − method, cumulative reward"
    nn_lp, random_lp = (_cells(r) for r in table.rows)
    # Differences 2, 2, 2 on every seed: no spread, so the interval is the point itself.
    assert nn_lp[0].text == "nn_lp" and nn_lp[1].text == "+2.000" and nn_lp[2].text == "[2.000, 2.000]"
    assert nn_lp[3].text == "3 of 3"
    assert random_lp[1].text == "n/a (seeds differ)"


def test_comparison_needs_two_rewards() -> None:
    assert comparison_table(_results({"banditlp": {"reward": [[1.0]]}, "nn_lp": {"unsub_usage": [[1.0]]}})) is None


def test_comparison_without_banditlp_takes_the_first_method() -> None:
    table = comparison_table(_results({"a": {"reward": [[1.0], [2.0]]}, "b": {"reward": [[0.0], [0.0]]}}))
    assert table is not None
    row = _cells(table.rows[0])
    assert row[0].text == "b" and row[1].text == "+1.500"
    low, high = (float(v) for v in row[2].text.strip("[]").split(", "))
    assert (high - low) / 2 == pytest.approx(12.7062 * math.sqrt(0.5) / math.sqrt(2), abs=2e-3)
