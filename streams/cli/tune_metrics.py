"""``banditlp worker tune-metrics``: the per-arm metrics of the tuner in windowed faust tables.

Reads ``metrics`` (the learners' per-arm feedback) and ``decisions``, and keeps per (arm, window) sums in
RocksDB tables with changelogs (``streams.tune.metrics_app``); ``banditlp tune --live`` reads the windows.
"""

from __future__ import annotations

import typer

from banditlp.errors import BanditLPError
from streams.cli.common import default_of, fail, settings_of


def tune_metrics(
    ctx: typer.Context,
    window_s: float = typer.Option(
        300.0, "--window-s", help="Tumbling window length, seconds (by the records' Kafka timestamps)."
    ),
    windows_kept: int = typer.Option(48, "--windows-kept", min=1, help="Windows kept before they expire."),
    overlap_k: int = typer.Option(1, "--overlap-k", min=1, help="K of the per-user overlap@K between batches."),
    log_level: str = typer.Option("info", "--log-level", help="debug | info | warning | error."),
) -> None:
    """The tuner's per-arm metrics (feedback and decisions) in tumbling windows (a faust worker; run one)."""
    from streams.tune.job import TunerJobConfig
    from streams.tune.metrics_app import TuneMetricsConfig, run_worker

    s = settings_of(ctx)
    try:
        cfg = TuneMetricsConfig(
            names=s.names,
            app_id=f"{s.topic_prefix}{default_of(TunerJobConfig, 'metrics_app_id')}",
            state_dir=s.state_dir,
            partitions=s.partitions,
            window_s=window_s,
            windows_kept=windows_kept,
            overlap_k=overlap_k,
        )
        run_worker(cfg, s.connection, s.serde(), loglevel=log_level)
    except BanditLPError as exc:
        fail(exc)
