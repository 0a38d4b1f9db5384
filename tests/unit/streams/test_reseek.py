"""The processors' answer to faust's recovery race: after a rebalance, one more seek of the
input partitions to their committed offsets, and only once the flow is open again."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from streams.processors import _reseek_after_rebalance


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


class Consumer:
    def __init__(self, app: "App") -> None:
        self.app, self.seeks = app, []

    async def perform_seek(self) -> None:
        self.seeks.append((self.app.rebalancing, self.app.flow_control.is_active()))


class App:
    """The four things of a faust app the re-seek uses."""

    def __init__(self) -> None:
        self.rebalancing = True
        self.flow_control = FlowControl()
        self.on_rebalance_complete = Signal()
        self.consumer = Consumer(self)


def test_the_seek_waits_for_the_rebalance_to_end_and_the_flow_to_open() -> None:
    app = App()
    _reseek_after_rebalance(app, settle_s=0.05)

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
    _reseek_after_rebalance(app, settle_s=0.05, timeout_s=0.3)

    async def scenario() -> None:
        await app.on_rebalance_complete.send()
        await asyncio.sleep(0.6)

    asyncio.run(scenario())
    assert app.consumer.seeks == []
