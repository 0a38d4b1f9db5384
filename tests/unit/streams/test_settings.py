"""One settings object per process: the environment and the flags build it, every client and the
serde come from it, the password never shows, and a child process rebuilds the same settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.avro.registry import ConfluentSchemaRegistry, LocalSchemaRegistry
from streams.errors import ConfigError
from streams.kafka.connection import ConnectionConfig, Secret
from streams.settings import Settings

SASL_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
    "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "KAFKA_SASL_MECHANISM": "scram-sha-512",
    "KAFKA_SASL_USERNAME": "svc",
    "KAFKA_SASL_PASSWORD": "s3cret",
    "KAFKA_SSL_CA_FILE": "/etc/ca.pem",
    "BANDITLP_SCHEMA_REGISTRY_URL": "http://registry:8081",
    "BANDITLP_TOPIC_PREFIX": "prod-",
    "BANDITLP_PARTITIONS": "12",
}


def test_the_environment_builds_the_connection_and_librdkafka_and_faust_get_the_same() -> None:
    s = Settings.from_env(SASL_ENV)
    c = s.connection
    assert c == ConnectionConfig(
        "b1:9093,b2:9093", "SASL_SSL", "SCRAM-SHA-512", "svc", Secret("s3cret"), Path("/etc/ca.pem")
    )
    assert c.librdkafka() == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem",
    }
    pytest.importorskip("faust")
    import ssl

    from faust.types.auth import AuthProtocol, SASLMechanism

    c_no_ca = ConnectionConfig("b1:9093,b2:9093", "SASL_SSL", "SCRAM-SHA-512", "svc", Secret("s3cret"))
    options = c_no_ca.faust_options()
    creds = options["broker_credentials"]
    assert options["broker"] == ["kafka://b1:9093", "kafka://b2:9093"]
    assert (creds.username, creds.password) == ("svc", "s3cret")
    assert creds.mechanism is SASLMechanism.SCRAM_SHA_512 and creds.protocol is AuthProtocol.SASL_SSL
    assert isinstance(creds.ssl_context, ssl.SSLContext)
    assert "broker_credentials" not in ConnectionConfig("h:1").faust_options()
    assert s.topic_prefix == "prod-" and s.partitions == 12 and s.schema_registry_url == "http://registry:8081"


def test_flags_win_over_the_environment() -> None:
    s = Settings.from_env(SASL_ENV, bootstrap="other:1", sasl_username="me", partitions=3, topic_prefix="t-")
    assert s.bootstrap == "other:1" and s.connection.sasl_username == "me"
    assert s.connection.sasl_password == Secret("s3cret") and s.partitions == 3 and s.topic_prefix == "t-"
    assert Settings.from_env({}).bootstrap == "127.0.0.1:9092"
    assert Settings.from_env({"BANDITLP_KAFKA_PORT": "19092"}).bootstrap == "127.0.0.1:19092"


def test_the_password_never_shows() -> None:
    s = Settings.from_env(SASL_ENV)
    for text in (repr(s), str(s), repr(s.connection), s.connection.redacted()):
        assert "s3cret" not in text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "security protocol must be one of"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "needs a SASL mechanism"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN"}, "needs a SASL username"),
        ({"BANDITLP_PARTITIONS": "four"}, "bad numeric setting"),
        ({"BANDITLP_PARTITIONS": "0"}, "must be >= 1"),
    ],
)
def test_bad_settings_are_a_config_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_child_process_rebuilds_the_same_settings_from_to_env() -> None:
    for s in (Settings.from_env(SASL_ENV), Settings.from_env({}, bootstrap="h:2", topic_prefix="x-")):
        assert Settings.from_env(s.to_env()) == s


def test_the_serde_takes_its_ids_from_the_settings_registry() -> None:
    assert isinstance(Settings.from_env({}).serde().registry, LocalSchemaRegistry)
    registry = Settings.from_env({"BANDITLP_SCHEMA_REGISTRY_URL": "http://127.0.0.1:1"}).serde().registry
    assert isinstance(registry, ConfluentSchemaRegistry)  # connects only when a subject is first used
