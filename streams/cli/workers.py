"""``banditlp worker processors | allocator | trainer``: run one worker process until SIGTERM.

Each command builds its worker's config from its options (whose defaults are the config
dataclass's own, ``default_of``) and hands the process's connection and serde down. Nothing
here imports torch: the allocator, which needs none, starts in well under a second.

Every command takes ``--metrics-port`` (``BANDITLP_METRICS_PORT``) and ``--metrics-bind``
(``BANDITLP_METRICS_BIND``, default 127.0.0.1): set, the worker serves its Prometheus
instruments on ``http://BIND:PORT/metrics`` (``streams.metrics``); unset, no endpoint.
"""

from __future__ import annotations

import typer

from models.errors import ModelInputError
from models.pacing import PacingConfig
from models.version_guard import VersionGuardConfig
from streams.cli.common import configure_logging, default_of, fail, settings_of
from streams.decide.config import SOLVERS, AllocatorWorkerConfig
from streams.errors import BanditLPError, BrokerError, ConfigError
from streams.kafka.connection import GROUP_TIMEOUTS, GroupTimeouts
from streams.metrics.config import MetricsConfig
from streams.processors.config import ProcessorConfig
from streams.train.config import TrainerConfig

worker_app = typer.Typer(help="Run one of the pipeline's workers until SIGTERM.", no_args_is_help=True)
LogLevelOpt = typer.Option("info", help="debug | info | warning | error.")
MetricsPortOpt = typer.Option(
    None,
    envvar="BANDITLP_METRICS_PORT",
    min=1,
    max=65535,
    help="Serve Prometheus metrics on http://BIND:PORT/metrics (default: no endpoint). One port per "
    "worker process: two workers on one host need two ports.",
)
MetricsBindOpt = typer.Option(
    default_of(MetricsConfig, "bind"), envvar="BANDITLP_METRICS_BIND", help="Address the metrics endpoint binds."
)


def metrics_config(port: int | None, bind: str) -> MetricsConfig:
    """The endpoint's config from the two options (a bad value ends the command, exit code 2)."""
    try:
        return MetricsConfig(port=port, bind=bind)
    except BanditLPError as exc:
        fail(exc)


@worker_app.command("processors")
def processors(
    ctx: typer.Context,
    tau: float = typer.Option(
        default_of(ProcessorConfig, "tau"), help="Thompson temperature: posterior covariance scale (0 = greedy)."
    ),
    experiment: str = typer.Option(
        default_of(ProcessorConfig, "experiment"),
        help="Tuner experiment whose newest parameter distribution serves each user an arm (its tau); "
        "none published: every user at --tau.",
    ),
    draws: int = typer.Option(
        default_of(ProcessorConfig, "n_draws"),
        min=1,
        help="K: Thompson draws per pair; the allocator solves one LP per draw and logs exact propensities.",
    ),
    model_name: str = typer.Option(
        default_of(ProcessorConfig, "model_name"), help="Model snapshot name to score with."
    ),
    feature_dim: int | None = typer.Option(
        None,
        help="Pair-feature width of the cold-start prior, used until a model "
        "snapshot exists (default: the first record's).",
    ),
    take: int = typer.Option(
        default_of(ProcessorConfig, "take"), help="Records an agent takes at once (scored in one vectorised pass)."
    ),
    within_s: float = typer.Option(
        default_of(ProcessorConfig, "within_s"), help="Longest wait, in seconds, to fill a take."
    ),
    seed: int = typer.Option(default_of(ProcessorConfig, "seed")),
    policy: str = typer.Option(
        ",".join(default_of(ProcessorConfig, "policies")),
        envvar="BANDITLP_POLICY",
        help="NAME[,NAME...]: who scores the conversion outcome. banditlp: the neural Thompson model "
        "(default); any name of `banditlp bandit list`: that policy. Several names share the users "
        "equally by a hash of the user id. An unknown name exits 2.",
    ),
    policy_actions: int = typer.Option(
        default_of(ProcessorConfig, "policy_actions"),
        envvar="BANDITLP_POLICY_ACTIONS",
        min=1,
        help="Arms of a registered policy's rounds: items map onto them by a hash of their id.",
    ),
    instance: str | None = typer.Option(
        None,
        envvar="BANDITLP_WORKER_INSTANCE",
        help="This worker's name among the processors workers (e.g. 0, 1, ... or the pod's name): the same "
        "across its restarts, distinct between workers. Makes it a static group member, so a restart within "
        f"the {GROUP_TIMEOUTS.session_timeout_ms / 1000:g} s session timeout takes its partitions back without "
        "a rebalance. Unset: dynamic membership.",
    ),
    session_timeout_ms: int = typer.Option(
        GROUP_TIMEOUTS.session_timeout_ms, hidden=True, help="Group session timeout (benchmarks only)."
    ),
    heartbeat_interval_ms: int = typer.Option(
        GROUP_TIMEOUTS.heartbeat_interval_ms, hidden=True, help="Group heartbeat interval (benchmarks only)."
    ),
    metrics_port: int | None = MetricsPortOpt,
    metrics_bind: str = MetricsBindOpt,
    log_level: str = LogLevelOpt,
) -> None:
    """The faust scorer (candidates -> scores) and learner (feedback -> posterior tables)."""
    from streams.processors.app import run_worker

    s = settings_of(ctx)
    metrics = metrics_config(metrics_port, metrics_bind)
    try:
        cfg = ProcessorConfig(
            names=s.names,
            state_dir=s.state_dir,
            partitions=s.partitions,
            app_id=f"{s.topic_prefix}banditlp-processors",
            tau=tau,
            experiment=experiment,
            model_name=model_name,
            seed=seed,
            feature_dim=feature_dim,
            n_draws=draws,
            take=take,
            within_s=within_s,
            policies=tuple(policy.split(",")),
            policy_actions=policy_actions,
            instance=instance or None,
            group=GroupTimeouts(
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=heartbeat_interval_ms,
                max_poll_interval_ms=GROUP_TIMEOUTS.max_poll_interval_ms,
                rebalance_timeout_ms=max(GROUP_TIMEOUTS.rebalance_timeout_ms, session_timeout_ms),
            ),
        )
    except BanditLPError as exc:
        fail(exc)
    try:
        run_worker(cfg, s.connection, s.serde(), loglevel=log_level, metrics=metrics)
    except (BrokerError, ConfigError) as exc:  # no changelogs, or no metrics port: do not start half a worker
        fail(exc)


