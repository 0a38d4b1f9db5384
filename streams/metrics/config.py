"""Where a worker's metrics endpoint listens: one frozen value, built by the entry point."""

from __future__ import annotations

from dataclasses import dataclass

from streams.errors import ConfigError


@dataclass(frozen=True)
class MetricsConfig:
    """The metrics endpoint of one worker process.

    Attributes:
        port: TCP port of ``/metrics``; None: no endpoint (the default).
        bind: address the endpoint listens on; loopback by default, so a worker exposes nothing
            to the network unless told to.
        lag_interval_s: how often the consumer-lag gauges are refreshed (each refresh reads the
            consumer's cached watermarks, no broker request).
    """

    port: int | None = None
    bind: str = "127.0.0.1"
    lag_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ConfigError(f"metrics port must be within 1..65535, not {self.port}")
        if self.lag_interval_s <= 0:
            raise ConfigError(f"lag_interval_s must be > 0, not {self.lag_interval_s}")

    @property
    def enabled(self) -> bool:
        return self.port is not None
