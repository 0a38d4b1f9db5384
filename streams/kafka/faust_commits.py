"""faust's choice of the offset to commit, replaced by one that commits whole runs of acked offsets."""

from __future__ import annotations

from typing import Any

import numpy as np


def install_commit_whole_runs(app: Any) -> None:
    """Have ``app`` (a faust App) build its consumer with :func:`commit_whole_runs` applied."""
    build_consumer = app._new_consumer  # faust builds its consumer when the worker starts

    def new_consumer() -> Any:
        consumer = build_consumer()
        commit_whole_runs(consumer)
        return consumer

    app._new_consumer = new_consumer


def commit_whole_runs(consumer: Any) -> None:
    """Replace faust's choice of the offset to commit on ``consumer`` (a faust ``Consumer``) by one
    that commits the whole leading run of acked offsets at once.

    Why: faust keeps each partition's acked offsets in a list (``_acked``) and commits the end of
    its first run of consecutive numbers. The offsets of a "gap" (a jump in the offsets it
    reads, which it takes for control records) are appended to that list without looking at what
    it holds, and a seek backwards (a restart's recovery, ``reseek_after_rebalance``) makes
    records it had counted as gap arrive and be acked as well. Each such offset is then in the
    list twice, the run breaks at every duplicate, and the commit moves by one offset per commit
    interval while hundreds arrive: in a soak, a restarted worker's feedback partitions stayed
    committed 12,000 records behind for four minutes, and a later restart re-read them all.

    The rule is otherwise faust-streaming 0.15's: gaps up to the largest acked offset count as
    acked; nothing is committed while the head has a hole of more than one offset (a single
    missing offset is a transaction marker); the committed run leaves the list and its index.
    """
    acked_lists = consumer._acked
    indexes = consumer._acked_index
    gaps = consumer._gap
    committed_offsets = consumer._committed_offset

    def new_offset(tp: Any) -> int | None:
        acked = acked_lists[tp]
        if not acked:
            return None
        top = max(acked)
        gap = gaps[tp]
        if gap:
            filled = sorted(gap.overlap(0, top), key=lambda iv: iv.begin)
            if filled:
                for iv in filled:
                    acked.extend(range(iv.begin, iv.end))
                gap.chop(0, max(filled[-1].end - 1, top + 1))
        offsets = np.unique(np.asarray(acked, dtype=np.int64))
        acked[:] = offsets.tolist()
        committed = committed_offsets[tp]
        if committed is not None and int(offsets[0]) - committed > 1:
            return None
        breaks = np.flatnonzero(np.diff(offsets) != 1)
        run = int(breaks[0]) + 1 if breaks.size else offsets.size
        done = acked[:run]
        del acked[:run]
        indexes[tp].difference_update(done)
        return done[-1] + 1

    consumer._new_offset = new_offset
