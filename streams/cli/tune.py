"""``banditlp tune --synthetic``: the constrained Bayesian-optimisation tuner against random and grid search.

No Kafka: the tuner of :mod:`models.tuner` on the synthetic problem of :mod:`evaluation.tuning.problem`,
each method spending the same budget of noisy observations in rounds (:mod:`evaluation.tuning.loop`).
Writes ``OUT/tune.json`` (``{"methods": {name: {"mass_near_best_feasible": [...], "best_feasible_found":
[...]}}, "best_feasible": f*}``), ``OUT/tune.md`` (the tables it prints), ``OUT/tune_distribution.png``
(the first seed's final tuner distribution over the box with the feasible region) and
``OUT/assignment.json`` (users changing arm between the first seed's successive tuner distributions:
the minimal relayout against the total-variation minimum, a stateless layout and a fresh hash).

Through the broker (``streams.tune``):

- ``banditlp tune --publish --experiment NAME --arm 'tau=1.0:0.5' --arm 'tau=0.5:0.5'`` publishes the given
  arms once as the experiment's next distribution on the compacted parameter-distribution topic (version
  one above the newest there, laid out from its layout), prints it and exits;
- ``banditlp tune --live --experiment NAME --knob tau=0:2 --period-s 60`` runs the tuner job: every period
  it fits the per-arm metrics of the newest ``--windows`` windows of ``banditlp worker tune-metrics`` and
  publishes the next distribution (``--periods N``: stop after N);
- ``banditlp tune --simulate --batches 12 --out DIR`` runs that loop against the simulated email world:
  the demo's pipeline plus tune-metrics, the job stepped once per send batch
  (``streams.cli.tune_simulate``); ``banditlp report DIR`` renders the run and the tuner's steps.

The scorers (``banditlp worker processors --experiment NAME``) serve each user the arm its hash falls in.
"""

from __future__ import annotations

from pathlib import Path

import typer

from banditlp.errors import BanditLPError
from streams.cli.common import console, default_of, fail


