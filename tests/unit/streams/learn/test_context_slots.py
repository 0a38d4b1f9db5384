"""The context slot ring against a reference: each (partition, user)'s last n distinct batches,
in the order first scored, are found; nothing older is; a user never holds more than n keys in a
partition; and all of that survives losing the in-memory index (restart, rebalance, LRU
eviction) and records of a user arriving on partitions other than its own."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.learn.context_slots import ContextIndex, slot_key
from streams.learn.state_codec import pack


class Stores:
    """One table per partition, and the partition reads go to (faust's bound event)."""

    def __init__(self) -> None:
        self.tables: defaultdict[int, dict[bytes, bytes]] = defaultdict(dict)
        self.bound = 0

    def read(self, key: bytes) -> bytes | None:
        return self.tables[self.bound].get(key)


def score(index: ContextIndex, stores: Stores, user: str, batch: str, partition: int = 0) -> bytes:
    """What the scorer does: bind the record's partition, claim a slot, write the context there."""
    stores.bound = partition
    key, seq = index.claim(partition, user, batch)
    stores.tables[partition][key] = pack({"features": np.zeros((2, 3), np.float32)}, {"batch_id": batch, "seq": seq})
    return key


def find(index: ContextIndex, stores: Stores, user: str, batch: str, partition: int = 0) -> bytes | None:
    """What the learner does: bind the feedback's partition and look the batch up."""
    stores.bound = partition
    return index.find(partition, user, batch)


# an op: score (partition, user, batch), learn (look up partition, user, batch), or lose the index
ops = st.lists(
    st.one_of(
        st.tuples(st.just("score"), st.integers(0, 2), st.integers(0, 3), st.integers(0, 12)),
        st.tuples(st.just("find"), st.integers(0, 2), st.integers(0, 3), st.integers(0, 12)),
        st.tuples(st.just("restart"), st.just(0), st.just(0), st.just(0)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, n_slots=st.integers(1, 5), max_users=st.integers(1, 5))
def test_the_ring_keeps_exactly_each_users_last_batches(ops, n_slots: int, max_users: int) -> None:
    stores = Stores()
    index = ContextIndex(n_slots, stores.read, max_users=max_users)
    history: dict[tuple[int, str], list[str]] = {}  # distinct batches per (partition, user), first-scored order
    for op, p, u, b in ops:
        user, batch = f"u{u}", f"b{b}"
        if op == "restart":
            index = ContextIndex(n_slots, stores.read, max_users=max_users)
        elif op == "score":
            seen = history.setdefault((p, user), [])
            held = find(index, stores, user, batch, p) if batch in seen[-n_slots:] else None
            key = score(index, stores, user, batch, p)
            if held is not None:  # a batch still held is scored again in its own slot
                assert key == held
            else:  # a new batch, or one overwritten since, is the user's newest
                if batch in seen:
                    seen.remove(batch)
                seen.append(batch)
        else:
            key = find(index, stores, user, batch, p)
            kept = history.get((p, user), [])[-n_slots:]
            if batch in kept:
                assert key is not None and key in stores.tables[p]
            else:
                assert key is None
    for (p, user), seen in history.items():
        keys = [slot_key(user, s) for s in range(n_slots) if slot_key(user, s) in stores.tables[p]]
        assert len(keys) == min(n_slots, len(seen))
        fresh = ContextIndex(n_slots, stores.read)
        assert all(find(fresh, stores, user, b, p) is not None for b in seen[-n_slots:])
        assert all(find(fresh, stores, user, b, p) is None for b in seen[:-n_slots])


def test_a_users_record_on_another_partition_hides_none_of_its_slots() -> None:
    """The case seen in a scale-out run: garbage feedback keyed by u1 on partition 3 came
    first after a rebalance; the index must not answer for partition 0 from that read."""
    stores = Stores()
    score(ContextIndex(4, stores.read), stores, "u1", "b0", partition=0)
    index = ContextIndex(4, stores.read)  # the rebalance cleared it
    assert find(index, stores, "u1", "ghost", partition=3) is None
    assert find(index, stores, "u1", "b0", partition=0) == slot_key("u1", 0)
    assert score(index, stores, "u1", "b1", partition=0) == slot_key("u1", 1)  # not over b0


def test_a_cached_user_is_not_read_again_and_eviction_reloads() -> None:
    stores = Stores()
    reads: list[bytes] = []

    def read(key: bytes) -> bytes | None:
        reads.append(key)
        return stores.read(key)

    index = ContextIndex(3, read, max_users=1)
    score(index, stores, "a", "b1")
    assert reads == [slot_key("a", s) for s in range(3)]
    score(index, stores, "a", "b2")
    assert len(reads) == 3  # cached
    score(index, stores, "z", "b1")  # evicts "a"
    assert find(index, stores, "a", "b2") == slot_key("a", 1)
    assert reads[6:] == [slot_key("a", s) for s in range(3)]
    index.clear()
    assert len(index) == 0 and find(index, stores, "a", "b1") == slot_key("a", 0)


def test_a_gap_in_the_slots_hides_nothing_after_it() -> None:
    """After a partition moves, its new owner may lack a slot the old owner never flushed to
    the changelog; the user's other slots must still be found."""
    stores = Stores()
    index = ContextIndex(4, stores.read)
    for b in ("b1", "b2", "b3"):
        score(index, stores, "a", b)
    del stores.tables[0][slot_key("a", 0)]  # the lost write
    fresh = ContextIndex(4, stores.read)
    assert find(fresh, stores, "a", "b1") is None
    assert find(fresh, stores, "a", "b2") == slot_key("a", 1) and find(fresh, stores, "a", "b3") == slot_key("a", 2)
    key, seq = fresh.claim(0, "a", "b4")  # a free slot, newest of all
    assert key in (slot_key("a", 0), slot_key("a", 3)) and seq == 3


def test_an_unreadable_slot_counts_as_free() -> None:
    table = {slot_key("a", 0): b"\x00\x00\x00\x05junk!", slot_key("a", 1): b""}
    index = ContextIndex(2, table.get)
    key, seq = index.claim(0, "a", "b1")
    assert key == slot_key("a", 0) and seq == 0


def test_no_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="n_slots"):
        ContextIndex(0, {}.get)
