"""Fast failover of a processors worker on a real broker (issue 18, part 1).

A worker named by ``--instance`` is a static member of its consumer group (KIP-345). SIGKILLed
and restarted with the same name, it rejoins in the generation it had: no rebalance, and it
scores again without waiting for the killed member's session to expire. Stopped with SIGTERM,
it commits and leaves the group (aiokafka sends no LeaveGroup for a static member on its own;
``streams.processors.membership`` makes it), so its partitions are free the moment it exits,
not a session timeout later. The session timeout is raised to 60 s here so that neither check
depends on how fast this machine restarts a process: a member that had not left would still
be listed long after the worker exited.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import ConsumerGroupState

from streams.cli.processes import WorkerSet
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.settings import Settings
from tests.factories import candidates_value
from tests.integration.kafka_reading import read_all, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_USERS = 20
ARGS = ["worker", "processors", "--instance", "0", "--feature-dim", "6", "--session-timeout-ms", "60000"]


def describe(connection: ConnectionConfig, group: str):
    """The broker's description of ``group`` (members with their instance ids, state)."""
    admin = clients.admin(connection)
    return admin.describe_consumer_groups([group])[group].result(timeout=30)


def generations(log: Path) -> list[int]:
    """The generation of every JoinGroup the worker's consumer completed, in order."""
    return [int(g) for g in re.findall(r"Joined group '[^']+' \(generation (\d+)\)", log.read_text())]


def test_a_named_worker_rejoins_without_a_rebalance_after_sigkill_and_leaves_on_sigterm(
    kafka_settings: Settings, kafka_connection: ConnectionConfig, project_topics, tmp_path: Path
) -> None:
    names: TopicNames = project_topics(4)
    settings = kafka_settings.with_prefix(names.prefix)
    serde = settings.serde()
    group = f"{names.prefix}banditlp-processors"
    env = {**os.environ, **settings.to_env(), "BANDITLP_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    producer = clients.producer(kafka_connection, {"linger.ms": 5, "partitioner": "murmur2_random"})
    rng = np.random.default_rng(18)

    def publish(batch_id: str) -> None:
        for u in range(N_USERS):
            value = candidates_value(u, 4, rng, d=6, k=3, batch_id=batch_id)
            producer.produce(
                names("candidates"), key=value["user_id"].encode(), value=serde.encode("candidates", value)
            )
        assert producer.flush(30) == 0

    def scored(batch_id: str) -> int:
        return len(
            {
                v["user_id"]
                for _, v in read_all(kafka_connection, names("scores"), "scores")
                if v["batch_id"] == batch_id
            }
        )

    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "processors.log"
    workers = WorkerSet(tmp_path / "logs")
    try:
        workers.start("processors", ARGS, env)
        publish("before-kill")
        wait_until(lambda: scored("before-kill") == N_USERS, 180, "the first batch scored", alive=workers.check)
        (member,) = describe(kafka_connection, group).members
        assert member.group_instance_id == f"{group}-0"
        (joined,) = generations(log)

        workers.kill("processors")
        workers.start("processors", ARGS, env)
        publish("after-kill")
        wait_until(
            lambda: scored("after-kill") == N_USERS, 180, "the batch after the restart scored", alive=workers.check
        )
        rejoined = generations(log)
        assert rejoined == [joined, joined], f"the restart rebalanced the group: generations {rejoined}"
        (member,) = describe(kafka_connection, group).members
        assert member.group_instance_id == f"{group}-0"
    finally:
        workers.stop()
    assert workers.procs["processors"].returncode == 0, log.read_text()[-3000:]
    assert "LeaveGroup request succeeded" in log.read_text()
    description = describe(kafka_connection, group)
    assert description.members == [] and description.state == ConsumerGroupState.EMPTY
