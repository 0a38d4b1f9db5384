"""The context slot ring against a reference: each user's last n distinct batches, in the order
first scored, are found; nothing older is; a user never holds more than n keys; and all of
that survives losing the in-memory index (restart, rebalance, LRU eviction)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.context_slots import ContextIndex, slot_key
from streams.state_codec import pack


def score(index: ContextIndex, table: dict[bytes, bytes], user: str, batch: str) -> bytes:
    """What the scorer does: claim a slot and write the context there."""
    key, seq = index.claim(user, batch)
    table[key] = pack({"features": np.zeros((2, 3), np.float32)}, {"batch_id": batch, "seq": seq})
    return key


# an op: score (user, batch), learn (look up user, batch), or lose the index
ops = st.lists(st.one_of(
    st.tuples(st.just("score"), st.integers(0, 3), st.integers(0, 12)),
    st.tuples(st.just("find"), st.integers(0, 3), st.integers(0, 12)),
    st.tuples(st.just("restart"), st.just(0), st.just(0)),
), max_size=120)


@settings(max_examples=200, deadline=None)
@given(ops=ops, n_slots=st.integers(1, 5), max_users=st.integers(1, 5))
def test_the_ring_keeps_exactly_each_users_last_batches(ops, n_slots: int, max_users: int) -> None:
    table: dict[bytes, bytes] = {}
    index = ContextIndex(n_slots, table.get, max_users=max_users)
    history: dict[str, list[str]] = {}  # distinct batches per user, in the order first scored
    for op, u, b in ops:
        user, batch = f"u{u}", f"b{b}"
        if op == "restart":
            index = ContextIndex(n_slots, table.get, max_users=max_users)
        elif op == "score":
            seen = history.setdefault(user, [])
            held = index.find(user, batch) if batch in seen[-n_slots:] else None
            key = score(index, table, user, batch)
            if held is not None:  # a batch still held is scored again in its own slot
                assert key == held
            else:  # a new batch, or one overwritten since, is the user's newest
                if batch in seen:
                    seen.remove(batch)
                seen.append(batch)
        else:
            key = index.find(user, batch)
            kept = history.get(user, [])[-n_slots:]
            if batch in kept:
                assert key is not None and key in table
            else:
                assert key is None
    for user, seen in history.items():
        keys = [slot_key(user, s) for s in range(n_slots) if slot_key(user, s) in table]
        assert len(keys) == min(n_slots, len(seen))
        fresh = ContextIndex(n_slots, table.get)
        assert all(fresh.find(user, b) is not None for b in seen[-n_slots:])
        assert all(fresh.find(user, b) is None for b in seen[:-n_slots])


def test_a_cached_user_is_not_read_again_and_eviction_reloads() -> None:
    table: dict[bytes, bytes] = {}
    reads: list[bytes] = []

    def read(key: bytes) -> bytes | None:
        reads.append(key)
        return table.get(key)

    index = ContextIndex(3, read, max_users=1)
    score(index, table, "a", "b1")
    assert reads == [slot_key("a", s) for s in range(3)]
    score(index, table, "a", "b2")
    assert len(reads) == 3  # cached
    score(index, table, "z", "b1")  # evicts "a"
    assert index.find("a", "b2") == slot_key("a", 1)
    assert reads[6:] == [slot_key("a", s) for s in range(3)]
    index.clear()
    assert len(index) == 0 and index.find("a", "b1") == slot_key("a", 0)


def test_a_gap_in_the_slots_hides_nothing_after_it() -> None:
    """After a partition moves, its new owner may lack a slot the old owner never flushed to
    the changelog; the user's other slots must still be found."""
    table: dict[bytes, bytes] = {}
    index = ContextIndex(4, table.get)
    for b in ("b1", "b2", "b3"):
        score(index, table, "a", b)
    del table[slot_key("a", 0)]  # the lost write
    fresh = ContextIndex(4, table.get)
    assert fresh.find("a", "b1") is None
    assert fresh.find("a", "b2") == slot_key("a", 1) and fresh.find("a", "b3") == slot_key("a", 2)
    key, seq = fresh.claim("a", "b4")  # a free slot, newest of all
    assert key in (slot_key("a", 0), slot_key("a", 3)) and seq == 3


def test_an_unreadable_slot_counts_as_free() -> None:
    table = {slot_key("a", 0): b"\x00\x00\x00\x05junk!", slot_key("a", 1): b""}
    index = ContextIndex(2, table.get)
    key, seq = index.claim("a", "b1")
    assert key == slot_key("a", 0) and seq == 0


def test_no_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="n_slots"):
        ContextIndex(0, {}.get)
