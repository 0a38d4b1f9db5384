"""`banditlp kafka up | down | status` on its own port: idempotent, and data survives restarts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.local_broker import LocalBroker, LocalBrokerConfig, broker_answers

pytestmark = pytest.mark.integration
PORT = int(os.environ.get("BANDITLP_TEST_RESTART_PORT", "19092"))


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BANDITLP_KAFKA_HOME": str(home), "BANDITLP_KAFKA_PORT": str(PORT)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run([sys.executable, "-m", "streams", *args], env=env, capture_output=True, text=True, timeout=180)


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
        created = _cli("topics", "create", "--bootstrap", bootstrap, "--prefix", f"{topic}-", home=home)
        assert created.returncode == 0, created.stdout + created.stderr
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(100):
            producer.produce(f"{topic}-feedback", key=str(i).encode(), value=f"v{i}".encode())
        assert producer.flush(30) == 0

        down = _cli("kafka", "down", home=home)
        assert down.returncode == 0 and "stopped" in down.stdout
        assert not broker_answers(bootstrap) and not _brokers_on(PORT)
        assert _cli("kafka", "status", home=home).returncode == 1

        again = _cli("kafka", "up", home=home)
        assert again.returncode == 0, again.stdout + again.stderr
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "restart-check", "enable.auto.commit": False})
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
    finally:
        broker.down()
