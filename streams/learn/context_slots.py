"""Where a user's decision contexts live in the ``contexts`` table: a ring of slots per user.

Each user owns ``n_slots`` keys ``"<user_id>/<slot>"``. A scored batch takes the slot that
already holds it (the same batch scored again after a replay), else a free slot, else the
slot of the user's oldest batch. The table then holds exactly the user's last ``n_slots``
distinct batches, at the cost of one table write per scored user. (Keying contexts by batch
id needed three: the context, the user's list of batches and the delete of the oldest; in
faust each write costs ~0.2 ms of CPU for its changelog record, more than scoring the user.)

Which batch sits in which slot is read from the table the first time a user is seen on a
partition (``n_slots`` reads of the values' headers), then kept in a bounded LRU keyed by
(partition, user). Only the worker that owns a partition writes its contexts, so the index
stays true until the partitions move; the worker clears it on every reassignment.

The partition is part of the key because a record's partition, not its user id, says which
store a read goes to: a record keyed by user X that a producer with another partitioner (or
garbage) put on another partition reads that partition's slots of X. Cached under X alone,
that view would hide X's real slots after a rebalance: feedback would be dead-lettered as "no
decision context", and a later batch would overwrite a slot that is still needed.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from streams.errors import DecodeError
from streams.learn.state_codec import unpack_meta


def slot_key(user_id: str, slot: int) -> bytes:
    """Key of one of the user's context slots in the ``contexts`` table."""
    return f"{user_id}/{slot}".encode()


@dataclass(frozen=True, slots=True)
class SlotEntry:
    """One filled slot: which batch it holds, and ``seq``, the order in which the user's
    batches were first scored (larger is newer; stored in the context's header)."""

    slot: int
    seq: int
    batch_id: str


class ContextIndex:
    """Per (partition, user) map batch_id -> slot over the ``contexts`` table, cached in a
    bounded LRU.

    ``read(key)`` returns the stored bytes of a slot or None. It is only called for a
    (partition, user) not in the cache, and it must read that partition's store (in a faust
    agent: with the event of that partition bound). A stored value must carry ``batch_id`` and
    ``seq`` in its ``state_codec`` header. A cached user with ``n_slots`` = 8 filled takes
    ~1 KB; a user evicted from the cache costs up to ``n_slots`` reads (~25 µs each in faust)
    when next seen.
    """

    def __init__(self, n_slots: int, read: Callable[[bytes], bytes | None], max_users: int = 100_000) -> None:
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        self.n_slots = n_slots
        self.max_users = max_users
        self._read = read
        self._users: OrderedDict[tuple[int, str], dict[int, SlotEntry]] = OrderedDict()

    def claim(self, partition: int, user_id: str, batch_id: str) -> tuple[bytes, int]:
        """The key to write ``batch_id``'s context of ``user_id`` under in ``partition``'s
        store, and its ``seq``.

        The claim is recorded at once: the caller writes the value before anything else
        reads this user's slots.
        """
        entries = self._entries(partition, user_id)
        held = _holding(entries, batch_id)
        if held is not None:
            return slot_key(user_id, held.slot), held.seq
        seq = max((e.seq for e in entries.values()), default=-1) + 1
        free = [s for s in range(self.n_slots) if s not in entries]
        slot = free[0] if free else min(entries.values(), key=lambda e: e.seq).slot
        entries[slot] = SlotEntry(slot, seq, sys.intern(batch_id))  # one copy per batch, not per user
        return slot_key(user_id, slot), seq

    def find(self, partition: int, user_id: str, batch_id: str) -> bytes | None:
        """The key holding ``batch_id``'s context of ``user_id`` in ``partition``'s store, or
        None if it was never stored there or has been overwritten by ``n_slots`` newer batches."""
        held = _holding(self._entries(partition, user_id), batch_id)
        return None if held is None else slot_key(user_id, held.slot)

    def clear(self) -> None:
        """Forget every user (call when the worker's partitions are reassigned)."""
        self._users.clear()

    def __len__(self) -> int:
        return len(self._users)

    def _entries(self, partition: int, user_id: str) -> dict[int, SlotEntry]:
        where = (partition, user_id)
        entries = self._users.get(where)
        if entries is None:
            entries = self._load(user_id)
            self._users[where] = entries
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(where)
        return entries

    def _load(self, user_id: str) -> dict[int, SlotEntry]:
        # Every slot is read, though they fill from 0 up: after a partition moves, the new owner's
        # table can lack a write the old owner had not flushed to the changelog yet, and stopping
        # at that gap would hide the user's later slots too.
        entries = {}
        for slot in range(self.n_slots):
            data = self._read(slot_key(user_id, slot))
            if data is None:
                continue
            try:
                meta = unpack_meta(data)
                entries[slot] = SlotEntry(slot, int(meta["seq"]), sys.intern(str(meta["batch_id"])))
            except (DecodeError, KeyError, TypeError, ValueError):
                continue  # an unreadable slot is treated as free: the next batch overwrites it
        return entries


def _holding(entries: dict[int, SlotEntry], batch_id: str) -> SlotEntry | None:
    """The entry whose slot holds ``batch_id``, if any."""
    return next((e for e in entries.values() if e.batch_id == batch_id), None)
