"""The per-batch measures against independent computations: explicit loops, sets, closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation.errors import EvaluationInputError
from evaluation.experiment.metrics import (
    allocation_variance,
    calibration_curve,
    calibration_error,
    expected_reward,
    item_exposure,
    overlap_at_k,
    provider_exposure,
    provider_max_excess,
    provider_min_shortfall,
    top_k_items,
    unsub_usage,
    weighted_mean,
)


def test_reward_usage_and_exposures_equal_explicit_sums() -> None:
    rng = np.random.default_rng(0)
    x = rng.random(12)
    reward, unsub = rng.random(12) * 20, rng.random(12) * 0.05
    provider = rng.integers(0, 3, 12)
    item = rng.integers(0, 5, 12)
    assert expected_reward(x, reward) == pytest.approx(sum(x[e] * reward[e] for e in range(12)), rel=1e-12)
    assert unsub_usage(x, unsub, 0.2) == pytest.approx(sum(x[e] * unsub[e] for e in range(12)) / 0.2, rel=1e-12)
    for p, got in enumerate(provider_exposure(x, provider, 3)):
        assert got == pytest.approx(sum(x[e] for e in range(12) if provider[e] == p), abs=1e-12)
    for i, got in enumerate(item_exposure(x, item, 5)):
        assert got == pytest.approx(sum(x[e] for e in range(12) if item[e] == i), abs=1e-12)


@pytest.mark.parametrize("budget", [0.0, -1.0, math.inf, math.nan])
def test_unsub_usage_rejects_a_budget_that_is_not_positive_and_finite(budget: float) -> None:
    with pytest.raises(EvaluationInputError, match="budget must be positive and finite"):
        unsub_usage([1.0], [0.1], budget)


@pytest.mark.parametrize(
    ("exposure", "minimum", "expected"),
    [
        ([3.0, 2.0, 5.0], [2.0, 2.0, 4.0], 0.0),  # every minimum met (one exactly)
        ([1.0, 2.0, 5.0], [2.0, 2.0, 4.0], 0.5),  # provider 0 at half its minimum
        ([1.0, 0.0, 5.0], [2.0, 0.0, 4.0], 0.5),  # a provider without a minimum does not count
        ([1.5, 0.5, 1.0], [2.0, 2.0, 4.0], 0.75),  # the largest relative shortfall wins
        ([0.0, 0.0], [0.0, 0.0], 0.0),  # no minimum at all
    ],
)
def test_provider_min_shortfall_cases(exposure: list[float], minimum: list[float], expected: float) -> None:
    assert provider_min_shortfall(exposure, minimum) == pytest.approx(expected, abs=1e-12)


@given(
    st.lists(st.tuples(st.floats(0, 10), st.one_of(st.just(0.0), st.floats(1e-3, 10))), min_size=1, max_size=8),
)
@settings(max_examples=60, deadline=None)
def test_provider_min_shortfall_equals_a_loop_over_providers(pairs: list[tuple[float, float]]) -> None:
    exposure = [e for e, _ in pairs]
    minimum = [m for _, m in pairs]
    worst = 0.0
    for e, m in pairs:
        if m > 0:
            worst = max(worst, (m - e) / m)
    assert provider_min_shortfall(exposure, minimum) == pytest.approx(worst, abs=1e-12)
    assert 0.0 <= provider_min_shortfall(exposure, minimum) <= 1.0


def test_provider_max_excess_ignores_infinite_maximums() -> None:
    assert provider_max_excess([3.0, 9.0], [2.0, math.inf]) == pytest.approx(0.5)
    assert provider_max_excess([1.0, 9.0], [2.0, math.inf]) == 0.0
    assert provider_max_excess([1.0], [math.inf]) == 0.0


def _top_k_by_sorting(exposure: list[float], k: int) -> set[int]:
    ranked = sorted(range(len(exposure)), key=lambda i: (-exposure[i], i))
    return set(ranked[:k])


def test_top_k_items_breaks_ties_to_the_lower_id() -> None:
    assert top_k_items([1.0, 3.0, 3.0, 0.0, 3.0], 2).tolist() == [1, 2]
    assert top_k_items([0.0, 0.0, 0.0], 5).tolist() == [0, 1, 2]


@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 4).map(float), min_size=n, max_size=n),
            st.lists(st.integers(0, 4).map(float), min_size=n, max_size=n),
            st.integers(1, n + 2),
        )
    )
)
@settings(max_examples=80, deadline=None)
def test_overlap_at_k_equals_the_set_overlap(case: tuple[list[float], list[float], int]) -> None:
    prev, cur, k = case
    expected = len(_top_k_by_sorting(prev, k) & _top_k_by_sorting(cur, k)) / min(k, len(prev))
    assert overlap_at_k(prev, cur, k) == pytest.approx(expected)
    assert overlap_at_k(prev, cur, k) == pytest.approx(overlap_at_k(cur, prev, k))  # symmetric


def test_overlap_at_k_of_an_allocation_with_itself_is_one_and_of_disjoint_tops_zero() -> None:
    e = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    assert overlap_at_k(e, e, 3) == 1.0
    assert overlap_at_k(e, e[::-1].copy(), 3) == 0.0


@pytest.mark.parametrize(("prev", "cur", "k"), [([1.0], [1.0], 0), ([1.0, 2.0], [1.0], 1), ([], [], 1)])
def test_overlap_at_k_rejects_bad_inputs(prev: list[float], cur: list[float], k: int) -> None:
    with pytest.raises(EvaluationInputError, match="need k >= 1 and equal 1-D exposures"):
        overlap_at_k(prev, cur, k)


def test_allocation_variance_equals_the_mean_of_per_pair_variances() -> None:
    plans = np.array([[1.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.5, 1.0], [1.0, 0.0, 0.0, 1.0]])
    per_pair = []
    for e in range(4):
        column = [plans[r, e] for r in range(3)]
        mean = sum(column) / 3
        per_pair.append(sum((v - mean) ** 2 for v in column) / 3)
    assert allocation_variance(plans) == pytest.approx(sum(per_pair) / 4)
    assert allocation_variance(plans[:1]) == 0.0
    # a pair sent by half the plans has the largest variance, 1/4
    assert allocation_variance(np.array([[1.0], [0.0]])) == pytest.approx(0.25)
    with pytest.raises(EvaluationInputError, match=r"plans must be \(R, E\)"):
        allocation_variance(np.ones(3))


def test_weighted_mean_is_nan_without_weight() -> None:
    assert weighted_mean([1.0, 3.0], [1.0, 3.0]) == pytest.approx(2.5)
    assert math.isnan(weighted_mean([1.0, 3.0], [0.0, 0.0]))


def test_calibration_error_on_equal_mass_bins_equals_a_brute_force_of_sorted_groups() -> None:
    rng = np.random.default_rng(3)
    pred = rng.random(40) * 0.1
    truth = np.clip(pred + rng.normal(0, 0.02, 40), 0, 1)
    # 40 pairs of equal weight in 10 bins: the bins are the groups of 4 in order of prediction
    order = np.argsort(pred)
    groups = [order[4 * b : 4 * b + 4] for b in range(10)]
    brute = sum(abs(pred[g].mean() - truth[g].mean()) * len(g) / 40 for g in groups)
    assert calibration_error(pred, truth, n_bins=10) == pytest.approx(brute, rel=1e-12)
    mean_pred, mean_true = calibration_curve(pred, truth, n_bins=10)
    for b, g in enumerate(groups):
        assert mean_pred[b] == pytest.approx(pred[g].mean())
        assert mean_true[b] == pytest.approx(truth[g].mean())


def test_calibration_error_with_one_bin_is_the_absolute_bias() -> None:
    pred, truth, w = np.array([0.1, 0.2, 0.4]), np.array([0.3, 0.1, 0.1]), np.array([1.0, 2.0, 1.0])
    bias = abs((0.1 * 1 + 0.2 * 2 + 0.4 * 1) / 4 - (0.3 * 1 + 0.1 * 2 + 0.1 * 1) / 4)
    assert calibration_error(pred, truth, w, n_bins=1) == pytest.approx(bias)


def test_calibration_error_weights_select_the_chosen_pairs() -> None:
    rng = np.random.default_rng(4)
    pred, truth = rng.random(30), rng.random(30)
    w = (rng.random(30) < 0.5).astype(float)
    assert calibration_error(pred, truth, w, n_bins=3) == pytest.approx(
        calibration_error(pred[w > 0], truth[w > 0], n_bins=3)
    )
    assert calibration_error(pred, truth, 2 * np.ones(30), n_bins=5) == pytest.approx(
        calibration_error(pred, truth, n_bins=5)
    )
    assert calibration_error(truth, truth) == 0.0  # perfectly calibrated
    assert math.isnan(calibration_error(pred, truth, np.zeros(30)))
    assert np.isnan(calibration_curve(pred, truth, np.zeros(30))[0]).all()


def test_calibration_curve_rejects_mismatched_or_negative_inputs() -> None:
    with pytest.raises(EvaluationInputError, match="must be equal 1-D"):
        calibration_curve([0.1, 0.2], [0.1])
    with pytest.raises(EvaluationInputError, match="weights must be finite and >= 0"):
        calibration_curve([0.1, 0.2], [0.1, 0.2], [1.0, -1.0])
