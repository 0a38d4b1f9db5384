"""The allocator's watchdog (``streams.decide.watchdog``): a guarded call past its limit ends the
process, a call within it or no call at all does not. The clock and the exit are the test's."""

from __future__ import annotations

import threading

from streams.decide.watchdog import EXIT_STUCK, Watchdog
from tests.factories import ManualClock


def test_a_call_past_its_limit_ends_the_process_and_one_within_it_does_not() -> None:
    clock, exits = ManualClock(), []
    dog = Watchdog(30.0, exit=exits.append, clock=clock)
    assert not dog.check()  # no call running
    with dog.guard("send_offsets_to_transaction"):
        clock.now = 29.9
        assert not dog.check()
    clock.now = 1_000.0
    assert not dog.check() and exits == []  # the call returned: nothing to time
    with dog.guard("commit_transaction"):
        clock.now = 1_030.0
        assert dog.check()
    assert exits == [EXIT_STUCK]


def test_the_thread_fires_on_a_call_that_never_returns() -> None:
    fired = threading.Event()
    codes: list[int] = []

    def exit(code: int) -> None:
        codes.append(code)
        fired.set()

    dog = Watchdog(0.05, exit=exit, check_every_s=0.01)
    dog.start()
    try:
        with dog.guard("flush"):
            assert fired.wait(5.0)  # "blocked" here well past the limit
    finally:
        dog.stop()
    assert codes == [EXIT_STUCK]
