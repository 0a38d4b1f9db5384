"""``serve``: one registry on ``http://BIND:PORT/metrics``, by prometheus_client's own HTTP server
(a daemon thread; a scrape reads the instruments under their locks, never the worker's state)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from streams.errors import ConfigError
from streams.metrics.config import MetricsConfig
from streams.metrics.instruments import WorkerMetrics

log = logging.getLogger("banditlp.metrics")


@dataclass
class MetricsServer:
    """A running endpoint; ``close`` stops it (tests; a worker's ends with its process)."""

    server: Any
    thread: Any
    address: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(registry: CollectorRegistry, port: int, address: str = "127.0.0.1") -> MetricsServer:
    """Serve ``registry`` on ``address:port`` (port 0: any free port, read back from ``.port``).

    Raises:
        ConfigError: the port cannot be bound (in use, or not allowed).
    """
    try:
        server, thread = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise ConfigError(f"metrics endpoint {address}:{port}: {exc}") from exc
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics", address, bound)
    return MetricsServer(server, thread, address, bound)


def start_worker_metrics(config: MetricsConfig | None) -> WorkerMetrics:
    """A worker's instruments, served on ``config.port`` when it is set (the default config: none).

    Raises:
        ConfigError: the port cannot be bound.
    """
    config = config or MetricsConfig()
    instruments = WorkerMetrics(lag_interval_s=config.lag_interval_s)
    if config.port is not None:
        serve(instruments.registry, config.port, config.bind)
    return instruments
