"""The ``banditlp`` command line: broker, topics, LP solver, workers, the demo and the simulator.

The root callback builds the process's one ``Settings`` from its options, each of which also
reads an environment variable (``envvar=``), and hands it to every command through the context.
Typed errors become one line and exit code 2 (``streams.cli.common.fail``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from banditlp.errors import BanditLPError
from streams.cli.bandit import bandit_app
from streams.cli.common import fail
from streams.cli.demo import demo
from streams.cli.experiment import experiment
from streams.cli.health import health
from streams.cli.kafka import kafka_app
from streams.cli.lp import lp_app
from streams.cli.monitor import monitor
from streams.cli.replay import replay_app
from streams.cli.report import report
from streams.cli.simulate import simulate
from streams.cli.soak import soak
from streams.cli.topics import topics_app
from streams.cli.tune import tune
from streams.cli.tune_metrics import tune_metrics
from streams.cli.workers import worker_app

app = typer.Typer(
    help="BanditLP on Kafka: constrained, exploration-aware recommendation decisions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    bootstrap: str | None = typer.Option(
        None,
        "--bootstrap",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers (default 127.0.0.1:<kafka port>).",
    ),
    security_protocol: str | None = typer.Option(
        None, envvar="KAFKA_SECURITY_PROTOCOL", help="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL."
    ),
    sasl_mechanism: str | None = typer.Option(
        None, envvar="KAFKA_SASL_MECHANISM", help="PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512."
    ),
    sasl_username: str | None = typer.Option(None, envvar="KAFKA_SASL_USERNAME"),
    sasl_password: str | None = typer.Option(
        None,
        envvar="KAFKA_SASL_PASSWORD",
        show_default=False,
        help="Prefer the environment variable: a flag shows in the process list.",
    ),
    ssl_ca_file: Path | None = typer.Option(
        None, envvar="KAFKA_SSL_CA_FILE", help="PEM file of the CAs that sign the brokers' certificates."
    ),
    schema_registry_url: str | None = typer.Option(
        None,
        envvar="BANDITLP_SCHEMA_REGISTRY_URL",
        help="A Confluent-compatible Schema Registry (default: the local registry of schemas/).",
    ),
    prefix: str | None = typer.Option(None, "--prefix", envvar="BANDITLP_TOPIC_PREFIX", help="Topic name prefix."),
    partitions: int | None = typer.Option(
        None, envvar="BANDITLP_PARTITIONS", help="Partitions of the keyed topics (default 4)."
    ),
    state_dir: Path | None = typer.Option(
        None, envvar="BANDITLP_STATE_DIR", help="RocksDB tables (default ~/.cache/banditlp/state)."
    ),
    kafka_home: Path | None = typer.Option(
        None, envvar="BANDITLP_KAFKA_HOME", help="The local broker's jars and data (default ~/.cache/banditlp/kafka)."
    ),
    kafka_port: int | None = typer.Option(
        None, envvar="BANDITLP_KAFKA_PORT", help="The local broker's port on 127.0.0.1 (default 9092)."
    ),
) -> None:
    """Options before the command set where the cluster is and how to reach it, for every command."""
    from streams.settings import Settings

    try:
        ctx.obj = Settings.from_env(
            {},
            bootstrap=bootstrap,
            security_protocol=security_protocol,
            sasl_mechanism=sasl_mechanism,
            sasl_username=sasl_username,
            sasl_password=sasl_password,
            ssl_ca_file=ssl_ca_file,
            schema_registry_url=schema_registry_url,
            topic_prefix=prefix,
            partitions=partitions,
            state_dir=state_dir,
            kafka_home=kafka_home,
            kafka_port=kafka_port,
        )
    except BanditLPError as exc:
        fail(exc)


app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(lp_app, name="lp")
worker_app.command("tune-metrics")(tune_metrics)
app.add_typer(worker_app, name="worker")
app.add_typer(replay_app, name="replay")
app.add_typer(bandit_app, name="bandit")
app.command("demo")(demo)
app.command("simulate")(simulate)
app.command("soak")(soak)
app.command("report")(report)
app.command("experiment")(experiment)
app.command("tune")(tune)
app.command("monitor")(monitor)
app.command("health")(health)
