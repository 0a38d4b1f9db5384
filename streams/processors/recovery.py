"""Workarounds for faust's rebalance and table-write races, each with the reason it exists."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

log = logging.getLogger("banditlp.processors")


def reseek_after_rebalance(app: Any, settle_s: float = 0.5, timeout_s: float = 120.0) -> None:
    """Once each rebalance is over, seek the input partitions to their committed offsets again.

    Why: faust resumes the stream partitions, seeks them to the committed offsets and only
    then reopens its flow control. Records its fetcher already holds from before the seek are
    still delivered in that gap: the stream skips them (flow closed), but their offsets have
    become the consumer's read offsets, so the same records fetched again after the seek are
    dropped as already read. A restarted worker with records waiting on its partitions then
    never scores them (faust-streaming issues #216 and #596 describe the race). A second seek,
    with the flow open, re-reads from the committed offsets: at worst a few records are
    processed twice, which every consumer downstream tolerates (the allocator keeps the first
    scores record of a (batch, user), the learner drops a feedback id it has seen).
    """

    async def reseek() -> None:
        deadline = time.monotonic() + timeout_s
        while app.rebalancing or not app.flow_control.is_active():
            if time.monotonic() > deadline:
                log.warning("rebalance did not end within %.0f s; input partitions not re-seeked", timeout_s)
                return
            await asyncio.sleep(0.1)
        await asyncio.sleep(settle_s)
        if not app.rebalancing:
            await app.consumer.perform_seek()
            log.info("input partitions re-seeked to their committed offsets after the rebalance")

    async def on_rebalance_complete(sender: Any = None, **_: Any) -> None:
        asyncio.ensure_future(reseek())

    app.on_rebalance_complete.connect(on_rebalance_complete)


class StallWatch:
    """Seeks the input partitions back to their committed offsets when one is stuck: it has
    records past its committed offset (highwater > committed) and its committed offset did
    not move between two checks, with no rebalance in between.

    Why: the race ``reseek_after_rebalance`` answers may strike at any rebalance, including
    one that starts while records are in flight. Records it skips are not committed, so they
    are not lost, but they would sit unread until the next rebalance. A partition that
    progresses commits every ``broker_commit_interval`` (1 s), so a whole check interval
    without a commit while behind means nothing is reading it.
    """

    def __init__(self, app: Any, topics: set[str]) -> None:
        self.app, self.topics = app, topics
        self._last: dict[Any, int] = {}  # tp -> committed offset at the last check, if behind
        self.seeks = 0

    async def check(self) -> None:
        app = self.app
        if app.rebalancing or not app.flow_control.is_active():
            self._last = {}
            return
        consumer = app.consumer
        behind: dict[Any, int] = {}
        for tp in consumer.assignment():
            if tp.topic not in self.topics:
                continue
            committed, high = consumer._committed_offset.get(tp), consumer.highwater(tp)
            if committed is not None and high is not None and high > committed:
                behind[tp] = committed
        stuck = sorted(f"{tp.topic}[{tp.partition}]@{off}" for tp, off in behind.items() if self._last.get(tp) == off)
        self._last = behind
        if stuck:
            log.warning(
                "input partitions stuck behind their highwater: %s; seeking to committed offsets", ", ".join(stuck)
            )
            self.seeks += 1
            self._last = {}
            await consumer.perform_seek()


def bind_event(event: Any) -> None:
    """Make ``event`` the current event of this agent's task, for the table write that follows.

    A table write needs a current event to pick its changelog partition (the event's own),
    and take_events() leaves none. Only the task-local context variable is set: setting the
    stream's ``current_event`` attribute instead races with take_events' buffer filler, which
    reads it, and makes it buffer a stale event in place of a new one.
    """
    import faust.streams

    faust.streams._current_event.set(weakref.ref(event))
