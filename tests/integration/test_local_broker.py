"""`banditlp kafka up | down | status` on its own port: idempotent, and data survives restarts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from confluent_kafka import TopicPartition

from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.local_broker import LocalBroker, LocalBrokerConfig, broker_answers
from streams.kafka.topics import TopicNames, TopicSpec, create_topics
from tests.integration.kafka_reading import wait_until

pytestmark = pytest.mark.integration
PORT = int(os.environ.get("BANDITLP_TEST_RESTART_PORT", "19092"))


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BANDITLP_KAFKA_HOME": str(home), "BANDITLP_KAFKA_PORT": str(PORT)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run(
        [sys.executable, "-m", "streams", *args], env=env, capture_output=True, text=True, timeout=180
    )


def _brokers_on(port: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "kafka.Kafka" in cmd and any(f"broker-{port}" in c for c in cmd):
            found.append(p)
    return found


def test_up_twice_down_up_keeps_topics_and_records(tmp_path: Path) -> None:
    home = Path(os.environ.get("BANDITLP_KAFKA_HOME", os.path.expanduser("~/.cache/banditlp/kafka")))
    broker = LocalBroker(LocalBrokerConfig(home=home, port=PORT))
    bootstrap = broker.config.bootstrap
    try:
        first = _cli("kafka", "up", home=home)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "log:" in first.stdout
        second = _cli("kafka", "up", home=home)
        assert second.returncode == 0, second.stdout + second.stderr
        assert len(_brokers_on(PORT)) == 1

        topic = f"restart-{os.getpid()}"
        created = _cli("--bootstrap", bootstrap, "--prefix", f"{topic}-", "topics", "create", home=home)
        assert created.returncode == 0, created.stdout + created.stderr
        producer = clients.producer(ConnectionConfig(bootstrap))
        for i in range(100):
            producer.produce(f"{topic}-feedback", key=str(i).encode(), value=f"v{i}".encode())
        assert producer.flush(30) == 0

        down = _cli("kafka", "down", home=home)
        assert down.returncode == 0 and "stopped" in down.stdout
        assert not broker_answers(ConnectionConfig(bootstrap)) and not _brokers_on(PORT)
        assert _cli("kafka", "status", home=home).returncode == 1

        again = _cli("kafka", "up", home=home)
        assert again.returncode == 0, again.stdout + again.stderr
        consumer = clients.consumer(
            ConnectionConfig(bootstrap), {"group.id": "restart-check", "enable.auto.commit": False}
        )
        md = consumer.list_topics(timeout=10)
        assert f"{topic}-model-snapshots" in md.topics
        parts = md.topics[f"{topic}-feedback"].partitions
        consumer.assign([TopicPartition(f"{topic}-feedback", p, 0) for p in parts])
        values = set()
        for _ in range(30):
            for msg in consumer.consume(200, timeout=1.0):
                values.add(msg.value())
            if len(values) == 100:
                break
        consumer.close()
        assert values == {f"v{i}".encode() for i in range(100)}

        deleted = _cli("topics", "delete", "--matching", f"{topic}-", "--yes", home=home)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        admin = clients.admin(ConnectionConfig(bootstrap))

        def listed() -> set[str]:
            return set(admin.list_topics(timeout=10).topics)

        # the broker's metadata catches up with the controller
        wait_until(lambda: not any(t.startswith(f"{topic}-") for t in listed()), 30, "deleted topics unlisted")
        left = listed()
        assert {t for t in left if not t.startswith("__")} <= {t for t in md.topics if not t.startswith("__")}
        assert _cli("topics", "delete", "--matching", "", "--yes", home=home).returncode == 2
    finally:
        broker.down()


def test_fresh_start_begins_from_empty_storage() -> None:
    home = Path(os.environ.get("BANDITLP_KAFKA_HOME", os.path.expanduser("~/.cache/banditlp/kafka")))
    broker = LocalBroker(LocalBrokerConfig(home=home, port=PORT, name="test-fresh"))
    bootstrap = broker.config.bootstrap
    try:
        broker.up(fresh=True)
        create_topics(ConnectionConfig(bootstrap), TopicNames("fresh-"), (TopicSpec("feedback", 3),))
        logs = [broker.config.data_dir / f"fresh-feedback-{i}" for i in range(3)]
        # the broker creates a partition's log after the call returns
        wait_until(lambda: all(d.is_dir() for d in logs), 30, "the topic's partition logs")
        assert broker.partition_count() >= 3
        broker.down()
        broker.up(fresh=True)
        assert "fresh-feedback" not in clients.admin(ConnectionConfig(bootstrap)).list_topics(timeout=10).topics
        assert not any(d.exists() for d in logs)
    finally:
        broker.down()
        shutil.rmtree(broker.config.instance_dir, ignore_errors=True)
