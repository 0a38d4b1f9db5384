"""The processors' answer to faust's recovery race: after a rebalance, one more seek of the
input partitions to their committed offsets, and only once the flow is open again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from streams.processors.recovery import StallWatch, commit_whole_runs, reseek_after_rebalance


class FlowControl:
    def __init__(self) -> None:
        self.active = False

    def is_active(self) -> bool:
        return self.active


class Signal:
    def __init__(self) -> None:
        self.receivers: list[Callable[..., Any]] = []

    def connect(self, fn: Callable[..., Any]) -> None:
        self.receivers.append(fn)

    async def send(self) -> None:
        for fn in self.receivers:
            await fn(self)


class ConsumerDouble:
    def __init__(self, app: App) -> None:
        self.app, self.seeks = app, []

    async def perform_seek(self) -> None:
        self.seeks.append((self.app.rebalancing, self.app.flow_control.is_active()))


class App:
    """The four things of a faust app the re-seek uses."""

    def __init__(self) -> None:
        self.rebalancing = True
        self.flow_control = FlowControl()
        self.on_rebalance_complete = Signal()
        self.consumer = ConsumerDouble(self)


def test_the_seek_waits_for_the_rebalance_to_end_and_the_flow_to_open() -> None:
    app = App()
    reseek_after_rebalance(app, settle_s=0.05)

    async def scenario() -> None:
        await app.on_rebalance_complete.send()  # faust sends it before its own seek and flow resume
        await asyncio.sleep(0.3)
        assert app.consumer.seeks == []  # still rebalancing: no seek yet
        app.rebalancing = False
        await asyncio.sleep(0.3)
        assert app.consumer.seeks == []  # flow still closed
        app.flow_control.active = True
        for _ in range(100):  # poll (bounded) rather than guess how long a loaded machine takes
            if app.consumer.seeks:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # and no second seek follows

    asyncio.run(scenario())
    assert app.consumer.seeks == [(False, True)]  # exactly one seek, with the flow open


def test_a_rebalance_that_never_ends_gives_up_without_seeking() -> None:
    app = App()
    reseek_after_rebalance(app, settle_s=0.05, timeout_s=0.3)

    async def scenario() -> None:
        await app.on_rebalance_complete.send()
        await asyncio.sleep(0.6)

    asyncio.run(scenario())
    assert app.consumer.seeks == []


# -- StallWatch --------------------------------------------------------------------------------


class TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class WatchedConsumer(ConsumerDouble):
    def __init__(self, app: App, tps: list[TP]) -> None:
        super().__init__(app)
        self.tps = tps
        self._committed_offset: dict[TP, int | None] = {}
        self.high: dict[TP, int | None] = {}

    def assignment(self) -> set[TP]:
        return set(self.tps)

    def highwater(self, tp: TP) -> int | None:
        return self.high.get(tp)


def watched_app() -> tuple[App, TP, TP]:
    app = App()
    app.rebalancing, app.flow_control.active = False, True
    cand, other = TP("candidates", 0), TP("changelog", 0)
    app.consumer = WatchedConsumer(app, [cand, other])
    return app, cand, other


def test_a_partition_behind_with_no_commit_over_an_interval_is_seeked() -> None:
    app, cand, other = watched_app()
    watch = StallWatch(app, {"candidates"})
    c = app.consumer
    c._committed_offset[cand], c.high[cand] = 100, 150
    c._committed_offset[other], c.high[other] = 0, 999  # not an input topic: never counts
    asyncio.run(watch.check())
    assert c.seeks == []  # behind once: it may be reading
    c._committed_offset[cand] = 120  # progress
    asyncio.run(watch.check())
    assert c.seeks == []
    asyncio.run(watch.check())  # behind, and no commit since the last check: stuck
    assert len(c.seeks) == 1 and watch.seeks == 1
    asyncio.run(watch.check())  # the seek restarts the count
    assert len(c.seeks) == 1


def test_caught_up_idle_or_rebalancing_partitions_are_left_alone() -> None:
    app, cand, _ = watched_app()
    watch = StallWatch(app, {"candidates"})
    c = app.consumer
    c._committed_offset[cand], c.high[cand] = 150, 150  # caught up and idle
    for _ in range(3):
        asyncio.run(watch.check())
    c._committed_offset[cand], c.high[cand] = None, 150  # no commit known yet
    for _ in range(3):
        asyncio.run(watch.check())
    c._committed_offset[cand], c.high[cand] = 100, 150
    app.rebalancing = True  # a rebalance between two checks resets the count
    asyncio.run(watch.check())
    app.rebalancing = False
    asyncio.run(watch.check())
    assert c.seeks == []


# -- commit_whole_runs ---------------------------------------------------------------------------


def _faust_consumer() -> Any:
    """A real faust consumer (built, never started: no broker is needed to choose offsets)."""
    import faust

    app = faust.App("banditlp-test-commit-runs", broker="kafka://127.0.0.1:1", store="memory://")
    return app.consumer


def _leading_run_end(acked: set[int], committed: int) -> int:
    """Brute force: the first offset at or after ``committed`` that is not acked."""
    o = committed
    while o in acked:
        o += 1
    return o


def test_duplicated_acks_commit_the_whole_run_where_faust_moves_one_offset() -> None:
    from faust.types import TP

    tp = TP("feedback", 0)
    processed = set(range(1200, 1400))
    for patched in (False, True):
        consumer = _faust_consumer()
        if patched:
            commit_whole_runs(consumer)
        consumer._committed_offset[tp] = 1200
        # every offset acked twice: a gap's offsets appended, then the same records acked after a seek back
        consumer._acked[tp] = sorted([*processed, *processed])
        consumer._acked_index[tp] = set(processed)
        new = consumer._new_offset(tp)
        if patched:
            assert new == _leading_run_end(processed, 1200) == 1400
            assert consumer._acked[tp] == [] and consumer._acked_index[tp] == set()
        else:  # faust-streaming's own rule: the run breaks at the first duplicate
            assert new == 1201


def test_patched_rule_keeps_holes_markers_and_gaps() -> None:
    from faust.types import TP

    tp = TP("candidates", 1)
    consumer = _faust_consumer()
    commit_whole_runs(consumer)
    consumer._committed_offset[tp] = 100
    consumer._acked[tp] = [103, 104, 105]  # records 100-102 not acked yet: nothing to commit
    consumer._acked_index[tp] = {103, 104, 105}
    assert consumer._new_offset(tp) is None
    assert consumer._acked[tp] == [103, 104, 105]
    consumer._acked[tp] = [100, 101, 103, 104]  # 102 missing: a transaction marker ends the first run
    consumer._acked_index[tp] = {100, 101, 103, 104}
    assert consumer._new_offset(tp) == 102
    consumer._committed_offset[tp] = 102
    assert consumer._new_offset(tp) == 105  # a single missing offset at the head is passed over
    consumer._committed_offset[tp] = 105
    consumer._acked[tp] = [105, 106, 110]  # a gap 107-109 the fetcher saw (control records) fills the hole
    consumer._acked_index[tp] = {105, 106, 110}
    consumer._gap[tp].addi(107, 110)
    assert consumer._new_offset(tp) == 111
    assert not consumer._gap[tp]
