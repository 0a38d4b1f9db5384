"""``banditlp monitor``: the live page of the per-batch series (``streams.monitor``)."""

from __future__ import annotations

import typer

from streams.cli.common import configure_logging, console, default_of, fail, settings_of
from streams.errors import BanditLPError
from streams.monitor.config import MonitorConfig


def monitor(
    ctx: typer.Context,
    port: int = typer.Option(
        default_of(MonitorConfig, "port"), envvar="BANDITLP_MONITOR_PORT", help="The page's port."
    ),
    bind: str = typer.Option(
        default_of(MonitorConfig, "bind"), envvar="BANDITLP_MONITOR_BIND", help="Address the page listens on."
    ),
    history: int = typer.Option(default_of(MonitorConfig, "history"), help="Batches kept and plotted."),
    poll_ms: int = typer.Option(default_of(MonitorConfig, "poll_ms"), help="How often the page polls for new points."),
    topic_check_s: float = typer.Option(
        default_of(MonitorConfig, "topic_check_s"), hidden=True, help="How often to look for the health topic (tests)."
    ),
    log_level: str = typer.Option("info", help="debug | info | warning | error."),
) -> None:
    """Serve a live page of the allocation reports (and the health topic, when it exists) until Ctrl-C."""
    import uvicorn

    from streams.monitor.app import build_app
    from streams.monitor.feed import MonitorFeed
    from streams.monitor.store import SeriesStore

    s = settings_of(ctx)
    configure_logging(log_level)
    try:
        cfg = MonitorConfig(port=port, bind=bind, history=history, poll_ms=poll_ms, topic_check_s=topic_check_s)
    except BanditLPError as exc:
        fail(exc)
    store = SeriesStore(cfg.history)
    feed = MonitorFeed(s.connection, s.serde(), s.names, store, cfg)
    source = f"{s.names('allocation-reports')} (and {s.names('health')} when it exists) at {s.bootstrap}"
    app = build_app(store, source, cfg.poll_ms, on_start=feed.start, on_stop=feed.stop)
    console.print(f"monitor on http://{cfg.bind}:{cfg.port}/ ({source})")
    uvicorn.run(app, host=cfg.bind, port=cfg.port, log_level=log_level.lower())
