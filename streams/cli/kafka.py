"""``banditlp kafka up | down | status``: the local Apache Kafka broker (KRaft), no Docker."""

from __future__ import annotations

import typer

from banditlp.errors import BanditLPError
from streams.cli.common import console, fail, settings_of

kafka_app = typer.Typer(help="A local Apache Kafka broker (KRaft) with no Docker.", no_args_is_help=True)


def _broker(ctx: typer.Context):  # -> LocalBroker
    from streams.kafka.local_broker import LocalBroker, LocalBrokerConfig

    s = settings_of(ctx)
    return LocalBroker(LocalBrokerConfig(home=s.kafka_home, port=s.kafka_port))


@kafka_app.command("up")
def kafka_up(ctx: typer.Context) -> None:
    """Fetch the broker jars (once), format storage (once) and start the broker; idempotent."""
    broker = _broker(ctx)
    try:
        with console.status(f"starting Kafka on {broker.config.bootstrap} ..."):
            st = broker.up()
    except BanditLPError as exc:
        fail(exc)
    console.print(f"Kafka answers on [bold]{st.bootstrap}[/] (pid {st.pid or 'not ours'})")
    console.print(f"  log:  {st.log_path}\n  data: {st.data_dir}")


@kafka_app.command("down")
def kafka_down(ctx: typer.Context) -> None:
    """Stop the broker this project started (its data stays)."""
    stopped = _broker(ctx).down()
    console.print("broker stopped" if stopped else "no broker of ours was running")


@kafka_app.command("status")
def kafka_status(ctx: typer.Context) -> None:
    """Say whether the broker runs and answers, and where its log and data are."""
    st = _broker(ctx).status()
    console.print(
        f"{st.bootstrap}: {'answering' if st.answering else 'not answering'}; "
        f"pid {st.pid if st.pid else '-'}\n  log:  {st.log_path}\n  data: {st.data_dir}"
    )
    if not st.answering:
        raise typer.Exit(code=1)
