"""The ``banditlp`` command line: broker, topics, LP solver, workers and the demo.

Each command builds one ``Settings`` from the environment and its flags, and maps the
project's typed errors to a one-line message and exit code 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from banditlp.errors import BanditLPError
from streams.settings import Settings

console = Console()
app = typer.Typer(help="BanditLP on Kafka: constrained, exploration-aware recommendation decisions.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
kafka_app = typer.Typer(help="A local Apache Kafka broker (KRaft) with no Docker.", no_args_is_help=True)
topics_app = typer.Typer(help="The project's topics.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")


def fail(exc: BaseException) -> None:
    """Print a typed error as one line and exit with code 2."""
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


def _broker(port: Optional[int], home: Optional[Path]):
    from streams.kafka.local_broker import LocalBroker, LocalBrokerConfig

    settings = Settings.from_env(kafka_port=port, kafka_home=home)
    return LocalBroker(LocalBrokerConfig(home=settings.kafka_home, port=settings.kafka_port))


PortOpt = typer.Option(None, "--port", help="Broker port on 127.0.0.1 (env BANDITLP_KAFKA_PORT, default 9092).")
HomeOpt = typer.Option(None, "--home", help="Jar/data cache (env BANDITLP_KAFKA_HOME, default ~/.cache/banditlp/kafka).")


@kafka_app.command("up")
def kafka_up(port: Optional[int] = PortOpt, home: Optional[Path] = HomeOpt) -> None:
    """Fetch the broker jars (once), format storage (once) and start the broker; idempotent."""
    broker = _broker(port, home)
    try:
        with console.status(f"starting Kafka on {broker.config.bootstrap} ..."):
            st = broker.up()
    except BanditLPError as exc:
        fail(exc)
    console.print(f"Kafka answers on [bold]{st.bootstrap}[/] (pid {st.pid or 'not ours'})")
    console.print(f"  log:  {st.log_path}\n  data: {st.data_dir}")


@kafka_app.command("down")
def kafka_down(port: Optional[int] = PortOpt, home: Optional[Path] = HomeOpt) -> None:
    """Stop the broker this project started (its data stays)."""
    stopped = _broker(port, home).down()
    console.print("broker stopped" if stopped else "no broker of ours was running")


@kafka_app.command("status")
def kafka_status(port: Optional[int] = PortOpt, home: Optional[Path] = HomeOpt) -> None:
    """Say whether the broker runs and answers, and where its log and data are."""
    st = _broker(port, home).status()
    console.print(f"{st.bootstrap}: {'answering' if st.answering else 'not answering'}; "
                  f"pid {st.pid if st.pid else '-'}\n  log:  {st.log_path}\n  data: {st.data_dir}")
    if not st.answering:
        raise typer.Exit(code=1)


@topics_app.command("create")
def topics_create(
    bootstrap: Optional[str] = typer.Option(None, help="(env KAFKA_BOOTSTRAP_SERVERS)"),
    prefix: Optional[str] = typer.Option(None, help="Topic name prefix (env BANDITLP_TOPIC_PREFIX)."),
    partitions: Optional[int] = typer.Option(None, help="Partitions of the keyed topics (env BANDITLP_PARTITIONS)."),
) -> None:
    """Create every topic with its partitions, cleanup policy and retention; idempotent."""
    from streams.kafka.topics import TopicNames, create_topics, topic_specs

    s = Settings.from_env(bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions)
    specs = topic_specs(s.partitions)
    try:
        outcome = create_topics(s.bootstrap, TopicNames(s.topic_prefix), specs)
    except BanditLPError as exc:
        fail(exc)
    table = Table("topic", "partitions", "policy", "state")
    for spec in specs:
        name = TopicNames(s.topic_prefix)(spec.base)
        table.add_row(name, str(spec.partitions), spec.config()["cleanup.policy"], outcome[name])
    console.print(table)


@topics_app.command("delete")
def topics_delete(
    prefix: str = typer.Option(..., help="Delete every topic whose name starts with this (not empty)."),
    bootstrap: Optional[str] = typer.Option(None, help="(env KAFKA_BOOTSTRAP_SERVERS)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a run's topics (and its faust changelogs) by prefix, e.g. an old demo's."""
    from streams.kafka.topics import delete_topics

    s = Settings.from_env(bootstrap=bootstrap)
    if not yes:
        typer.confirm(f"delete every topic starting with {prefix!r} on {s.bootstrap}?", abort=True)
    try:
        gone = delete_topics(s.bootstrap, prefix)
    except BanditLPError as exc:
        fail(exc)
    console.print(f"deleted {len(gone)} topics" + "".join(f"\n  {t}" for t in gone))


def _register_commands() -> None:
    import importlib.util

    """Sub-apps living in their own modules (``streams/commands/``)."""
    from streams.cli.demo import demo
    from streams.cli.simulate import simulate
    from streams.cli.workers import worker_app

    if importlib.util.find_spec("streams.cli.lp"):  # the LP command ships with allocator/ (issue 4)
        from streams.cli.lp import lp_app

        app.add_typer(lp_app, name="lp")
    app.add_typer(worker_app, name="worker")
    app.command("demo")(demo)
    app.command("simulate")(simulate)


_register_commands()
