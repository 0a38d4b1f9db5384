"""The monitor's ASGI app (starlette): ``/`` the page, ``/api/series`` the store's series."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from streams.monitor.page import render_page
from streams.monitor.store import SeriesStore


def build_app(
    store: SeriesStore,
    source: str = "allocation-reports",
    poll_ms: int = 2_000,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> Starlette:
    """The app over ``store``; ``on_start``/``on_stop`` run with the server (the feed's thread:
    a test that feeds the store itself passes neither, and no broker is needed)."""
    page = render_page(source, poll_ms)

    async def index(_: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def series(_: Request) -> JSONResponse:
        return JSONResponse(store.series(), headers={"Cache-Control": "no-store"})

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        if on_start is not None:
            on_start()
        try:
            yield
        finally:
            if on_stop is not None:
                on_stop()

    return Starlette(routes=[Route("/", index), Route("/api/series", series)], lifespan=lifespan)
