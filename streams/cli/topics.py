"""``banditlp topics create | delete``: the project's topics on the configured cluster."""

from __future__ import annotations

import typer
from rich.table import Table

from banditlp.errors import BanditLPError
from streams.cli.common import console, fail, settings_of

topics_app = typer.Typer(help="The project's topics.", no_args_is_help=True)


@topics_app.command("create")
def topics_create(ctx: typer.Context) -> None:
    """Create every topic (under ``--prefix``) with its partitions, cleanup policy and retention; idempotent."""
    from streams.kafka.topics import create_topics, topic_specs

    s = settings_of(ctx)
    specs = topic_specs(s.partitions)
    try:
        outcome = create_topics(s.connection, s.names, specs)
    except BanditLPError as exc:
        fail(exc)
    table = Table("topic", "partitions", "policy", "state")
    for spec in specs:
        name = s.names(spec.base)
        table.add_row(name, str(spec.partitions), spec.config()["cleanup.policy"], outcome[name])
    console.print(table)


@topics_app.command("delete")
def topics_delete(
    ctx: typer.Context,
    matching: str = typer.Option(..., "--matching", help="Delete every topic whose name starts with this (not empty)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a run's topics (and its faust changelogs) by name prefix, e.g. an old demo's."""
    from streams.kafka.topics import delete_topics

    s = settings_of(ctx)
    if not yes:
        typer.confirm(f"delete every topic starting with {matching!r} on {s.bootstrap}?", abort=True)
    try:
        gone = delete_topics(s.connection, matching)
    except BanditLPError as exc:
        fail(exc)
    console.print(f"deleted {len(gone)} topics" + "".join(f"\n  {t}" for t in gone))
