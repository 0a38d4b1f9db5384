"""The assignment: deterministic, p_i-frequent, and moving no more users than the total-variation distance."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import ModelInputError
from models.tuner.assignment import (
    initial_layout,
    moved_fraction,
    relayout,
    total_variation,
    user_positions,
)

USERS = [f"user-{i}" for i in range(100_000)]


def distribution(weights: list[float], prefix: str = "arm") -> dict[str, float]:
    w = np.asarray(weights, dtype=np.float64)
    return {f"{prefix}{i:03d}": float(v) for i, v in enumerate(w / w.sum())}


def test_positions_are_the_documented_hash_and_deterministic() -> None:
    digest = hashlib.blake2b(b"exp\x1f\x1fuser-7", digest_size=8).digest()
    assert user_positions(["user-7"], "exp")[0] == int.from_bytes(digest, "big") / 2.0**64
    a = user_positions(USERS[:1000], "exp")
    np.testing.assert_array_equal(a, user_positions(USERS[:1000], "exp"))
    np.testing.assert_array_equal(a[::-1], user_positions(USERS[:1000][::-1], "exp"))  # no order dependence
    assert not np.array_equal(a, user_positions(USERS[:1000], "other"))
    assert np.all((a >= 0) & (a < 1))


def test_frequencies_match_probabilities_within_three_standard_errors() -> None:
    p = distribution([0.05, 0.3, 0.1, 0.25, 0.01, 0.29])
    layout = initial_layout(p)
    arms = np.array(layout.assign(user_positions(USERS, "exp")))
    n = len(USERS)
    for arm, prob in p.items():
        share = float(np.mean(arms == arm))
        assert abs(share - prob) <= 3 * np.sqrt(prob * (1 - prob) / n), arm
    # the same holds after a relayout, whose arms own several intervals
    q = distribution([0.2, 0.1, 0.1, 0.3, 0.05, 0.25])
    arms = np.array(relayout(layout, q).assign(user_positions(USERS, "exp")))
    for arm, prob in q.items():
        assert abs(float(np.mean(arms == arm)) - prob) <= 3 * np.sqrt(prob * (1 - prob) / n), arm


def test_a_small_change_moves_about_tv_and_far_fewer_than_a_fresh_hash() -> None:
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(50))
    p = distribution(list(w))
    q = distribution(list(w * np.exp(0.1 * rng.normal(size=50))))
    tv = total_variation(p, q)
    before, after = initial_layout(p), relayout(initial_layout(p), q)
    u = user_positions(USERS, "exp")
    moved = float(np.mean(np.array(before.assign(u)) != np.array(after.assign(u))))
    assert moved <= tv + 3 * np.sqrt(tv / len(USERS))
    fresh = np.array(initial_layout(q).assign(user_positions(USERS, "exp", salt="v2")))
    moved_fresh = float(np.mean(np.array(before.assign(u)) != fresh))
    overlap = sum(p[a] * q[a] for a in p)
    assert abs(moved_fresh - (1 - overlap)) < 0.01  # independent positions: 1 − Σ p_a q_a
    assert moved < 0.1 * moved_fresh


weights = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=30).filter(lambda w: sum(w) > 1e-3)


@settings(max_examples=200, deadline=None)
@given(w_old=weights, w_new=weights, shift=st.integers(0, 5))
def test_relayout_keeps_masses_exact_and_moves_exactly_tv(w_old: list[float], w_new: list[float], shift: int) -> None:
    p = distribution(w_old)
    q = {f"arm{i + shift:03d}": v for i, v in enumerate(distribution(w_new).values())}  # arms come and go
    before = initial_layout(p)
    after = relayout(before, q)
    masses = after.masses()
    for arm in set(q) | set(masses):
        assert masses.get(arm, 0.0) == pytest.approx(q.get(arm, 0.0), abs=1e-9)
    assert moved_fraction(before, after) == pytest.approx(total_variation(p, q), abs=1e-9)
    # a stateless cumulative layout of q is never better than the minimum
    assert moved_fraction(before, initial_layout(q)) >= total_variation(p, q) - 1e-9


def test_a_sequence_of_small_changes_stays_exact_and_compact() -> None:
    rng = np.random.default_rng(1)
    w = rng.dirichlet(np.ones(40))
    layout = initial_layout(distribution(list(w)))
    for _ in range(50):
        w = w * np.exp(0.05 * rng.normal(size=40))
        q = distribution(list(w))
        new = relayout(layout, q)
        assert moved_fraction(layout, new) == pytest.approx(total_variation(layout.masses(), q), abs=1e-9)
        layout = new
    assert len(layout.owners) < 40 * 10  # fragments merge: about 6 intervals an arm after 50 steps


def test_invalid_distributions_raise() -> None:
    with pytest.raises(ModelInputError):
        initial_layout({"a": 0.5, "b": 0.6})
    with pytest.raises(ModelInputError):
        initial_layout({})
