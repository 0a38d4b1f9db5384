"""The version guard (models/version_guard.py) against brute-force windows and its defining inequality."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import ModelInputError
from models.version_guard import VersionGuard, VersionGuardConfig, version_factor

sums = st.lists(st.floats(min_value=1e-6, max_value=1e3, allow_nan=False), min_size=1, max_size=8)


@given(sums)
def test_the_factor_is_the_least_scale_at_or_above_one_that_lifts_the_newest_to_every_version(
    values: list[float],
) -> None:
    g = version_factor(values)
    newest = values[-1]
    assert g >= 1.0
    assert all(g * newest >= v * (1 - 1e-12) for v in values)
    # least: a scale a hair smaller leaves some version above the newest, unless g is 1
    if g > 1.0:
        assert any(g * (1 - 1e-9) * newest < v for v in values)


def test_a_newest_version_that_costs_more_than_the_others_gives_one() -> None:
    assert version_factor([2.0, 3.0, 5.0]) == 1.0
    assert version_factor([4.0]) == 1.0
    assert version_factor([6.0, 2.0, 3.0]) == pytest.approx(2.0)


@pytest.mark.parametrize("values", [[], [1.0, float("nan")], [1.0, -0.5], [float("inf"), 1.0], [1.0, 0.0]], ids=str)
def test_sums_that_give_no_finite_factor_are_rejected(values: list[float]) -> None:
    with pytest.raises(ModelInputError):
        version_factor(values)


def test_all_versions_costing_nothing_give_one() -> None:
    assert version_factor([0.0, 0.0]) == 1.0


def test_the_guard_compares_the_last_versions_only_as_a_brute_force_window_does() -> None:
    """Toy models: model k's cost of a pair is level_k * base(pair); the guard's factor after each
    push is the brute-force max over the last M levels' totals over the newest's."""
    rng = np.random.default_rng(4)
    X = rng.random((50, 3))
    base = X.sum(axis=1)
    levels = rng.uniform(0.5, 2.0, size=12)
    m = 4
    guard: VersionGuard[float] = VersionGuard(VersionGuardConfig(versions=m), lambda level, x: level * x.sum(axis=1))
    for k, level in enumerate(levels):
        guard.push(float(level))
        window = levels[max(0, k - m + 1) : k + 1]
        want = max(1.0, max(w * base.sum() for w in window) / (window[-1] * base.sum()))
        assert guard.factor(X) == pytest.approx(want, rel=1e-12)
    assert len(guard.models) == m


def test_an_off_guard_an_empty_guard_and_no_pairs_give_one() -> None:
    def cost(level: float, x: np.ndarray) -> np.ndarray:
        return level * np.ones(len(x))

    off: VersionGuard[float] = VersionGuard(VersionGuardConfig(versions=1), cost)
    for level in (3.0, 1.0):
        off.push(level)
    assert off.factor(np.ones((5, 2))) == 1.0
    on: VersionGuard[float] = VersionGuard(VersionGuardConfig(versions=3), cost)
    assert on.factor(np.ones((5, 2))) == 1.0
    on.push(3.0)
    on.push(1.0)
    assert on.factor(np.ones((5, 2))) == pytest.approx(3.0)
    assert on.factor(np.ones((0, 2))) == 1.0


def test_a_guard_of_no_versions_is_rejected() -> None:
    with pytest.raises(ModelInputError, match="versions"):
        VersionGuardConfig(versions=0)
