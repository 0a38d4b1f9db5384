"""One settings object per process, read from the environment and overridden by CLI flags.

| env var | field | default |
|---|---|---|
| KAFKA_BOOTSTRAP_SERVERS | bootstrap | 127.0.0.1:9092 |
| BANDITLP_TOPIC_PREFIX | topic_prefix | "" |
| BANDITLP_PARTITIONS | partitions | 4 |
| BANDITLP_SCHEMA_REGISTRY_URL | schema_registry_url | none (local registry) |
| BANDITLP_STATE_DIR | state_dir | ~/.cache/banditlp/state |
| BANDITLP_KAFKA_HOME | kafka_home | ~/.cache/banditlp/kafka |
| BANDITLP_KAFKA_PORT | kafka_port | 9092 |

Library code never reads the environment: entry points build ``Settings`` and pass plain
values down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from streams.errors import ConfigError


def _path(value: str) -> Path:
    return Path(os.path.expanduser(value))


@dataclass(frozen=True)
class Settings:
    """Process-wide settings (see the module docstring for the environment variables)."""

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = 4
    schema_registry_url: str | None = None
    state_dir: Path = field(default_factory=lambda: _path("~/.cache/banditlp/state"))
    kafka_home: Path = field(default_factory=lambda: _path("~/.cache/banditlp/kafka"))
    kafka_port: int = 9092

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Build from ``env`` (default ``os.environ``); non-None ``overrides`` win."""
        env = os.environ if env is None else env
        base = cls()
        try:
            port = int(env.get("BANDITLP_KAFKA_PORT", base.kafka_port))
            values: dict[str, object] = dict(
                bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}"),
                topic_prefix=env.get("BANDITLP_TOPIC_PREFIX", base.topic_prefix),
                partitions=int(env.get("BANDITLP_PARTITIONS", base.partitions)),
                schema_registry_url=env.get("BANDITLP_SCHEMA_REGISTRY_URL") or None,
                state_dir=_path(env.get("BANDITLP_STATE_DIR", str(base.state_dir))),
                kafka_home=_path(env.get("BANDITLP_KAFKA_HOME", str(base.kafka_home))),
                kafka_port=port,
            )
        except ValueError as exc:
            raise ConfigError(f"bad numeric setting in the environment: {exc}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = replace(base, **values)  # type: ignore[arg-type]
        if settings.partitions < 1:
            raise ConfigError("BANDITLP_PARTITIONS must be >= 1")
        return settings
