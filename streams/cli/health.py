"""``banditlp health``: the health worker (``streams.health``): one ``health`` record per closed
batch with its exploration and model health and alarms; alarms in the log. ``--metrics-port``
(``BANDITLP_METRICS_PORT``) serves its Prometheus instruments, as every worker's."""

from __future__ import annotations

import typer

from banditlp.errors import BanditLPError
from evaluation.health import MonitorConfig
from streams.cli.common import configure_logging, default_of, fail, settings_of
from streams.cli.workers import MetricsBindOpt, MetricsPortOpt, metrics_config
from streams.health.worker import HealthWorkerConfig


def health(
    ctx: typer.Context,
    reference_batches: int = typer.Option(
        default_of(MonitorConfig, "reference_batches"),
        help="Closed batches that form the reference of the features, predictions and exploration metrics.",
    ),
    overlap_k: int = typer.Option(default_of(MonitorConfig, "overlap_k"), help="K of the per-user overlap@K."),
    calibration_window: int = typer.Option(
        default_of(MonitorConfig, "calibration_window"), help="Last outcomes the calibration error is computed over."
    ),
    quiet_s: float = typer.Option(
        default_of(HealthWorkerConfig, "quiet_s"),
        help="Seconds without a record of a complete batch (or any feedback) before it closes.",
    ),
    incomplete_timeout_s: float = typer.Option(
        default_of(HealthWorkerConfig, "incomplete_timeout_s"),
        help="Seconds after its allocation report an incomplete batch is dropped.",
    ),
    metrics_port: int | None = MetricsPortOpt,
    metrics_bind: str = MetricsBindOpt,
    log_level: str = typer.Option("INFO", help="Python logging level."),
) -> None:
    """Watch the decisions, contexts, feedback and reports; publish each batch's health, log its alarms."""
    from streams.health.worker import run_health_worker

    s = settings_of(ctx)
    metrics = metrics_config(metrics_port, metrics_bind)
    configure_logging(log_level)
    try:
        cfg = HealthWorkerConfig(
            names=s.names,
            monitor=MonitorConfig(
                reference_batches=reference_batches, overlap_k=overlap_k, calibration_window=calibration_window
            ),
            quiet_s=quiet_s,
            incomplete_timeout_s=incomplete_timeout_s,
        )
        run_health_worker(cfg, s.connection, s.serde(), metrics)
    except BanditLPError as exc:
        fail(exc)
