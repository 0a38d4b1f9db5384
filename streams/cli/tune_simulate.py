"""``banditlp tune --simulate``: the live tuner's loop against the simulated email world, on the broker.

The demo's pipeline (``streams.cli.demo.simulated_pipeline``: the broker, this run's topics, model v1,
processors following the experiment, allocator, trainer) plus ``banditlp worker tune-metrics``, and the
tuner job (``streams.tune.job.TunerJob``) in this process, stepped once per send batch instead of once per
``--period-s``: the initial distribution before the first batch, then after each batch's feedback has
reached the tune-metrics windows, one fit and publication. The run directory gets the demo's summary,
plots and report and the tuner's ``tune-live.json``; ``banditlp report DIR`` renders both.

Stepping per batch keeps the run's length a number of batches, and makes every step see exactly the
feedback of the batches before it (a wall-clock period would cut batches at arbitrary points).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table

from evaluation.email_world import EmailWorldConfig
from streams.cli.common import console
from streams.cli.demo import check_decided, play_batches, report_run, simulated_pipeline
from streams.score.parameter_feed import ParameterDistributionRecord
from streams.settings import Settings
from streams.tune.job import TunerJob, TunerJobConfig
from streams.tune.run_log import TuneRunLog

#: Seconds the job follows the windows' changelogs after a batch, at most (feedback normally lands in ~2-5 s).
SETTLE_MAX_S = 30.0
#: A batch's feedback has landed once the windows' feedback count stops growing for this long.
SETTLE_QUIET_S = 3.0


def _feedback_counted(job: TunerJob) -> float:
    """Feedback records the tune-metrics windows have counted so far (every arm and window)."""
    return sum(w.sums.get("n_feedback", 0.0) for ws in job.reader.windows().values() for w in ws)


def _settle(job: TunerJob, before: float) -> float:
    """Follow the windows until the feedback count has grown past ``before`` and then stayed put for
    :data:`SETTLE_QUIET_S` (or :data:`SETTLE_MAX_S` passed); the count then."""
    deadline = time.monotonic() + SETTLE_MAX_S
    count, quiet_since = before, time.monotonic()
    while time.monotonic() < deadline:
        job.read_metrics(1.0)
        now = _feedback_counted(job)
        if now != count:
            count, quiet_since = now, time.monotonic()
        elif count > before and time.monotonic() - quiet_since >= SETTLE_QUIET_S:
            break
    return count


def run_simulated_tuning(
    settings: Settings,
    config: TunerJobConfig,
    world: EmailWorldConfig,
    run_dir: Path,
    *,
    batches: int,
    seed: int,
    warm_start_batches: int,
    window_s: float,
    keep_topics: bool,
) -> None:
    """Play ``batches`` send batches with the tuner stepping after each (module docstring); print the
    distribution of every step and the demo's summary.

    Raises:
        BanditLPError: the broker, the topics, a worker or the tuner failed.
        typer.Exit: code 1 when a closed batch left users without a decision.
    """
    from streams.simulate.feed import SimulatorConfig, SimulatorFeed

    with simulated_pipeline(
        settings,
        run_dir,
        "tune",
        world,
        seed=seed,
        warm_start_batches=warm_start_batches,
        processor_args=["--experiment", config.experiment, "--seed", str(seed)],
        keep_topics=keep_topics,
    ) as pipe:
        # The worker keeps as many windows as the job counts (--windows, at least 2).
        pipe.workers.start(
            "tune-metrics",
            ["worker", "tune-metrics", "--window-s", str(window_s), "--windows-kept", str(max(config.windows, 2))],
            pipe.env,
        )
        run_log = TuneRunLog(run_dir, config.experiment, config.knobs, config.windows, config.max_unsubscription_rate)
        job = TunerJob(config, pipe.run.connection, pipe.serde, pipe.names, run_log)
        first = job.step()  # the initial distribution, before any batch is scored
        steps: list[tuple[int, str]] = [(0, _describe(first))]
        time.sleep(2.0)  # the scorer follows the topic; give it a moment to read version 1
        feed = SimulatorFeed(SimulatorConfig(names=pipe.names, world=world, seed=seed), pipe.run.connection, pipe.serde)
        counted = 0.0

        def step_after_batch() -> None:
            nonlocal counted
            counted = _settle(job, counted)
            steps.append((len(steps), _describe(job.step())))

        calls = 0

        def between_batches() -> None:  # play_batches calls it before every batch
            nonlocal calls
            pipe.workers.check()
            if calls > 0:
                step_after_batch()
            calls += 1

        try:
            runs = play_batches(feed, batches, check=between_batches)
            step_after_batch()  # the last batch's feedback too: the distribution the run ends with
        finally:
            feed.close()
            job.reader.close()
        report_run(runs, run_dir, f"BanditLP tuned: {batches} batches x {world.n_users} users")
        table = Table(title=f"tuner steps (experiment {config.experiment}, {counted:.0f} feedback records counted)")
        table.add_column("after batch", justify="right")
        table.add_column("distribution published")
        for after, text in steps:
            table.add_row(str(after), text)
        console.print(table)
        console.print(f"tuning log: {run_log.path}; logs: {run_dir / 'logs'}")
        check_decided(runs)


def _describe(record: ParameterDistributionRecord | None) -> str:
    """``v<version>: knobs p; ...`` of a published distribution, most probable arm first."""
    if record is None:
        return "(too few observations: the distribution in force is kept)"
    arms = sorted(record.arms, key=lambda a: -a.probability)
    knobs = "; ".join(
        ",".join(f"{k}={v:.2f}" for k, v in sorted(a.parameters.items())) + f" p={a.probability:.2f}" for a in arms
    )
    return f"v{record.version}: {knobs}"
