"""The users table's value: round trip, dedup by digest, the seen bound, and values written
before the digests (ids in the header) still read."""

from __future__ import annotations

import hashlib

import numpy as np

from models.random_effects import RandomEffectConfig
from streams.learn.state_codec import pack
from streams.learn.user_state import UserState, feedback_digest


def prior(k: int = 3) -> UserState:
    return UserState.prior(k, 25.0)


def test_round_trip_and_dedup() -> None:
    state = prior()
    for i in range(5):
        state = state.absorbed(state.A + i, state.b + 1.0, f"d{i}#i{i}", seen_limit=256)
    back = UserState.decode(state.encode())
    np.testing.assert_array_equal(back.A, state.A)
    np.testing.assert_array_equal(back.b, state.b)
    assert back.n_obs == 5 and back.seen.tolist() == state.seen.tolist()
    assert all(back.has_seen(f"d{i}#i{i}") for i in range(5))
    assert not back.has_seen("d5#i5") and not back.has_seen("d0#i1")


def test_only_the_last_seen_limit_ids_are_remembered() -> None:
    state = prior()
    for i in range(10):
        state = state.absorbed(state.A, state.b, f"f{i}", seen_limit=4)
    assert state.n_obs == 10 and len(state.seen) == 4
    assert [state.has_seen(f"f{i}") for i in range(10)] == [False] * 6 + [True] * 4


def test_a_value_with_the_ids_in_its_header_still_reads() -> None:
    A, b = RandomEffectConfig(2, 25.0).prior()
    legacy = pack({"A": A, "b": b}, {"seen": ["x#1", "y#2"], "n": 2})
    state = UserState.decode(legacy)
    assert state.n_obs == 2 and state.has_seen("x#1") and state.has_seen("y#2") and not state.has_seen("z#3")


def test_the_digest_is_stable_and_64_bit() -> None:
    # BLAKE2b-64 read little-endian: the same in every process, unlike Python's salted hash()
    want = int.from_bytes(hashlib.blake2b(b"abc", digest_size=8).digest(), "little")
    assert int(feedback_digest("abc")) == want and feedback_digest("abc").dtype == np.uint64
