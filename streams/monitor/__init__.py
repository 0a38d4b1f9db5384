"""``banditlp monitor``: a live page of the per-batch series, fed from the broker.

A background consumer (``feed.MonitorFeed``) reads ``allocation-reports`` (and the ``health``
topic, when it exists) into a bounded ``store.SeriesStore``; a small starlette app
(``app.build_app``) serves the page (``page``: self-contained HTML, JS and inline SVG, no CDN)
and the store's series as JSON at ``/api/series``, which the page polls.
"""

from streams.monitor.app import build_app
from streams.monitor.config import MonitorConfig
from streams.monitor.store import SeriesStore

__all__ = ["MonitorConfig", "SeriesStore", "build_app"]
