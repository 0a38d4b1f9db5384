"""What every command shares: the process's settings (built once, by the root callback) and the
one way a typed error ends a command (one line, exit code 2, no traceback)."""

from __future__ import annotations

import logging
from dataclasses import MISSING, fields
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(exc: BaseException) -> NoReturn:
    """Print a typed error as one line on stderr and exit with code 2."""
    err_console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


def settings_of(ctx: typer.Context) -> Any:
    """The ``Settings`` the root callback built for this process."""
    root = ctx.find_root()
    if root.obj is None:  # a sub-app invoked on its own (tests): the environment alone
        from streams.settings import Settings

        root.obj = Settings.from_env()
    return root.obj


def default_of(config: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config``: option defaults live there once."""
    for f in fields(config):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            break
    raise KeyError(f"{config.__name__}.{name} has no default")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