def tune(
    ctx: typer.Context,
    synthetic: bool = typer.Option(False, "--synthetic", help="Run on the synthetic problem (no broker)."),
    live: bool = typer.Option(False, "--live", help="Run the tuner job against the broker until SIGTERM/Ctrl-C."),
    publish: bool = typer.Option(False, "--publish", help="Publish the --arm distribution once and exit."),
    simulate: bool = typer.Option(
        False,
        "--simulate",
        help="Run the live tuner against the simulated email world on the broker (the demo's pipeline), one "
        "step per send batch; --out is the run directory (default runs/tune-<time>).",
    ),
    batches: int = typer.Option(12, "--batches", "-r", min=1, help="--simulate: send batches to play."),
    users: int = typer.Option(300, "--users", min=1, help="--simulate: users in the simulated world."),
    items: int = typer.Option(40, "--items", min=1, help="--simulate: items."),
    providers: int = typer.Option(8, "--providers", min=1, help="--simulate: providers."),
    seed: int = typer.Option(0, "--seed", min=0, help="--simulate: the world's, simulator's and tuner's seed."),
    warm_start_batches: int = typer.Option(
        5, "--warm-start-batches", min=1, help="--simulate: logged random-policy batches that train model v1."
    ),
    window_s: float = typer.Option(
        20.0, "--window-s", help="--simulate: the tune-metrics window, seconds (about one send batch)."
    ),
    keep_topics: bool = typer.Option(False, "--keep-topics", help="--simulate: keep the run's topics at the end."),
    experiment: str = typer.Option("tau", "--experiment", help="The experiment (the scorers' --experiment)."),
    arm: list[str] = typer.Option(
        [], "--arm", help="--publish: an arm, [ARM_ID/]KNOB=VALUE[,KNOB=VALUE...]:PROBABILITY (repeat it)."
    ),
    salt: str = typer.Option("", "--salt", help="--publish: hash salt (a new one reshuffles every user)."),
    knob: list[str] = typer.Option(
        [], "--knob", help="--live: a tuned knob and its box, NAME=LO:HI (repeat it; default tau=0:2)."
    ),
    period_s: float = typer.Option(60.0, "--period-s", help="--live: seconds between tuning steps."),
    periods: int | None = typer.Option(None, "--periods", min=1, help="--live: stop after this many steps."),
    max_unsubscription_rate: float = typer.Option(
        0.01, "--max-unsubscription-rate", help="--live: the guardrail, unsubscriptions per send."
    ),
    min_feedback: int = typer.Option(50, "--min-feedback", min=1, help="--live: feedback an arm needs to count."),
    max_arms: int = typer.Option(8, "--max-arms", min=1, help="--live: arms published at most."),
    min_overlap: float | None = typer.Option(
        None,
        "--min-overlap",
        min=0.0,
        max=1.0,
        help="--live: exploration-stability guardrail, an arm's mean overlap@K between consecutive decisions >= it.",
    ),
    windows: int = typer.Option(
        12, "--windows", min=1, help="--live: the newest tune-metrics windows that count (older ones age out)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="--live/--publish: debug | info | warning | error."),
    seeds: int = typer.Option(10, "--seeds", min=1, help="Seeds first-seed, +1, ... (the same noise per seed)."),
    first_seed: int = typer.Option(0, "--first-seed", min=0, help="The first seed."),
    budget: int | None = typer.Option(None, "--budget", min=1, help="Observations per method and seed (default 64)."),
    rounds: int | None = typer.Option(None, "--rounds", min=1, help="Rounds the budget is spent in (default 8)."),
    samples: int | None = typer.Option(None, "--samples", min=1, help="S, joint posterior draws per step (1024)."),
    candidates: int | None = typer.Option(None, "--candidates", min=1, help="Sobol candidates (default 512)."),
    methods: str = typer.Option("tuner,random_search,grid_search", "--methods", help="Comma list of methods."),
    torch_threads: int = typer.Option(1, "--torch-threads", min=0, help="Torch intra-op threads (0: default)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="--synthetic: directory for tune.json, tune.md and tune_distribution.png; --live/--publish: the run "
        "directory, each step appended to its tune-live.json (banditlp report renders it).",
    ),
) -> None:
    """Tune the synthetic problem (--synthetic: GP Thompson tuner vs random and grid search, a table), or
    publish a parameter distribution (--publish) or run the live tuner (--live) on the broker."""
    from streams.errors import ConfigError

    if sum((synthetic, live, publish, simulate)) != 1:
        fail(ConfigError("pass exactly one of --synthetic, --live, --publish and --simulate"))
    if simulate:
        _simulate_mode(
            ctx, experiment, knob, max_unsubscription_rate, min_feedback, max_arms, windows, min_overlap, out,
            batches, users, items, providers, seed, warm_start_batches, window_s, keep_topics,
        )  # fmt: skip
        return
    if publish or live:
        _broker_mode(
            ctx, publish, experiment, arm, salt, knob, period_s, periods, max_unsubscription_rate, min_feedback,
            max_arms, log_level, windows, out, min_overlap,
        )  # fmt: skip
        return
    try:
        if out is None:
            raise ConfigError("--synthetic needs --out DIR")
        import torch
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from evaluation.tuning.loop import LoopConfig
        from evaluation.tuning.problem import SyntheticProblem
        from evaluation.tuning.report import run_experiment, write_outputs

        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        config = LoopConfig(
            budget=budget if budget is not None else default_of(LoopConfig, "budget"),
            rounds=rounds if rounds is not None else default_of(LoopConfig, "rounds"),
            n_samples=samples if samples is not None else default_of(LoopConfig, "n_samples"),
            n_candidates=candidates if candidates is not None else default_of(LoopConfig, "n_candidates"),
        )
        names = [m.strip() for m in methods.split(",") if m.strip()]
        problem = SyntheticProblem()
        seed_list = list(range(first_seed, first_seed + seeds))
        with Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bars = {m: progress.add_task(m, total=seeds * config.rounds) for m in names}
            result = run_experiment(
                problem, config, seed_list, names, on_round=lambda m, s, r: progress.advance(bars[m])
            )
        paths = write_outputs(result, out)
    except BanditLPError as exc:
        fail(exc)
    typer.echo(paths["table"].read_text())  # plain: the tables are markdown and must not be wrapped
    for path in paths.values():
        typer.echo(f"wrote {path}")


def _simulate_mode(
    ctx: typer.Context,
    experiment: str,
    knob: list[str],
    max_unsubscription_rate: float,
    min_feedback: int,
    max_arms: int,
    windows: int,
    min_overlap: float | None,
    out: Path | None,
    batches: int,
    users: int,
    items: int,
    providers: int,
    seed: int,
    warm_start_batches: int,
    window_s: float,
    keep_topics: bool,
) -> None:
    """``--simulate``: the tuner job stepped per batch against the simulated world (``streams.cli.tune_simulate``)."""
    import time

    from evaluation.email_world import EmailWorldConfig
    from streams.cli.common import settings_of
    from streams.cli.tune_simulate import run_simulated_tuning
    from streams.tune.job import TunerJobConfig

    try:
        config = TunerJobConfig(
            experiment=experiment,
            knobs=tuple(_parse_knob(k) for k in knob) or TunerJobConfig().knobs,
            max_unsubscription_rate=max_unsubscription_rate,
            min_feedback=min_feedback,
            max_arms=max_arms,
            initial_arms=min(TunerJobConfig().initial_arms, max_arms),
            windows=windows,
            min_overlap=min_overlap,
            seed=seed,
        )
        world = EmailWorldConfig(n_users=users, n_items=items, n_providers=providers, seed=seed)
        run_simulated_tuning(
            settings_of(ctx),
            config,
            world,
            out or Path("runs") / f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            batches=batches,
            seed=seed,
            warm_start_batches=warm_start_batches,
            window_s=window_s,
            keep_topics=keep_topics,
        )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; stopping workers[/]")
        raise typer.Exit(code=130) from None
    except BanditLPError as exc:
        fail(exc)


def _parse_knob(spec: str) -> tuple[str, float, float]:
    from streams.errors import ConfigError

    name, eq, box = spec.partition("=")
    lo, colon, hi = box.partition(":")
    try:
        if not (eq and colon and name.strip()):
            raise ValueError
        return name.strip(), float(lo), float(hi)
    except ValueError:
        raise ConfigError(f"knob {spec!r} is not NAME=LO:HI") from None


def _broker_mode(
    ctx: typer.Context,
    publish: bool,
    experiment: str,
    arm: list[str],
    salt: str,
    knob: list[str],
    period_s: float,
    periods: int | None,
    max_unsubscription_rate: float,
    min_feedback: int,
    max_arms: int,
    log_level: str,
    windows: int = 12,
    out: Path | None = None,
    min_overlap: float | None = None,
) -> None:
    """``--publish`` (one distribution, printed) or ``--live`` (the tuner job until SIGTERM or ``periods``)."""
    import signal
    import threading

    from streams.cli.common import configure_logging, settings_of
    from streams.errors import ConfigError
    from streams.tune.distribution import parse_arm
    from streams.tune.distribution import publish as publish_arms
    from streams.tune.job import TunerJob, TunerJobConfig
    from streams.tune.run_log import TuneRunLog

    configure_logging(log_level)
    s = settings_of(ctx)
    try:
        if publish:
            if not arm:
                raise ConfigError("--publish needs at least one --arm")
            record = publish_arms(
                s.connection,
                s.serde(),
                s.names("parameter-distribution"),
                experiment,
                [parse_arm(a) for a in arm],
                salt,
            )
            if out is not None:
                TuneRunLog(out, experiment).step(record, record, {})
            typer.echo(f"published {record.experiment} version {record.version}:")
            for a in record.arms:
                knobs = ",".join(f"{k}={v:g}" for k, v in sorted(a.parameters.items()))
                typer.echo(f"  {a.arm_id}  {knobs}  p={a.probability:g}")
            return
        config = TunerJobConfig(
            experiment=experiment,
            knobs=tuple(_parse_knob(k) for k in knob) or TunerJobConfig().knobs,
            period_s=period_s,
            max_unsubscription_rate=max_unsubscription_rate,
            min_feedback=min_feedback,
            max_arms=max_arms,
            initial_arms=min(TunerJobConfig().initial_arms, max_arms),
            windows=windows,
            min_overlap=min_overlap,
            metrics_app_id=TunerJobConfig().metrics_app_id,
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        run_log = (
            TuneRunLog(out, experiment, config.knobs, config.windows, config.max_unsubscription_rate)
            if out is not None
            else None
        )
        TunerJob(config, s.connection, s.serde(), s.names, run_log).run(stop, periods)
    except BanditLPError as exc:
        fail(exc)
