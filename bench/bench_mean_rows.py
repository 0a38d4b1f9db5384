"""Benchmark: the cost of the mean budget rows (``worker allocator --mean-budget-rows``) on the pipeline.

For each K of ``--draws`` the pipeline of ``bench/bench_pipeline.py`` (``run_pipeline``: a fresh topic
namespace, model v1 trained on a logged random policy, the processors workers and the allocator as
processes, a warm-up batch, then ``--batches`` measured batches of ``--users`` x ``--candidates``) runs
once per arm of ``--arms``, in the given order and in this one process: ``off`` starts the allocator
with ``--no-mean-budget-rows``, ``on`` with the rows (the default). Reported per K: batch CLOSED ->
committed decisions p50 and p99, the p99 less the batch's last score after CLOSED (the allocator's own
share: the scorer's pace varies from run to run) and the allocator's solve time of all K plans in each
arm, the on / off ratio of each (medians over the arms' batches), and the measured batch's budget rows
(the plan's use on its draw and, with the rows, on the means). The off arm is the baseline of the ratios.

    nice -n 10 ~/.cache/banditlp/venv/bin/python bench/bench_mean_rows.py --draws 1,4 \\
        --out bench/results/mean-rows-cpu-2core.json
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_pipeline, beside this file

import psutil  # noqa: E402
import typer  # noqa: E402
from bench_pipeline import PipelineRun, run_pipeline  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from streams.kafka.local_broker import ensure_kafka  # noqa: E402
from streams.kafka.topics import delete_topics  # noqa: E402
from streams.settings import Settings  # noqa: E402

console = Console(width=160)
ARMS = {"off": ("--no-mean-budget-rows",), "on": ("--mean-budget-rows",)}
KEYS = ("decision_p50_s", "decision_p99_s", "decision_last_s", "last_score_after_close_s", "p99_after_last_score_s")


def summary(arm_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over every measured batch of one arm's runs."""
    batches = [b for run in arm_runs for b in run["pipeline_batches"]]
    for b in batches:  # the allocator's own share: from the batch's last score to its p99 decision
        b["p99_after_last_score_s"] = b["decision_p99_s"] - b["last_score_after_close_s"]
    out: dict[str, Any] = {k: statistics.median(b[k] for b in batches) for k in KEYS}
    out["solve_s"] = statistics.median(b["allocator_report"].get("solve_seconds") or 0.0 for b in batches)
    out["batches"] = len(batches)
    out["budgets"] = batches[len(batches) // 2]["allocator_report"].get("budgets")
    out["status"] = batches[len(batches) // 2]["allocator_report"].get("status")
    return out


def main(
    draws: str = typer.Option("1", help="The K values (processors --draws), comma separated."),
    arms: str = typer.Option("off,on", help="The arms per K, in order (off: --no-mean-budget-rows)."),
    users: int = typer.Option(10_000),
    candidates: int = typer.Option(20),
    partitions: int = typer.Option(4),
    batches: int = typer.Option(1, help="Measured batches per arm."),
    timeout_s: float = typer.Option(300.0, help="Each phase's limit (as bench_pipeline's)."),
    out: Path | None = typer.Option(None, help="Write every figure as JSON here."),
    seed: int = typer.Option(0),
) -> None:
    """Run the pipeline per (K, arm) and print close -> decisions with the mean rows on vs off."""
    ks = [int(k) for k in draws.split(",")]
    order = [a.strip() for a in arms.split(",") if a.strip()]
    if not order or any(a not in ARMS for a in order):
        raise typer.BadParameter(f"--arms takes off/on, comma-separated, not {arms!r}")
    settings = Settings.from_env()
    boot = settings.connection
    started = ensure_kafka(boot, settings.kafka_home, settings.kafka_port, external=False)
    prefix = f"{settings.topic_prefix}bench-mean-rows-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-"
    workers = max(1, min(partitions, psutil.cpu_count() or 1))
    result: dict[str, Any] = {
        "config": {
            "users": users,
            "candidates": candidates,
            "partitions": partitions,
            "batches_per_arm": batches,
            "draws": ks,
            "arms": order,
            "cores": psutil.cpu_count(),
            "processors_workers": workers,
            "load_average_at_start": os.getloadavg(),
            "broker_started_here": started,
        },
        "by_draws": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-mean-rows-"))
    t0 = time.monotonic()
    try:
        for k in ks:
            runs: dict[str, list[dict[str, Any]]] = {a: [] for a in ARMS}
            for i, arm in enumerate(order):
                run = PipelineRun(
                    users, candidates, partitions, 50, batches, 1, timeout_s, workers,
                    ("--draws", str(k)), (), seed, None, ARMS[arm],
                )  # fmt: skip
                console.print(f"[bold]K = {k}, mean rows {arm}[/]")
                runs[arm].append(run_pipeline(boot, settings, f"{prefix}k{k}-{i}-", run, True, tmp))
            row = {a: summary(r) for a, r in runs.items() if r}
            if "on" in row and "off" in row:
                row["on_over_off"] = {
                    key: row["on"][key] / row["off"][key] for key in (*KEYS, "solve_s") if row["off"][key]
                }
            row["runs"] = runs
            result["by_draws"][str(k)] = row
        result["config"]["load_average_at_end"] = os.getloadavg()
        result["config"]["wall_s"] = time.monotonic() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            delete_topics(boot, prefix)
        except Exception as exc:  # noqa: BLE001 - leftover topics cost disk, not the figures
            console.print(f"[yellow]could not delete {prefix}*: {exc}[/]")
    table = Table(
        title=f"mean budget rows on vs off: {users:,} users x {candidates} candidates, {psutil.cpu_count()} cores"
    )
    for col in ("K", "arm", "p50 (s)", "p99 (s)", "p99 - last score (s)", "solve (s)", "p50 on/off", "p99 on/off",
                "p99 - last score on/off", "solve on/off"):  # fmt: skip
        table.add_column(col, justify="right")
    for k, row in result["by_draws"].items():
        ratio = row.get("on_over_off", {})
        for arm in ("off", "on"):
            if arm in row:
                s = row[arm]
                extra = (
                    [
                        f"{ratio.get(key, float('nan')):.2f}"
                        for key in ("decision_p50_s", "decision_p99_s", "p99_after_last_score_s", "solve_s")
                    ]
                    if arm == "on" and ratio
                    else ["", "", "", ""]
                )
                figures = [s[key] for key in ("decision_p50_s", "decision_p99_s", "p99_after_last_score_s", "solve_s")]
                table.add_row(k, arm, *(f"{v:.2f}" for v in figures), *extra)
    console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        console.print(f"written: {out}")


if __name__ == "__main__":
    typer.run(main)
