"""AllocationProblem validation, the .npz round trip, grouping and the violation report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from allocator.errors import ProblemValidationError
from allocator.instances import random_instance
from allocator.problem import PROBLEM_KEYS, AllocationProblem, load_problem, save_problem
from allocator.violations import violations


def base_arrays() -> dict:
    """A valid 5-pair problem: users 0,0,1,1,2; providers 0,1,0,1,1; one budget."""
    return dict(
        user=np.array([0, 0, 1, 1, 2]),
        item=np.array([10, 11, 10, 12, 11]),
        reward=np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
        cost=np.array([[1.0, 1.0, 2.0, 2.0, 1.0]]),
        budget=np.array([3.0]),
        provider=np.array([0, 1, 0, 1, 1]),
        provider_min=np.array([1.0, -np.inf]),
        provider_max=np.array([np.inf, 2.0]),
        user_cap=np.array([1.0, 1.0, 1.0]),
    )


def with_(**changes) -> dict:
    a = base_arrays()
    a.update(changes)
    return a


def _nan_at(name: str, idx) -> np.ndarray:
    arr = base_arrays()[name].astype(float).copy()
    arr[idx] = np.nan
    return arr


INVALID = [
    (with_(reward=_nan_at("reward", 3)), r"reward: NaN at index 3"),
    (with_(reward=np.array([1.0, np.inf, 3, 4, 5])), r"reward: infinite value inf at index 1"),
    (with_(cost=np.array([[1.0, 1.0, -np.inf, 2.0, 1.0]])), r"cost: infinite value -inf at index \(0, 2\)"),
    (with_(budget=np.array([np.inf])), r"budget: infinite value inf at index 0"),
    (with_(budget=np.array([np.nan])), r"budget: NaN at index 0"),
    (with_(provider_min=np.array([np.nan, 0.0])), r"provider_min: NaN at index 0"),
    (with_(provider_min=np.array([0.0, np.inf])), r"provider_min: infinite value inf at index 1"),
    (with_(provider_max=np.array([-np.inf, 2.0])), r"provider_max: infinite value -inf at index 0"),
    (
        with_(provider_min=np.array([3.0, 0.0]), provider_max=np.array([2.0, 2.0])),
        r"provider_min > provider_max for provider 0: 3.0 > 2.0",
    ),
    (with_(user=np.array([0, 0, -1, 1, 2])), r"user: negative id -1 at index 2"),
    (with_(user=np.array([0.0, 0, 1, 1, 2])), r"user: expected an integer dtype, got float64"),
    (with_(provider=np.array([0, 1, 0, 5, 1])), r"provider: id 5 at index 3 is out of range for 2 providers"),
    (with_(user=np.array([0, 0, 1, 1, 3])), r"user: id 3 at index 4 is out of range for 3 user caps"),
    (with_(reward=np.ones(4)), r"reward: expected shape \(5,\), got \(4,\)"),
    (with_(cost=np.ones(5)), r"cost: expected shape \(n_budgets, 5\), got \(5,\)"),
    (with_(budget=np.ones(2)), r"budget: expected shape \(1,\) \(one per cost row\), got \(2,\)"),
    (with_(item=np.arange(4)), r"item: expected shape \(5,\) like user, got \(4,\)"),
    (with_(user_cap=np.array([1.0, -1.0, 1.0])), r"user_cap: negative cap at index 1"),
    (with_(user_cap=np.array([1.0, np.nan, 1.0])), r"user_cap: NaN at index 1"),
    (with_(reward=np.array(["a", "b", "c", "d", "e"])), r"reward: expected a real numeric dtype"),
    (with_(provider_min=np.zeros(3)), r"provider_min/provider_max: expected equal 1-d shapes"),
]


@pytest.mark.parametrize(("arrays", "match"), INVALID)
def test_invalid_inputs_raise_a_clear_error(arrays: dict, match: str) -> None:
    with pytest.raises(ProblemValidationError, match=match):
        AllocationProblem(**arrays)


def test_valid_problem_sizes_and_grouping() -> None:
    p = AllocationProblem(**with_(user=np.array([2, 0, 1, 0, 1])))
    assert (p.n_pairs, p.n_users, p.n_providers, p.n_budgets) == (5, 3, 2, 1)
    order, off = p.user_order, p.user_offsets
    for u in range(p.n_users):  # the CSR grouping lists exactly each user's pairs, in input order
        assert list(order[off[u] : off[u + 1]]) == list(np.flatnonzero(p.user == u))
    assert not p.reward.flags.writeable


def test_scalar_user_cap() -> None:
    p = AllocationProblem(**with_(user_cap=np.array(2.0)))
    assert p.n_users == 3 and list(p.caps) == [2.0, 2.0, 2.0]


def test_npz_round_trip(tmp_path: Path) -> None:
    p = random_instance(50, (2, 6), 5, 2, (1, 3), 0.7, seed=3)
    save_problem(p, tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as f:
        assert sorted(f.files) == sorted(PROBLEM_KEYS)
        assert f["user"].dtype == np.int64 and f["cost"].shape == (2, p.n_pairs)
    q = load_problem(tmp_path / "p.npz")
    for k in PROBLEM_KEYS:
        np.testing.assert_array_equal(getattr(p, k), getattr(q, k))


def test_load_rejects_missing_arrays(tmp_path: Path) -> None:
    a = base_arrays()
    del a["budget"]
    np.savez(tmp_path / "bad.npz", **a)
    with pytest.raises(ProblemValidationError, match=r"missing arrays \['budget'\]"):
        load_problem(tmp_path / "bad.npz")


def test_violations_by_hand() -> None:
    p = AllocationProblem(**base_arrays())
    x = np.array([1.0, 0.5, 0.0, 1.0, 1.0])
    # users: 1.5 (cap 1) -> 0.5 over; 1.0; 1.0.  budget: 1 + .5 + 2 + 1 = 4.5 > 3 -> 1.5 over
    # providers: p0 = 1.0 (min 1 ok); p1 = 0.5 + 1 + 1 = 2.5 > max 2 -> 0.5 over
    v = violations(p, x)
    np.testing.assert_allclose(v.user_cap, [0.5, 0.0, 0.0])
    np.testing.assert_allclose(v.budget, [1.5])
    np.testing.assert_allclose(v.budget_rel, [0.5])  # 1.5 / max(|3|, max c = 2)
    np.testing.assert_allclose(v.provider_max, [0.0, 0.5])
    np.testing.assert_allclose(v.provider_min, [0.0, 0.0])
    assert v.max_violation == 1.5 and v.max_relative_violation == 0.5
    kinds = {(c.kind, c.index) for c in v.listing()}
    assert kinds == {("user_cap", 0), ("budget", 0), ("provider_max", 1)}
