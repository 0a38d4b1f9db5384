"""A stop signal turns the worker's static membership dynamic, so that aiokafka's close path
sends LeaveGroup (it never does for a static member); before the consumer exists it is a no-op.
The broker's side (the member is gone once the worker exits) is in
tests/integration/test_failover.py."""

from __future__ import annotations

from types import SimpleNamespace

import aiokafka.consumer.group_coordinator as gc

from streams.processors.membership import group_coordinator, leave_group_on_stop


def app_with(coordinator: object) -> SimpleNamespace:
    """The attribute path faust (0.15) and aiokafka (0.14) keep: app._consumer._thread._consumer._coordinator."""
    client = SimpleNamespace(_coordinator=coordinator)
    return SimpleNamespace(_consumer=SimpleNamespace(_thread=SimpleNamespace(_consumer=client)))


def test_a_static_member_is_made_dynamic_so_that_close_leaves_the_group() -> None:
    coordinator = SimpleNamespace(_group_instance_id="app-0")
    assert group_coordinator(app_with(coordinator)) is coordinator
    assert leave_group_on_stop(app_with(coordinator)) is True
    assert coordinator._group_instance_id is None


def test_before_the_consumer_exists_there_is_nothing_to_leave() -> None:
    assert leave_group_on_stop(SimpleNamespace(_consumer=None)) is False
    assert leave_group_on_stop(SimpleNamespace()) is False


def test_aiokafka_still_skips_leave_group_only_for_static_members() -> None:
    """The reason for the workaround: aiokafka's own condition (a newer aiokafka that leaves as
    a static member makes it unnecessary, and this test says so)."""
    import inspect

    source = inspect.getsource(gc.GroupCoordinator._maybe_leave_group)
    assert "self._group_instance_id is None" in source
