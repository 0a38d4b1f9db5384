"""``banditlp experiment``: BanditLP against its baselines on the simulated world, offline.

No Kafka: the same models/ and allocator/ code the streams run, driven batch by batch by
:mod:`evaluation.experiment`. It writes ``OUT/results.json`` (every measure per method, seed and
batch, and the sweeps; :mod:`evaluation.experiment.results`) and ``OUT/summary.json`` (the
figures over seeds, :mod:`evaluation.experiment.summary`: ``{"methods": {NAME: figures},
"sweeps": {SWEEP: {VALUE: {NAME: figures}}}}``), and prints the tables of those figures.

``--shift KIND --shift-batch B [--shift-size S]`` is the drift experiment: from batch B (1-based)
on, the world's user features move (``features``) or a base rate changes (``conversion``,
``unsubscription``; :mod:`evaluation.health.shift`). With a shift, or with ``--health``, the batch
health and its alarms (:mod:`evaluation.health`) are measured every batch: their series go into
results.json (``health.*``, ``alarm.*``), every record into ``OUT/health.json`` and a figure into
``OUT/health.png``, and the alarms are printed. Without either, nothing changes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

if TYPE_CHECKING:
    from evaluation.experiment.runner import ExperimentRun

from banditlp.errors import BanditLPError
from evaluation.email_world import EmailWorldConfig
from evaluation.health.shift import Shift
from streams.cli.common import console, default_of, fail


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"expected a comma list of numbers, got {text!r}", param_hint=option) from None


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"expected a comma list of integers, got {text!r}", param_hint=option) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def experiment(
    world: str = typer.Option("email", help="The simulated world (email)."),
    seeds: int = typer.Option(5, help="Independent repetitions (experiment seeds first-seed, +1, ...)."),
    first_seed: int = typer.Option(0, help="The first experiment seed."),
    batches: int = typer.Option(20, help="Send batches per seed."),
    users: int = typer.Option(default_of(EmailWorldConfig, "n_users"), help="Users in the world."),
    items: int = typer.Option(default_of(EmailWorldConfig, "n_items"), help="Items (marketing units)."),
    providers: int = typer.Option(default_of(EmailWorldConfig, "n_providers"), help="Providers owning the items."),
    candidates: int = typer.Option(
        default_of(EmailWorldConfig, "candidates_per_user"), help="Candidates per user per batch."
    ),
    world_seed: int = typer.Option(default_of(EmailWorldConfig, "seed"), help="Seed of the world itself."),
    tau: str = typer.Option(
        "1.0", help="Thompson temperature; a comma list is the tau sweep (the comparison runs at the first)."
    ),
    train_rows: str = typer.Option(
        "", help="Model-quality sweep: comma list of warm-start sizes (logged random sends) to run from."
    ),
    methods: str | None = typer.Option(None, help="Comma list of methods (default: all of them)."),
    sweep_methods: str = typer.Option("banditlp", help="Comma list of the methods the sweeps run."),
    warm_start_batches: int = typer.Option(5, help="Logged random-policy batches every model starts from."),
    overlap_k: int = typer.Option(10, help="K of overlap@K (top-K items by expected sends)."),
    variance_draws: int = typer.Option(4, help="Extra plans per batch behind the allocation variance (0: none)."),
    summary_from: int = typer.Option(
        4, help="First batch (1-based) of the summary's mean budget usage (the last batch when there are fewer)."
    ),
    baseline: str = typer.Option("nn_lp", help="The method cumulative rewards are compared against."),
    torch_threads: int = typer.Option(
        1, help="Torch intra-op threads (the small networks train fastest on one; 0: torch's default)."
    ),
    out: Path | None = typer.Option(None, help="Where results.json goes (default runs/experiment-<time>)."),
    shift: str | None = typer.Option(
        None, help="Drift experiment: shift 'features', 'conversion' or 'unsubscription' from --shift-batch on."
    ),
    shift_batch: int = typer.Option(1, help="The first shifted batch (1-based, as the report counts batches)."),
    shift_size: float | None = typer.Option(
        None,
        help="Shift size: standard deviations of every user feature (features, default 0.5) or a logit "
        "offset (rates, default log 2 = 0.693).",
    ),
    health: bool = typer.Option(False, help="Measure the batch health and its alarms (always on with --shift)."),
    version_guard: int | None = typer.Option(
        None,
        help="The version guard's N for banditlp and banditlp_naive_calibration (default: theirs, 5; 1 turns it off).",
    ),
) -> None:
    """Compare BanditLP with NN-LP, NNTS, LinUCB-LP, Random-LP and the oracle LP, offline."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from evaluation.experiment import (
        DEFAULT_METHODS,
        ExperimentConfig,
        run_experiment,
        stack,
        summarise,
        summary_json,
        table_rows,
        tasks,
        write_results,
    )
    from evaluation.experiment.summary import SWEEP_COLUMNS, TABLE_COLUMNS, summarise_sweeps, sweep_rows

    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    out = out or Path("runs") / f"experiment-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        config = ExperimentConfig(
            world=EmailWorldConfig(
                n_users=users, n_items=items, n_providers=providers, candidates_per_user=candidates, seed=world_seed
            ),
            world_name=world,
            seeds=seeds,
            first_seed=first_seed,
            batches=batches,
            methods=_names(methods) if methods else DEFAULT_METHODS,
            taus=_floats(tau, "--tau"),
            warm_start_batches=warm_start_batches,
            train_rows=_ints(train_rows, "--train-rows"),
            sweep_methods=_names(sweep_methods),
            overlap_k=overlap_k,
            variance_draws=variance_draws,
            summary_from=min(summary_from, max(batches, 1)),
            baseline=baseline,
            shift=None if shift is None else _shift(shift, shift_batch, shift_size),
            health=health,
            version_guard=version_guard,
        )
        started = time.monotonic()
        with Progress(
            TextColumn("{task.description:<32}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            planned = tasks(config)
            per_task = config.seeds * config.batches
            overall = progress.add_task("all", total=per_task * len(planned))
            bars = {t.label: progress.add_task(t.label, total=per_task) for t in planned}

            def on_batch(label: str, seed: int, batch: int) -> None:
                progress.advance(bars[label])
                progress.advance(overall)

            run = run_experiment(config, on_batch=on_batch)
        elapsed = time.monotonic() - started
        path = write_results(run, out)
        summaries = summarise(
            {name: stack(runs) for name, runs in run.methods.items()},
            baseline=config.baseline,
            summary_from=config.summary_from,
        )
        swept = summarise_sweeps(run.sweeps, summary_from=config.summary_from)
        figures: dict[str, object] = {"methods": summary_json(summaries)}
        if swept:
            figures["sweeps"] = {
                sweep: {label: summary_json(per_method) for label, per_method in points.items()}
                for sweep, points in swept.items()
            }
        (out / "summary.json").write_text(json.dumps(figures, indent=1, allow_nan=False) + "\n")
        health_paths = _write_health(run, out) if config.measures_health else None
    except BanditLPError as exc:
        fail(exc)
    title = (
        f"{config.seeds} seeds x {config.batches} batches, world seed {world_seed}, tau {config.tau:g} "
        f"(usage mean from batch {config.summary_from}; rewards vs {config.baseline})"
    )
    console.print(_table(title, TABLE_COLUMNS, table_rows(summaries)))
    if swept:
        console.print(_table("sweeps", SWEEP_COLUMNS, sweep_rows(swept)))
    console.print(f"results: {path} and {out / 'summary.json'} in {elapsed:.0f} s")
    if health_paths is not None:
        console.print(_alarm_table(run))
        console.print(f"health: {health_paths[0]} and {health_paths[1]}")
    from evaluation.reporting import write_report

    try:
        console.print(f"report: {write_report(out)}")
    except BanditLPError as exc:
        fail(exc)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "sweep", "value") else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _shift(kind: str, batch: int, size: float | None) -> Shift:
    if batch < 1:
        raise typer.BadParameter(f"must be >= 1, got {batch}", param_hint="--shift-batch")
    return Shift.of(kind, batch - 1, size)


def _write_health(run: ExperimentRun, out: Path) -> tuple[Path, Path]:
    from evaluation.health.report import write_health

    per_method = {name: [seed_run.health for seed_run in runs] for name, runs in run.methods.items()}
    return write_health(per_method, run.config.experiment_seeds, run.config.shift, out)


def _alarm_table(run: ExperimentRun) -> Table:
    """Per method and alarm: the batches (1-based) it fired in, per seed."""
    table = Table(title="alarms (batches, 1-based, per seed)")
    table.add_column("method", justify="left")
    table.add_column("alarm", justify="left")
    for seed in run.config.experiment_seeds:
        table.add_column(f"seed {seed}", justify="left")
    for name, runs in run.methods.items():
        fired: dict[str, list[list[int]]] = {}
        for s, seed_run in enumerate(runs):
            for h in seed_run.health:
                for a in h.alarms:
                    fired.setdefault(a.name, [[] for _ in runs])[s].append(a.batch + 1)
        for alarm, per_seed in sorted(fired.items()):
            table.add_row(name, alarm, *(",".join(map(str, b)) or "-" for b in per_seed))
    return table
