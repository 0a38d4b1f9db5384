"""The health metrics against brute force and closed forms."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import norm

from evaluation.errors import EvaluationInputError
from evaluation.health.metrics import (
    PSI_FLOOR,
    allocation_variance,
    calibration,
    item_coverage,
    overlap_at_k,
    psi,
    psi_of_shares,
    selection_entropy,
    send_variance,
    top_k_pairs,
)


def test_entropy_of_a_known_distribution() -> None:
    # Masses 1, 1, 2 on three items (the third split over two pairs), a zero-mass item ignored.
    items = np.array([0, 1, 2, 2, 3])
    p = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    expected = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert selection_entropy(items, p) == pytest.approx(expected, rel=1e-12)
    assert selection_entropy(items, np.zeros(5)) != selection_entropy(items, np.zeros(5))  # nan
    assert selection_entropy(np.arange(8), np.full(8, 0.3)) == pytest.approx(math.log(8))


def test_coverage_counts_items_with_mass() -> None:
    items = np.array([0, 0, 1, 2, 3, 3])
    p = np.array([0.0, 0.5, 0.0, 1e-3, 0.0, 0.0])
    assert item_coverage(items, p) == pytest.approx(2 / 4)
    assert item_coverage(items, p, min_mass=0.01) == pytest.approx(1 / 4)


def _brute_overlap(prev: tuple, cur: tuple, k: int) -> float:
    def tops(u, i, p):
        out: dict[int, set[int]] = {}
        for user in set(u.tolist()):
            rows = [(-p[e], i[e]) for e in range(len(u)) if u[e] == user and p[e] > 0]
            out[user] = {item for _, item in sorted(rows)[:k]}
        return out

    a, b = tops(*prev), tops(*cur)
    scores = []
    for user in set(a) & set(b):
        d = min(k, max(len(a[user]), len(b[user])))
        if d:
            scores.append(len(a[user] & b[user]) / d)
    return float(np.mean(scores)) if scores else math.nan


def test_overlap_hand_cases() -> None:
    u = np.array([0, 0, 0, 1, 1, 1])
    i = np.array([1, 2, 3, 1, 2, 3])
    prev = (u, i, np.array([0.9, 0.1, 0.0, 0.0, 0.5, 0.5]))
    # user 0 keeps item 1 on top; user 1 moves from {2, 3} to {1}.
    cur = (u, i, np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]))
    assert overlap_at_k(prev, cur, 1) == pytest.approx((1 + 0) / 2)
    # K = 2: user 0 {1, 2} vs {1}: 1 / 2; user 1 {2, 3} vs {1}: 0.
    assert overlap_at_k(prev, cur, 2) == pytest.approx((0.5 + 0.0) / 2)
    assert overlap_at_k(prev, prev, 2) == pytest.approx(1.0)
    # A user only in one plan is left out.
    only = (np.array([0, 5]), np.array([1, 1]), np.array([1.0, 1.0]))
    assert overlap_at_k(only, cur, 1) == pytest.approx(1.0)


def test_overlap_matches_brute_force_on_random_plans() -> None:
    rng = np.random.default_rng(3)
    for k in (1, 2, 4):
        for _ in range(20):
            plans = []
            for _ in range(2):
                u = np.repeat(np.arange(12), 5)
                i = np.concatenate([rng.choice(9, 5, replace=False) for _ in range(12)])
                p = np.where(rng.random(60) < 0.5, rng.choice([0.25, 0.5, 1.0], 60), 0.0)
                plans.append((u, i, p))
            assert overlap_at_k(plans[0], plans[1], k) == pytest.approx(_brute_overlap(plans[0], plans[1], k))


def test_top_k_breaks_ties_to_the_smaller_item() -> None:
    u = np.array([0, 0, 0])
    i = np.array([7, 3, 5])
    p = np.array([0.5, 0.5, 0.5])
    assert set(i[top_k_pairs(u, i, p, 2)].tolist()) == {3, 5}


def test_send_variance_is_the_variance_of_zero_one_plans() -> None:
    rng = np.random.default_rng(0)
    plans = (rng.random((8, 50)) < 0.3).astype(float)
    assert send_variance(plans.mean(axis=0)) == pytest.approx(allocation_variance(plans), rel=1e-12)


def test_ece_brute_force_and_gap() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(23)
    y = (rng.random(23) < p).astype(float)
    cal = calibration(p, y, bins=4)
    order = np.argsort(p, kind="stable")
    expected = 0.0
    for b in range(4):
        idx = order[[r for r in range(23) if (r * 4) // 23 == b]]
        expected += len(idx) / 23 * abs(y[idx].mean() - p[idx].mean())
    assert cal.ece == pytest.approx(expected, rel=1e-12)
    assert cal.gap == pytest.approx(p.mean() - y.mean())
    assert cal.gap_se == pytest.approx(math.sqrt((p * (1 - p)).sum()) / 23)


def test_ece_of_a_calibrated_simulation_is_its_null() -> None:
    rng = np.random.default_rng(2)
    n = 200_000
    p = rng.uniform(0.01, 0.3, n)
    eces, gaps_z = [], []
    for _ in range(40):
        y = (rng.random(n) < p).astype(float)
        cal = calibration(p, y, bins=10)
        eces.append(cal.ece)
        gaps_z.append(cal.gap_z)
    # Perfectly calibrated: the ECE is its null (mean within 4 SE of the 40 replicates), ~0.
    assert np.mean(eces) == pytest.approx(cal.ece_null_mean, abs=4 * cal.ece_null_std / math.sqrt(40))
    assert np.std(eces) == pytest.approx(cal.ece_null_std, rel=0.35)
    assert max(eces) < 0.005
    assert abs(np.mean(gaps_z)) < 4 / math.sqrt(40) and np.std(gaps_z) == pytest.approx(1.0, rel=0.3)
    # Miscalibrated by a factor 1.2, the ECE is far above its null threshold.
    y = (rng.random(n) < 1.2 * p).astype(float)
    off = calibration(p, y)
    assert off.ece > off.ece_null_mean + 10 * off.ece_null_std


def test_psi_of_known_histograms() -> None:
    reference = np.arange(1000) + 0.5  # deciles: 100 values per bin
    counts = np.array([300, 100, 100, 100, 100, 100, 100, 100, 0, 0])
    current = np.concatenate([np.arange(c) * 0 + 100 * b + 50.0 for b, c in enumerate(counts)])
    shares = counts / counts.sum()
    by_hand = sum((max(c, PSI_FLOOR) - 0.1) * math.log(max(c, PSI_FLOOR) / 0.1) for c in shares)
    assert psi(reference, current)[0] == pytest.approx(by_hand, rel=1e-12)
    assert psi_of_shares(np.full(10, 0.1), shares) == pytest.approx(by_hand, rel=1e-12)
    assert psi(reference, reference)[0] == 0.0


@pytest.mark.parametrize("delta", [0.25, 0.5, 1.0])
def test_psi_of_a_normal_mean_shift_matches_the_closed_form(delta: float) -> None:
    # Decile bins of N(0, 1); the shifted normal's share of each bin from its CDF.
    edges = np.r_[-np.inf, norm.ppf(np.arange(1, 10) / 10), np.inf]
    shifted = np.diff(norm.cdf(edges - delta))
    exact = float(((shifted - 0.1) * np.log(shifted / 0.1)).sum())
    rng = np.random.default_rng(4)
    reference = rng.standard_normal((400_000, 2))
    current = rng.standard_normal((400_000, 2)) + np.array([delta, 0.0])
    values = psi(reference, current)
    assert values[0] == pytest.approx(exact, rel=0.05)
    assert values[1] < 1e-3


def test_psi_of_two_null_samples_is_chi_square_sized() -> None:
    rng = np.random.default_rng(5)
    values = [psi(rng.standard_normal(1500), rng.standard_normal(3000))[0] for _ in range(200)]
    # (1/n + 1/m) chi2(9): mean 9 * (1/1500 + 1/3000) = 0.009.
    assert np.mean(values) == pytest.approx(0.009, rel=0.2)
    assert max(values) < 0.2


@pytest.mark.parametrize(
    "call",
    [
        lambda: psi(np.zeros((3, 2)), np.zeros((3, 3))),
        lambda: psi(np.array([np.nan]), np.zeros(1)),
        lambda: calibration(np.zeros(3), np.zeros(2)),
        lambda: overlap_at_k(
            (np.array([0]), np.array([0]), np.array([2.0])), (np.array([0]), np.array([0]), np.array([1.0])), 1
        ),
        lambda: top_k_pairs(np.array([0]), np.array([0]), np.array([1.0]), 0),
    ],
)
def test_bad_inputs_are_rejected(call: Callable[[], object]) -> None:
    with pytest.raises(EvaluationInputError):
        call()
