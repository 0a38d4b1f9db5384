"""A real Schema Registry (Apicurio Registry's Confluent-compatible API, provisioned from Maven
Central like the broker): the simulator, the scorer and the allocator, each in its own process
and each with its serde built from ``BANDITLP_SCHEMA_REGISTRY_URL``, write the registry's ids and
read each other's records.

The ids are checked against the registry itself over HTTP, not through the project's client; the
registry numbers schemas from 1, so its ids also differ from the local registry's hash ids."""

from __future__ import annotations

import json
import os
import struct
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluation.email_world import EmailWorldConfig
from streams.avro.registry import LocalSchemaRegistry
from streams.cli.processes import WorkerSet
from streams.kafka.local_registry import LocalRegistry, LocalRegistryConfig
from streams.kafka.topics import TopicNames, create_topics, topic_specs
from streams.settings import Settings
from streams.simulate.feed import SimulatorConfig, SimulatorFeed
from streams.simulate.warm_start import publish_warm_start
from tests.integration.kafka_reading import read_raw

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_DRAWS = 4  # K Thompson draws: the scores and decisions of schema v2 cross the registry too
WORLD = EmailWorldConfig(n_users=100, n_items=40, n_providers=8, candidates_per_user=10, seed=5)


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    """``BANDITLP_TEST_SCHEMA_REGISTRY_URL`` when set, else a fresh in-memory local registry."""
    env = os.environ.get("BANDITLP_TEST_SCHEMA_REGISTRY_URL")
    if env:
        yield env
        return
    port = int(os.environ.get("BANDITLP_TEST_REGISTRY_PORT", "18081"))
    registry = LocalRegistry(LocalRegistryConfig(port=port, name="test-registry"))
    registry.up()
    try:
        yield registry.config.url
    finally:
        registry.down()


def _registry_id(url: str, subject: str) -> int:
    with urllib.request.urlopen(f"{url}/subjects/{subject}-value/versions/latest", timeout=10) as response:
        return int(json.loads(response.read())["id"])


def _schema_ids(records: list[tuple[int, int, bytes | None, bytes]]) -> set[int]:
    return {struct.unpack_from(">bI", value)[1] for _, _, _, value in records}


def test_scorer_and_allocator_agree_on_the_registry_s_ids(
    kafka_settings: Settings, registry_url: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {
            **kafka_settings.to_env(),
            "BANDITLP_SCHEMA_REGISTRY_URL": registry_url,
            "BANDITLP_TOPIC_PREFIX": topic_names.prefix,
        }
    )
    names, connection, serde = settings.names, settings.connection, settings.serde()
    create_topics(connection, names, topic_specs(settings.partitions))
    publish_warm_start(connection, serde, names, WORLD, "email", n_batches=1, seed=0)
    env = {**os.environ, **settings.to_env(), "BANDITLP_STATE_DIR": str(tmp_path / "state")}
    (tmp_path / "logs").mkdir()
    workers = WorkerSet(tmp_path / "logs")
    feed = SimulatorFeed(
        SimulatorConfig(names=names, world=WORLD, timeout_ms=60_000, decision_timeout_s=180.0), connection, serde
    )
    try:
        workers.start("processors", ["worker", "processors", "--draws", str(N_DRAWS)], env)
        workers.start("allocator", ["worker", "allocator"], env)
        run = feed.run_batch(0)
        workers.check()
    finally:
        feed.close()
        workers.stop()
    logs = "".join(p.read_text()[-3000:] for p in sorted((tmp_path / "logs").glob("*.log")))
    # every user was decided: the allocator read the scorer's records, the scorer the simulator's
    assert run.chosen.sum() > 0, logs
    assert len(read_raw(connection, names("decisions"))) == WORLD.n_users, logs
    local = LocalSchemaRegistry()
    for subject, writer in (
        ("candidates", "simulator"),
        ("scores", "scorer"),
        ("decisions", "allocator"),
        ("allocation-reports", "allocator"),
        ("model-snapshots", "warm start"),
    ):
        ids = _schema_ids(read_raw(connection, names(subject)))
        assert ids == {_registry_id(registry_url, subject)}, (subject, writer, ids)
        assert local.current(subject)[0] not in ids  # not the local registry's id
    assert read_raw(connection, names("dead-letters")) == [], logs
    decisions = [serde.decode("decisions", value) for _, _, _, value in read_raw(connection, names("decisions"))]
    assert {d["n_draws"] for d in decisions} == {N_DRAWS}
    propensities = [a["propensity"] for d in decisions for a in d["allocation"]]
    assert any(0.0 < p < 1.0 for p in propensities)  # the mixture of K plans explores
