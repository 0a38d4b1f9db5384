"""The faust worker's tables survive a restart on a machine that lost its local state.

A processors worker scores a batch and learns from its feedback; it is stopped and its
RocksDB tables are read from disk. A second worker starts on an empty state directory,
restores the tables from their changelog topics and scores a new batch (so its agents run,
which faust allows only after recovery); stopped, its RocksDB holds the same bytes for every
user's posterior and for the decision contexts. A third start on that directory then gets the
same feedback again plus one new record per user: the restored dedup state drops the repeats.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from rocksdict import AccessType, Rdict

from evaluation.email_world import EmailWorldConfig
from streams.avro.serde import AvroSerde
from streams.cli.processes import WorkerSet
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames, create_topics, topic_specs
from streams.learn.user_state import UserState
from streams.settings import Settings
from streams.simulate.feed import SimulatorConfig, SimulatorFeed
from streams.simulate.warm_start import publish_warm_start
from tests.integration.kafka_reading import read_all, read_raw, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORLD = EmailWorldConfig(n_users=60, n_items=20, n_providers=4, candidates_per_user=5, seed=11)


def read_table(state_dir: Path, table: str) -> dict[bytes, bytes]:
    """Every key and value of a faust table in the worker's RocksDB directory (all partitions)."""
    dbs = sorted(state_dir.rglob(f"{table}-*.db"))
    assert dbs, f"no RocksDB files of table {table} under {state_dir}"
    out: dict[bytes, bytes] = {}
    for path in dbs:
        db = Rdict(str(path), access_type=AccessType.read_only())
        try:
            for k, v in db.items():
                if k.startswith(b"__faust\x00"):  # faust's own bookkeeping (the changelog offset)
                    continue
                assert k not in out, f"key {k!r} in two partitions"
                out[k] = v
        finally:
            db.close()
    return out


def feedback(serde: AvroSerde, batch_id: str, user: str, item: str, converted: bool) -> bytes:
    return serde.encode(
        "feedback",
        {
            "decision_id": f"{batch_id}/{user}",
            "batch_id": batch_id,
            "user_id": user,
            "item_id": item,
            "converted": converted,
            "unsubscribed": False,
            "value": 3.0 if converted else 0.0,
            "observed_at_ms": 0,
            "source": "test",
        },
    )


def test_restart_restores_posteriors_contexts_and_dedup_from_the_changelog(
    kafka_settings: Settings, kafka_connection: ConnectionConfig, topic_names: TopicNames, tmp_path: Path
) -> None:
    names = topic_names
    settings = kafka_settings.with_prefix(names.prefix)
    serde = settings.serde()
    create_topics(kafka_connection, names, topic_specs(4))
    publish_warm_start(kafka_connection, serde, names, WORLD, "email", n_batches=1, seed=0)
    feed = SimulatorFeed(SimulatorConfig(names=names, world=WORLD), kafka_connection, serde)
    # murmur2, as every producer of keyed topics must use (README): feedback meets its context
    producer = clients.producer(kafka_connection, {"linger.ms": 5, "partitioner": "murmur2_random"})
    changelog = names.prefix + "banditlp-processors-users-changelog"
    n_users = WORLD.n_users

    def env(state: Path) -> dict[str, str]:
        return {**os.environ, **settings.to_env(), "BANDITLP_STATE_DIR": str(state)}

    def scored(batch_id: str) -> int:
        return len(
            {
                v["user_id"]
                for _, v in read_all(kafka_connection, names("scores"), "scores")
                if v["batch_id"] == batch_id
            }
        )

    def observations() -> dict[str, int]:
        return {k.decode(): UserState.decode(v).n_obs for _, _, k, v in read_raw(kafka_connection, changelog)}

    # 1. score batch 0, learn from one feedback record per user, stop.
    first = WorkerSet(tmp_path / "logs-1")
    (tmp_path / "logs-1").mkdir()
    try:
        first.start("processors", ["worker", "processors"], env(tmp_path / "state-1"))
        batch0, _ = feed.publish_batch(0)
        wait_until(lambda: scored(batch0.batch_id) == n_users, 120, "batch 0 scored", alive=first.check)
        rng = np.random.default_rng(0)
        starts = np.flatnonzero(np.r_[True, np.diff(batch0.pair_user) != 0])
        sent = {
            f"u{int(batch0.pair_user[s])}": (f"i{int(batch0.pair_item[s])}", f"i{int(batch0.pair_item[s + 1])}")
            for s in starts
        }
        converted = {u: bool(rng.random() < 0.5) for u in sent}
        for u, (item, _) in sent.items():
            producer.produce(
                names("feedback"), key=u.encode(), value=feedback(serde, batch0.batch_id, u, item, converted[u])
            )
        assert producer.flush(30) == 0
        wait_until(lambda: observations() == {u: 1 for u in sent}, 120, "every user learned once", alive=first.check)
    finally:
        first.stop()
    before_users = read_table(tmp_path / "state-1", "users")
    before_contexts = read_table(tmp_path / "state-1", "contexts")
    assert {k.decode() for k in before_users} == set(sent)
    for value in before_users.values():
        state = UserState.decode(value)
        A, n = state.A, state.n_obs
        assert n == 1 and not np.allclose(A, A[0, 0] * np.eye(len(A)))  # the prior moved
    assert len(before_contexts) == n_users and all(k.endswith(b"/0") for k in before_contexts)  # first slots

    # 2. a new worker on an empty state directory restores both tables, then scores batch 1.
    second = WorkerSet(tmp_path / "logs-2")
    (tmp_path / "logs-2").mkdir()
    try:
        second.start("processors", ["worker", "processors"], env(tmp_path / "state-2"))
        batch1, _ = feed.publish_batch(1)
        wait_until(
            lambda: scored(batch1.batch_id) == n_users, 180, "batch 1 scored after the restore", alive=second.check
        )
    finally:
        second.stop()
    after_users = read_table(tmp_path / "state-2", "users")
    after_contexts = read_table(tmp_path / "state-2", "contexts")
    assert after_users == before_users
    for key, value in before_contexts.items():  # batch 1 went to each user's second slot
        assert after_contexts[key] == value and after_contexts[key[:-1] + b"1"] != value

    # 3. on the restored state: the same feedback again (dropped) and one new item per user (applied).
    third = WorkerSet(tmp_path / "logs-3")
    (tmp_path / "logs-3").mkdir()
    try:
        third.start("processors", ["worker", "processors"], env(tmp_path / "state-2"))
        for u, (item, other) in sent.items():
            producer.produce(
                names("feedback"), key=u.encode(), value=feedback(serde, batch0.batch_id, u, item, converted[u])
            )
            producer.produce(names("feedback"), key=u.encode(), value=feedback(serde, batch0.batch_id, u, other, False))
        assert producer.flush(30) == 0
        wait_until(
            lambda: observations() == {u: 2 for u in sent}, 120, "every user learned one new record", alive=third.check
        )
    finally:
        third.stop()
    assert {k: UserState.decode(v).n_obs for k, v in read_table(tmp_path / "state-2", "users").items()} == {
        u.encode(): 2 for u in sent
    }
    feed.close()
