"""``banditlp worker processors | allocator | trainer``: run one worker process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from streams.errors import BrokerError
from streams.kafka.topics import TopicNames
from streams.settings import Settings

worker_app = typer.Typer(help="Run one of the pipeline's workers until SIGTERM.", no_args_is_help=True)

BootstrapOpt = typer.Option(None, "--bootstrap", help="(env KAFKA_BOOTSTRAP_SERVERS)")
PrefixOpt = typer.Option(None, "--prefix", help="Topic name prefix (env BANDITLP_TOPIC_PREFIX).")


def _settings(bootstrap: Optional[str], prefix: Optional[str], **kw: object) -> Settings:
    return Settings.from_env(bootstrap=bootstrap, topic_prefix=prefix, **kw)


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@worker_app.command("processors")
def processors(
    bootstrap: Optional[str] = BootstrapOpt,
    prefix: Optional[str] = PrefixOpt,
    state_dir: Optional[Path] = typer.Option(None, help="RocksDB tables (env BANDITLP_STATE_DIR)."),
    partitions: Optional[int] = typer.Option(None, help="(env BANDITLP_PARTITIONS)"),
    tau: float = typer.Option(1.0, help="Thompson temperature: posterior covariance scale (0 = greedy)."),
    model_name: str = typer.Option("email", help="Model snapshot name to score with."),
    feature_dim: Optional[int] = typer.Option(None, help="Pair-feature width of the cold-start prior, "
                                              "used until a model snapshot exists (default: the first record's)."),
    take: int = typer.Option(500, help="Records an agent takes at once (scored in one vectorised pass)."),
    within_s: float = typer.Option(0.05, help="Longest wait, in seconds, to fill a take."),
    seed: int = typer.Option(0),
) -> None:
    """The faust scorer (candidates -> scores) and learner (feedback -> posterior tables)."""
    from streams.processors.app import ProcessorConfig, run_worker

    s = _settings(bootstrap, prefix, state_dir=state_dir, partitions=partitions)
    names = TopicNames(s.topic_prefix)
    try:
        run_worker(ProcessorConfig(bootstrap=s.bootstrap, names=names, state_dir=s.state_dir,
                                   partitions=s.partitions, app_id=f"{s.topic_prefix}banditlp-processors",
                                   tau=tau, model_name=model_name, seed=seed, feature_dim=feature_dim,
                                   take=take, within_s=within_s))
    except BrokerError as exc:  # the changelogs could not be made: say why, do not start half a worker
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc


@worker_app.command("allocator")
def allocator(
    bootstrap: Optional[str] = BootstrapOpt,
    prefix: Optional[str] = PrefixOpt,
    highs_threshold: int = typer.Option(50_000, help="LP pairs up to which HiGHS solves; the dual solver above."),
    rounding: str = typer.Option("sample", help="sample (systematic, propensity x) | top (propensity 1)."),
    seed: int = typer.Option(0, help="Mixed with each batch id to seed its rounding."),
    unknown_batch_timeout_s: float = typer.Option(300.0, help="Scores of a batch never OPENED are "
                                                  "dead-lettered after this many seconds."),
    open_timeout_s: float = typer.Option(3600.0, help="A batch OPENED but never CLOSED is decided with "
                                         "the users scored so far after this many seconds."),
    log_level: str = typer.Option("info"),
) -> None:
    """The windowed, transactional allocator: scores -> LP -> decisions, exactly once."""
    from streams.decide import worker as allocator_worker

    s = _settings(bootstrap, prefix)
    code = allocator_worker.main([
        "--bootstrap", s.bootstrap, "--prefix", s.topic_prefix, "--highs-threshold", str(highs_threshold),
        "--rounding", rounding, "--seed", str(seed), "--unknown-batch-timeout", str(unknown_batch_timeout_s),
        "--open-timeout", str(open_timeout_s), "--log-level", log_level])
    raise typer.Exit(code=code)


@worker_app.command("trainer")
def trainer(
    bootstrap: Optional[str] = BootstrapOpt,
    prefix: Optional[str] = PrefixOpt,
    model_name: str = typer.Option("email"),
    retrain_every: int = typer.Option(2000, help="New training rows that trigger a retrain."),
    retrain_interval_s: float = typer.Option(30.0, help="Retrain at least this often when new rows came in."),
    min_rows: int = typer.Option(200, help="Rows needed before the first retrain."),
    log_level: str = typer.Option("info"),
) -> None:
    """Retrain the global model from training-rows and publish versioned snapshots."""
    from streams.train.trainer import TrainerConfig, run_trainer

    s = _settings(bootstrap, prefix)
    _logging(log_level)
    run_trainer(TrainerConfig(bootstrap=s.bootstrap, names=TopicNames(s.topic_prefix), model_name=model_name,
                              retrain_every=retrain_every, retrain_interval_s=retrain_interval_s, min_rows=min_rows))