@worker_app.command("allocator")
def allocator(
    ctx: typer.Context,
    solver: str = typer.Option(
        default_of(AllocatorWorkerConfig, "solver"),
        help=f"First solver of each batch: {' | '.join(SOLVERS)} (auto: by size, "
        "allocator.AUTO_THRESHOLD); the other one is its fallback.",
    ),
    rounding: str = typer.Option(
        default_of(AllocatorWorkerConfig, "rounding"), help="sample (systematic, propensity x) | top (propensity 1)."
    ),
    seed: int = typer.Option(
        default_of(AllocatorWorkerConfig, "seed"), help="Mixed with each batch id to seed its rounding."
    ),
    unknown_batch_timeout_s: float = typer.Option(
        default_of(AllocatorWorkerConfig, "unknown_batch_timeout_s"),
        help="Scores of a batch never OPENED are dead-lettered after this many seconds.",
    ),
    open_timeout_s: float = typer.Option(
        default_of(AllocatorWorkerConfig, "open_timeout_s"),
        help="A batch OPENED but never CLOSED is decided with the users scored so far after this many seconds.",
    ),
    stats_interval_s: float = typer.Option(
        default_of(AllocatorWorkerConfig, "stats_interval_s"), help="Seconds between stats log lines."
    ),
    mean_budget_rows: bool = typer.Option(
        default_of(AllocatorWorkerConfig, "mean_budget_rows"),
        "--mean-budget-rows/--no-mean-budget-rows",
        help="Each budget row gets a twin on the calibrated posterior means (same limit): every plan meets "
        "the budget under its own draw and under the means.",
    ),
    exploration_floor: float = typer.Option(
        default_of(AllocatorWorkerConfig, "exploration_floor"),
        help="Share in [0, 1) of every plan mixed with a spread plan that keeps every row: no candidate has "
        "propensity 0, so a replay sees every pair (costs at most that share of the objective; 0: off).",
    ),
    poll_timeout_s: float = typer.Option(
        default_of(AllocatorWorkerConfig, "poll_timeout_s"), hidden=True, help="Consumer poll timeout in seconds."
    ),
    stuck_call_s: float = typer.Option(
        default_of(AllocatorWorkerConfig, "stuck_call_s"),
        help="A Kafka call blocked this long ends the worker with exit code 3, for its supervisor to restart it.",
    ),
    debug_sleep_before_commit_s: float = typer.Option(
        default_of(AllocatorWorkerConfig, "debug_sleep_before_commit_s"),
        hidden=True,
        help="Crash tests: sleep this long inside each open transaction.",
    ),
    max_seconds: float | None = typer.Option(None, help="Stop after this long (default: run until SIGTERM)."),
    metrics_port: int | None = MetricsPortOpt,
    metrics_bind: str = MetricsBindOpt,
    log_level: str = LogLevelOpt,
) -> None:
    """The windowed, transactional allocator: scores -> LP -> decisions, exactly once."""
    from streams.decide.worker import run_allocator

    s = settings_of(ctx)
    metrics = metrics_config(metrics_port, metrics_bind)
    configure_logging(log_level)
    try:
        cfg = AllocatorWorkerConfig.for_prefix(
            s.topic_prefix,
            solver=solver,
            rounding=rounding,  # validated by AllocatorWorkerConfig
            seed=seed,
            unknown_batch_timeout_s=unknown_batch_timeout_s,
            open_timeout_s=open_timeout_s,
            stats_interval_s=stats_interval_s,
            mean_budget_rows=mean_budget_rows,
            exploration_floor=exploration_floor,
            poll_timeout_s=poll_timeout_s,
            stuck_call_s=stuck_call_s,
            debug_sleep_before_commit_s=debug_sleep_before_commit_s,
        )
    except ValueError as exc:
        fail(exc)
    try:
        code = run_allocator(cfg, s.connection, s.serde(), max_seconds=max_seconds, metrics=metrics)
    except ConfigError as exc:  # the metrics port cannot be bound
        fail(exc)
    raise typer.Exit(code=code)


