"""The processors worker's membership of its consumer group: static ids and a clean leave.

A worker with an instance name joins as a static member (KIP-345, ``group.instance.id``): after
a crash or a SIGKILL the same instance, restarted within the session timeout, gets its old
partitions back without a rebalance, so the other workers keep theirs and nobody waits for the
dead member's session to expire.

aiokafka (0.14) never sends LeaveGroup for a static member: a stopped static member holds its
partitions until its session times out. That is right for a crash (the supervisor restarts the
same instance at once), wrong for a deliberate stop: a worker told to stop (SIGTERM, SIGINT)
should hand its partitions over at once. ``Worker`` therefore turns the member dynamic when a
stop signal arrives, so that aiokafka's close path (after faust has committed the offsets of
every processed record) sends LeaveGroup with the member id, which removes the static member too.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

log = logging.getLogger("banditlp.processors")


def group_coordinator(app: Any) -> Any | None:
    """aiokafka's group coordinator of ``app``'s consumer, or None before it exists."""
    consumer = getattr(app, "_consumer", None)  # faust's consumer service, once started
    thread = getattr(consumer, "_thread", None)
    client = getattr(thread, "_consumer", None)  # aiokafka.AIOKafkaConsumer
    return getattr(client, "_coordinator", None)


def leave_group_on_stop(app: Any) -> bool:
    """Make ``app``'s consumer leave its group when it next stops, static member or not.

    Returns False when the consumer has not joined yet (nothing to leave).
    """
    coordinator = group_coordinator(app)
    if coordinator is None:
        return False
    if getattr(coordinator, "_group_instance_id", None) is not None:
        log.info("stop requested: leaving the group as static member %s", coordinator._group_instance_id)
        coordinator._group_instance_id = None  # aiokafka's close then sends LeaveGroup (member id)
    return True


class Worker(faust.Worker):
    """faust's worker, leaving the consumer group on SIGTERM and SIGINT (see the module docstring)."""

    def _on_sigterm(self) -> None:
        leave_group_on_stop(self.app)
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        leave_group_on_stop(self.app)
        super()._on_sigint()
