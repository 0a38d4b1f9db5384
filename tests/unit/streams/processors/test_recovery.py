"""The processors' answer to faust's recovery race: after a rebalance, one more seek of the
input partitions to their committed offsets, and only once the flow is open again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from streams.processors.recovery import StallWatch, reseek_after_rebalance


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
