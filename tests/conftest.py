"""Shared fixtures: a real Kafka broker for integration tests and per-test topic namespaces.

``kafka_bootstrap`` resolves, in order: ``$KAFKA_BOOTSTRAP_SERVERS``; a testcontainers
Kafka when a Docker engine answers; else the project's own local KRaft broker
(``streams.kafka.local_broker``), started for the session and stopped afterwards if this
session started it. Kafka is never mocked.

The suite's own broker is a separate instance (``test-broker-<port>``) that starts from empty
storage and whose data is deleted when the session stops it; each test deletes the topics of
its namespace on teardown. A broker that kept every test topic ever made (9,000 partitions
after a few weeks) took minutes to recover on start-up and made a CI run time out.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI replays the same examples every run (``HYPOTHESIS_PROFILE=ci`` in .ci/run): a property
# that fails there fails on every rerun and is a bug to fix, not a roll of the dice. Local
# runs keep drawing new examples, which is where new counterexamples are found.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # no engine, no socket, no permission: all mean "no Docker"
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    if os.environ.get("BANDITLP_TEST_DOCKER", "1") == "1" and _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from streams.kafka.local_broker import LocalBroker, LocalBrokerConfig, broker_answers

    port = int(os.environ.get("BANDITLP_TEST_KAFKA_PORT", "9092"))
    home = Path(os.environ.get("BANDITLP_KAFKA_HOME", os.path.expanduser("~/.cache/banditlp/kafka")))
    broker = LocalBroker(LocalBrokerConfig(home=home, port=port, name="test-broker"))
    already = broker_answers(broker.config.connection)
    broker.up(fresh=True)
    yield broker.config.bootstrap
    if not already:
        broker.down()
        shutil.rmtree(broker.config.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> object:
    """The settings a test process builds: the environment's (security, registry), on the test broker."""
    from streams.settings import Settings

    return Settings.from_env(bootstrap=kafka_bootstrap)


@pytest.fixture(scope="session")
def kafka_connection(kafka_settings: object) -> object:
    """The ``ConnectionConfig`` every client of a test is built from."""
    return kafka_settings.connection  # type: ignore[attr-defined]


@pytest.fixture
def topic_names(request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh topic namespace per test, so tests never see each other's records.

    On teardown the namespace's topics (faust's changelogs included) are deleted, when the
    test used a broker at all.
    """
    from streams.kafka.topics import TopicNames

    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:10]}-")
    uses_broker = any(f in request.fixturenames for f in ("kafka_bootstrap", "kafka_settings", "kafka_connection"))
    connection = request.getfixturevalue("kafka_connection") if uses_broker else None
    yield names
    if connection is not None:
        from streams.errors import BrokerError
        from streams.kafka.topics import delete_topics

        try:
            delete_topics(connection, names.prefix)
        except BrokerError as exc:  # a leftover topic costs disk, not correctness
            warnings.warn(f"could not delete the test's topics: {exc}", stacklevel=1)


@pytest.fixture
def project_topics(kafka_connection: object, topic_names) -> Callable[..., object]:
    """Create the project's topics under the test's namespace; returns the names mapper."""
    from streams.kafka.topics import create_topics, topic_specs

    def make(partitions: int = 4):
        create_topics(kafka_connection, topic_names, topic_specs(partitions))
        return topic_names

    return make
