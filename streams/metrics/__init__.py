"""Prometheus instruments of the workers, and the endpoint that serves them.

``WorkerMetrics`` holds every ``banditlp_*`` instrument in a ``CollectorRegistry`` of its own
(never prometheus_client's global default registry: a test can build several in one process);
``serve`` exposes one registry over HTTP with prometheus_client's own server. A worker records
into its ``WorkerMetrics`` whether or not it is served; ``MetricsConfig.port`` None (the
default) starts no server.
"""

from streams.metrics.config import MetricsConfig
from streams.metrics.instruments import WorkerMetrics
from streams.metrics.lag import committed_lag, confluent_lag
from streams.metrics.server import MetricsServer, serve, start_worker_metrics

__all__ = [
    "MetricsConfig",
    "MetricsServer",
    "WorkerMetrics",
    "committed_lag",
    "confluent_lag",
    "serve",
    "start_worker_metrics",
]
