"""One settings object per process, read from the environment and overridden by CLI flags.

| env var | field | default |
|---|---|---|
| KAFKA_BOOTSTRAP_SERVERS | connection.bootstrap_servers | 127.0.0.1:<kafka_port> |
| KAFKA_SECURITY_PROTOCOL | connection.security_protocol | PLAINTEXT |
| KAFKA_SASL_MECHANISM | connection.sasl_mechanism | none |
| KAFKA_SASL_USERNAME | connection.sasl_username | none |
| KAFKA_SASL_PASSWORD | connection.sasl_password | none (never logged) |
| KAFKA_SSL_CA_FILE | connection.ssl_ca_file | none (the system's CAs) |
| BANDITLP_TOPIC_PREFIX | topic_prefix | "" |
| BANDITLP_PARTITIONS | partitions | 4 |
| BANDITLP_SCHEMA_REGISTRY_URL | schema_registry_url | none (local registry) |
| BANDITLP_STATE_DIR | state_dir | ~/.cache/banditlp/state |
| BANDITLP_KAFKA_HOME | kafka_home | ~/.cache/banditlp/kafka |
| BANDITLP_KAFKA_PORT | kafka_port | 9092 |

Library code never reads the environment: entry points build ``Settings`` and pass it, or the
parts a component needs (``connection``, ``serde()``, ``names``), down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.errors import ConfigError
from streams.kafka.connection import ConnectionConfig, Secret
from streams.kafka.topics import TopicNames

if TYPE_CHECKING:
    from streams.avro.serde import AvroSerde

#: Environment variable of each ``ConnectionConfig`` field.
CONNECTION_ENV = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME",
    "sasl_password": "KAFKA_SASL_PASSWORD",
    "ssl_ca_file": "KAFKA_SSL_CA_FILE",
}
DEFAULT_STATE_DIR = "~/.cache/banditlp/state"
DEFAULT_KAFKA_HOME = "~/.cache/banditlp/kafka"


def _path(value: str) -> Path:
    return Path(os.path.expanduser(value))


@dataclass(frozen=True)
class Settings:
    """Process-wide settings (see the module docstring for the environment variables)."""

    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    topic_prefix: str = ""
    partitions: int = 4
    schema_registry_url: str | None = None
    state_dir: Path = field(default_factory=lambda: _path(DEFAULT_STATE_DIR))
    kafka_home: Path = field(default_factory=lambda: _path(DEFAULT_KAFKA_HOME))
    kafka_port: int = 9092

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigError("BANDITLP_PARTITIONS must be >= 1")

    @property
    def bootstrap(self) -> str:
        return self.connection.bootstrap_servers

    @property
    def names(self) -> TopicNames:
        """The topic names of this process's namespace (``topic_prefix``)."""
        return TopicNames(self.topic_prefix)

    def serde(self, columnar: bool = True) -> AvroSerde:
        """The process's Avro serde: ids from ``schema_registry_url``, or the local registry.

        Build it once per process and pass it to every component, so the scorer, the allocator
        and everything else write and read the same schema ids.
        """
        from streams.avro.registry import make_registry
        from streams.avro.serde import AvroSerde

        return AvroSerde(make_registry(self.schema_registry_url), columnar=columnar)

    def to_env(self) -> dict[str, str]:
        """The environment that makes a child process (``banditlp worker ...``) build these
        settings: for the workers a process starts (the demo, the benchmark, tests)."""
        c = self.connection
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": c.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": c.security_protocol,
            "BANDITLP_TOPIC_PREFIX": self.topic_prefix,
            "BANDITLP_PARTITIONS": str(self.partitions),
            "BANDITLP_STATE_DIR": str(self.state_dir),
            "BANDITLP_KAFKA_HOME": str(self.kafka_home),
            "BANDITLP_KAFKA_PORT": str(self.kafka_port),
        }
        optional = {
            "KAFKA_SASL_MECHANISM": c.sasl_mechanism,
            "KAFKA_SASL_USERNAME": c.sasl_username,
            "KAFKA_SASL_PASSWORD": c.sasl_password.reveal() if c.sasl_password is not None else None,
            "KAFKA_SSL_CA_FILE": str(c.ssl_ca_file) if c.ssl_ca_file is not None else None,
            "BANDITLP_SCHEMA_REGISTRY_URL": self.schema_registry_url,
        }
        env.update({k: v for k, v in optional.items() if v is not None})
        return env

    def with_prefix(self, topic_prefix: str) -> Settings:
        return replace(self, topic_prefix=topic_prefix)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build from ``env`` (default ``os.environ``); non-None ``overrides`` win.

        ``overrides`` take the field names, and ``ConnectionConfig``'s field names (and
        ``bootstrap`` for ``bootstrap_servers``) for the connection.
        """
        env = os.environ if env is None else env
        given = {k: v for k, v in overrides.items() if v is not None}
        if "bootstrap" in given:
            given["bootstrap_servers"] = given.pop("bootstrap")
        defaults: dict[str, Any] = {f.name: f.default for f in fields(cls)}
        try:
            port = int(given.pop("kafka_port", env.get("BANDITLP_KAFKA_PORT", defaults["kafka_port"])))
            values: dict[str, Any] = dict(
                topic_prefix=env.get("BANDITLP_TOPIC_PREFIX", defaults["topic_prefix"]),
                partitions=int(env.get("BANDITLP_PARTITIONS", defaults["partitions"])),
                schema_registry_url=env.get("BANDITLP_SCHEMA_REGISTRY_URL") or None,
                state_dir=_path(env.get("BANDITLP_STATE_DIR", DEFAULT_STATE_DIR)),
                kafka_home=_path(env.get("BANDITLP_KAFKA_HOME", DEFAULT_KAFKA_HOME)),
                kafka_port=port,
            )
        except ValueError as exc:
            raise ConfigError(f"bad numeric setting in the environment: {exc}") from exc
        conn: dict[str, Any] = {name: env.get(var) or None for name, var in CONNECTION_ENV.items()}
        conn["bootstrap_servers"] = conn["bootstrap_servers"] or f"127.0.0.1:{port}"
        for name in CONNECTION_ENV:
            if name in given:
                conn[name] = given.pop(name)
        conn["security_protocol"] = (conn["security_protocol"] or "PLAINTEXT").upper()
        if conn["sasl_mechanism"]:
            conn["sasl_mechanism"] = conn["sasl_mechanism"].upper()
        if isinstance(conn["sasl_password"], str):
            conn["sasl_password"] = Secret(conn["sasl_password"])
        if conn["ssl_ca_file"] is not None:
            conn["ssl_ca_file"] = _path(str(conn["ssl_ca_file"]))
        unknown = set(given) - set(values)
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update(given)
        return cls(connection=ConnectionConfig(**conn), **values)
