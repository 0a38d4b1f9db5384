"""The figures over seeds against closed forms on hand-made measures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from evaluation.experiment import ExperimentRun, stack, summarise, summary_json, table_rows
from evaluation.experiment.summary import TABLE_COLUMNS, mean_interval


def test_mean_interval_is_the_student_t_interval() -> None:
    v = np.array([1.0, 2.0, 4.0, 7.0])
    half = stats.t.ppf(0.975, 3) * np.std(v, ddof=1) / 2.0
    i = mean_interval(v)
    assert (i.mean, i.low, i.high) == pytest.approx((3.5, 3.5 - half, 3.5 + half))
    one = mean_interval(np.array([2.0]))
    assert one.mean == 2.0 and math.isnan(one.low) and math.isnan(one.high)
    assert math.isnan(mean_interval(np.array([math.nan])).mean)


def _measures(reward: list[list[float]], usage: list[list[float]]) -> dict[str, np.ndarray]:
    r = np.array(reward)
    return {
        "reward": r,
        "oracle_fraction": r / 10.0,
        "unsub_usage": np.array(usage),
        "provider_min_shortfall": np.zeros_like(r),
        "overlap_at_k": np.full_like(r, 0.5),
        "allocation_variance": np.full_like(r, 0.01),
        "lp_elastic": np.zeros_like(r),
    }


def test_summarise_on_hand_made_measures() -> None:
    a = _measures([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]], [[1.2, 0.9, 1.0], [1.06, 0.8, 1.04]])
    b = _measures([[1.0, 1.0, 1.0], [1.0, 1.0, 3.0]], [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    got = {s.name: s for s in summarise({"a": a, "b": b}, baseline="b", summary_from=2)}
    s = got["a"]
    assert s.unsub_usage_mean == pytest.approx(np.mean([0.9, 1.0, 0.8, 1.04]))  # batches 2..3
    assert s.unsub_usage_max == pytest.approx(1.2)
    assert s.batches_over_budget == 3 and s.batches_over_1_05 == 2
    assert s.cumulative_reward.mean == pytest.approx(6.0)
    assert s.reward_vs_baseline is not None
    assert s.reward_vs_baseline.mean == pytest.approx(np.mean([6.0 - 3.0, 6.0 - 5.0]))  # paired by seed
    assert s.oracle_fraction_last.mean == pytest.approx(np.mean([0.3, 0.2]))
    assert got["b"].reward_vs_baseline is not None and got["b"].reward_vs_baseline.mean == 0.0
    none = summarise({"a": a}, baseline="missing", summary_from=1)[0]
    assert none.reward_vs_baseline is None


def test_summary_json_and_table_of_a_run(tiny_run: ExperimentRun) -> None:
    summaries = summarise(
        {name: stack(runs) for name, runs in tiny_run.methods.items()}, baseline="nn_lp", summary_from=1
    )
    doc = summary_json(summaries)
    assert set(doc) == set(tiny_run.methods)
    last = doc["oracle_lp"]["oracle_fraction_last"]
    assert isinstance(last, dict) and last["mean"] == pytest.approx(1.0, abs=1e-6)
    assert doc["nn_lp"]["reward_vs_baseline"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    rows = table_rows(summaries)
    assert len(rows) == len(summaries) and all(len(r) == len(TABLE_COLUMNS) for r in rows)
    assert rows[0][0] == "banditlp"
