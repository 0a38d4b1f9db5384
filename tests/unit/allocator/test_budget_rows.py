"""``allocator.budget_rows.mean_budget_rows``: every draw's budget rows, then the same budgets on the
posterior means, against the rows written out by hand; malformed inputs are refused."""

from __future__ import annotations

import numpy as np
import pytest

from allocator.budget_rows import mean_budget_rows
from allocator.errors import ProblemValidationError


def test_rows_by_hand() -> None:
    draws = np.array([[[1.0, 2.0, 3.0], [0.5, 0.0, 1.0]], [[4.0, 5.0, 6.0], [0.0, 2.0, 0.0]]])  # (K=2, L=2, E=3)
    means = np.array([[2.5, 3.5, 4.5], [0.25, 1.0, 0.5]])
    rows, limits = mean_budget_rows(draws, means, np.array([7.0, 1.5]))
    assert rows.shape == (2, 4, 3)
    for k in range(2):
        np.testing.assert_array_equal(rows[k], [draws[k, 0], draws[k, 1], means[0], means[1]])
    np.testing.assert_array_equal(limits, [7.0, 1.5, 7.0, 1.5])
    rows[0, 2, 0] = -1.0  # the result owns its memory: one draw's mean row is not another's
    assert rows[1, 2, 0] == 2.5 and means[0, 0] == 2.5


def test_no_budget_gives_no_rows() -> None:
    rows, limits = mean_budget_rows(np.zeros((3, 0, 4)), np.zeros((0, 4)), np.zeros(0))
    assert rows.shape == (3, 0, 4) and limits.shape == (0,)


@pytest.mark.parametrize(
    ("draws", "means", "budget", "message"),
    [
        (np.zeros((2, 4)), np.zeros((2, 4)), np.zeros(2), "disagree"),  # draws without K
        (np.zeros((1, 2, 4)), np.zeros((2, 3)), np.zeros(2), "disagree"),
        (np.zeros((1, 2, 4)), np.zeros((2, 4)), np.zeros(3), "disagree"),
        (np.zeros((1, 1, 2)), np.array([[0.1, np.nan]]), np.ones(1), "finite"),
        (np.zeros((1, 1, 2)), np.array([[np.inf, 0.1]]), np.ones(1), "finite"),
    ],
)
def test_malformed_inputs_are_refused(draws: np.ndarray, means: np.ndarray, budget: np.ndarray, message: str) -> None:
    with pytest.raises(ProblemValidationError, match=message):
        mean_budget_rows(draws, means, budget)
