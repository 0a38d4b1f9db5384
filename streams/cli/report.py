"""``banditlp report RUN_DIR``: one self-contained HTML page of an experiment's or a demo's run."""

from __future__ import annotations

from pathlib import Path

import typer

from banditlp.errors import BanditLPError
from streams.cli.common import console, fail


def report(
    run_dir: Path = typer.Argument(
        ...,
        help="A run directory: an experiment's (results.json) or a demo's (summary.json and PNG plots).",
        metavar="RUN_DIR",
        show_default=False,
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="The HTML file to write (default RUN_DIR/report.html)."),
) -> None:
    """Write one self-contained HTML report of a run: figures embedded, readable without a network."""
    from evaluation.reporting import write_report

    try:
        path = write_report(run_dir, out)
    except BanditLPError as exc:
        fail(exc)
    console.print(f"report: {path}")