@worker_app.command("trainer")
def trainer(
    ctx: typer.Context,
    model_name: str = typer.Option(default_of(TrainerConfig, "model_name")),
    retrain_every: int = typer.Option(
        default_of(TrainerConfig, "retrain_every"), help="New training rows that trigger a retrain."
    ),
    retrain_interval_s: float = typer.Option(
        default_of(TrainerConfig, "retrain_interval_s"), help="Retrain at least this often when new rows came in."
    ),
    min_rows: int = typer.Option(default_of(TrainerConfig, "min_rows"), help="Rows needed before the first retrain."),
    pacing_prior: float = typer.Option(
        default_of(PacingConfig, "prior_events"),
        help="Cost pacing: the prior's pseudo-events at factor 1; 0 turns pacing off (unsubscription costs unscaled).",
    ),
    pacing_memory: float = typer.Option(
        default_of(PacingConfig, "memory"), help="Cost pacing: discount of the counts per retrain, in (0, 1]."
    ),
    pacing_quantile: float = typer.Option(
        default_of(PacingConfig, "quantile"),
        help="Cost pacing: the factor is this quantile of its posterior, in (0, 1); higher is warier.",
    ),
    version_guard: int = typer.Option(
        default_of(VersionGuardConfig, "versions"),
        help="Version guard: scale costs by the warier of the last N model versions on the new rows; 1 turns it off.",
    ),
    metrics_port: int | None = MetricsPortOpt,
    metrics_bind: str = MetricsBindOpt,
    log_level: str = LogLevelOpt,
) -> None:
    """Retrain the global model from training-rows and publish versioned snapshots.

    Each version carries a cost pacing factor for the unsubscription outcome (on by default):
    the posterior quantile of realised unsubscriptions over the costs budgeted for them.
    """
    from streams.train.trainer import run_trainer

    s = settings_of(ctx)
    metrics = metrics_config(metrics_port, metrics_bind)
    configure_logging(log_level)
    try:
        pacing = PacingConfig(prior_events=pacing_prior, memory=pacing_memory, quantile=pacing_quantile)
        guard = VersionGuardConfig(versions=version_guard)
    except ModelInputError as exc:
        fail(exc)
    try:
        run_trainer(
            TrainerConfig(
                names=s.names,
                model_name=model_name,
                retrain_every=retrain_every,
                retrain_interval_s=retrain_interval_s,
                min_rows=min_rows,
                pacing=pacing,
                version_guard=guard,
            ),
            s.connection,
            s.serde(),
            metrics=metrics,
        )
    except ConfigError as exc:  # the metrics port cannot be bound
        fail(exc)
