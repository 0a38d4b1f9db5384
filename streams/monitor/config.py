"""The monitor's settings: one frozen value, built by the command line."""

from __future__ import annotations

from dataclasses import dataclass

from streams.errors import ConfigError


@dataclass(frozen=True)
class MonitorConfig:
    """Settings of ``banditlp monitor``.

    Attributes:
        port: TCP port of the page.
        bind: address it listens on (loopback by default: the page shows no secrets, but an
            operator decides what to expose).
        history: batches kept (the oldest are dropped first); the page plots all of them.
        poll_ms: how often the page asks ``/api/series`` for new points.
        topic_check_s: how often the feed looks for a ``health`` topic that did not exist yet.
    """

    port: int = 8050
    bind: str = "127.0.0.1"
    history: int = 500
    poll_ms: int = 2_000
    topic_check_s: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"monitor port must be within 1..65535, not {self.port}")
        if self.history < 1:
            raise ConfigError(f"history must be >= 1, not {self.history}")
        if self.poll_ms < 100:
            raise ConfigError(f"poll_ms must be >= 100, not {self.poll_ms}")
        if self.topic_check_s <= 0:
            raise ConfigError(f"topic_check_s must be > 0, not {self.topic_check_s}")
