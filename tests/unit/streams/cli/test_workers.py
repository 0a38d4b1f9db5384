"""Every worker command hands its process the one Settings the root options built: the same
connection (security included) and a serde on the configured schema registry."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from streams.avro.registry import ConfluentSchemaRegistry
from streams.cli.app import app
from streams.kafka.connection import ConnectionConfig, Secret

ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "b1:9093",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "PLAIN",
    "KAFKA_SASL_USERNAME": "svc",
    "KAFKA_SASL_PASSWORD": "s3cret",
    "BANDITLP_SCHEMA_REGISTRY_URL": "http://registry.example:8081",
    "BANDITLP_TOPIC_PREFIX": "prod-",
}
EXPECTED = ConnectionConfig("b1:9093", "SASL_SSL", "PLAIN", "svc", Secret("s3cret"))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, ConnectionConfig, Any]]:
    """Replaces the three run functions by recorders (nothing connects)."""
    import streams.decide.worker
    import streams.processors.app
    import streams.train.trainer

    seen: list[tuple[str, Any, ConnectionConfig, Any]] = []
    monkeypatch.setattr(
        streams.processors.app,
        "run_worker",
        lambda cfg, connection, serde, loglevel="info", metrics=None: seen.append(
            ("processors", cfg, connection, serde)
        ),
    )
    monkeypatch.setattr(
        streams.decide.worker,
        "run_allocator",
        lambda cfg, connection, serde, max_seconds=None, metrics=None: (
            seen.append(("allocator", cfg, connection, serde)) or 0
        ),
    )
    monkeypatch.setattr(
        streams.train.trainer,
        "run_trainer",
        lambda cfg, connection, serde, metrics=None: seen.append(("trainer", cfg, connection, serde)),
    )
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return seen


@pytest.mark.parametrize("worker", ["processors", "allocator", "trainer"])
def test_every_worker_reads_the_registry_and_security_from_one_settings_object(calls: list, worker: str) -> None:
    result = CliRunner().invoke(app, ["worker", worker], env=ENV)
    assert result.exit_code == 0, result.output
    ((name, cfg, connection, serde),) = calls
    assert name == worker and connection == EXPECTED
    assert (
        isinstance(serde.registry, ConfluentSchemaRegistry)
        and serde.registry.url == ENV["BANDITLP_SCHEMA_REGISTRY_URL"]
    )
    names = cfg.topics if worker == "allocator" else cfg.names
    assert names.prefix == "prod-"


def test_flags_before_the_command_override_the_environment(calls: list) -> None:
    result = CliRunner().invoke(
        app,
        [
            "--bootstrap",
            "b2:9093",
            "--sasl-username",
            "other",
            "--prefix",
            "x-",
            "worker",
            "allocator",
            "--solver",
            "dual",
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    ((_, cfg, connection, _),) = calls
    assert connection.bootstrap_servers == "b2:9093" and connection.sasl_username == "other"
    assert cfg.solver == "dual" and cfg.group_id == "x-banditlp-allocator"


def test_a_bad_setting_is_one_line_and_exit_code_2(calls: list) -> None:
    result = CliRunner().invoke(app, ["worker", "trainer"], env={**ENV, "KAFKA_SASL_MECHANISM": "KERBEROS"})
    assert result.exit_code == 2 and "needs a SASL mechanism" in result.output and calls == []


def test_a_processors_worker_is_named_by_its_option_or_its_environment(
    calls: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance name makes the static group member id: the same name on every restart."""
    monkeypatch.delenv("BANDITLP_WORKER_INSTANCE", raising=False)
    result = CliRunner().invoke(app, ["worker", "processors", "--instance", "2"], env=ENV)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["worker", "processors"], env={**ENV, "BANDITLP_WORKER_INSTANCE": "pod-7"})
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["worker", "processors"], env=ENV)
    assert result.exit_code == 0, result.output
    ids = [cfg.group_instance_id for _, cfg, _, _ in calls]
    assert ids == ["prod-banditlp-processors-2", "prod-banditlp-processors-pod-7", None]


def test_a_bad_instance_name_is_one_line_and_exit_code_2(calls: list) -> None:
    result = CliRunner().invoke(app, ["worker", "processors", "--instance", "a b"], env=ENV)
    assert result.exit_code == 2 and "worker instance" in result.output and calls == []


def test_the_trainer_paces_by_default_and_its_pacing_options_reach_its_config(calls: list) -> None:
    from models.pacing import PacingConfig

    assert CliRunner().invoke(app, ["worker", "trainer"], env=ENV).exit_code == 0
    flags = ["--pacing-prior", "5", "--pacing-memory", "0.9", "--pacing-quantile", "0.8"]
    assert CliRunner().invoke(app, ["worker", "trainer", *flags], env=ENV).exit_code == 0
    assert [cfg.pacing for _, cfg, _, _ in calls] == [
        PacingConfig(),
        PacingConfig(prior_events=5.0, memory=0.9, quantile=0.8),
    ]
    result = CliRunner().invoke(app, ["worker", "trainer", "--pacing-quantile", "1"], env=ENV)
    assert result.exit_code == 2 and "quantile must be in (0, 1)" in result.output and len(calls) == 2
