"""Terminal output of ``bench/bench_pipeline.py``: the shared console, progress bars, result tables.

The targets the tables compare with (reported, never asserted), the side-by-side table of the
pipeline against the raw-Kafka baseline, the CLOSED -> decisions latency table, the CPU line,
and the features on/off table of ``--feature-arms``. Split from bench_pipeline.py to keep each
module short; the code is unchanged.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(width=170)
TARGET_PAIRS_PER_S = 50_000
TARGET_DECISIONS_S = 5.0


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def print_tables(result: dict[str, Any], candidates: int) -> None:
    base, pipe, cfg = result["baseline"], result["pipeline"], result["config"]
    rounds = result["baseline_rounds"]
    spread = lambda k: f"{min(r[k] for r in rounds):,.0f}-{max(r[k] for r in rounds):,.0f}"  # noqa: E731
    batches = "one batch" if cfg["batches"] == 1 else f"median of {cfg['batches']} batches"
    table = Table(
        title=f"pipeline vs raw Kafka: {batches} of {cfg['users']:,} users x {candidates} candidates "
        f"({cfg['pairs']:,} pairs), {cfg['partitions']} partitions, {cfg['cores']} cores, "
        f"records of {result['record_bytes_mean']:,.0f} B"
    )
    for col in ("measure", "records/s", "pairs/s", "range over rounds", "x raw consume", "target", "met"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    table.add_row(
        "raw Kafka produce (baseline, median)",
        f"{base['produce_records_per_s']:,.0f}",
        f"{base['produce_records_per_s'] * candidates:,.0f}",
        spread("produce_records_per_s"),
        "",
        "",
        "",
    )
    table.add_row(
        "raw Kafka consume (baseline, median)",
        f"{base['consume_records_per_s']:,.0f}",
        f"{base['consume_records_per_s'] * candidates:,.0f}",
        spread("consume_records_per_s"),
        "1.00",
        "",
        "",
    )
    table.add_row(
        "simulator publish_batch (first -> last candidates)",
        f"{pipe['produce_records_per_s']:,.0f}",
        f"{pipe['produce_records_per_s'] * candidates:,.0f}",
        "",
        f"{pipe['produce_records_per_s'] / base['consume_records_per_s']:.3f}",
        "",
        "",
    )
    ok = pipe["scorer_pairs_per_s"] >= TARGET_PAIRS_PER_S
    table.add_row(
        "scorer (first candidates -> last scores)",
        f"{pipe['scorer_records_per_s']:,.0f}",
        f"{pipe['scorer_pairs_per_s']:,.0f}",
        "",
        f"{pipe['scorer_records_per_s'] / base['consume_records_per_s']:.3f}",
        f">= {TARGET_PAIRS_PER_S:,}",
        "[green]yes[/]" if ok else "[red]no[/]",
    )
    console.print(table)

    lat = Table(
        title=f"batch CLOSED -> committed decisions read ({pipe['decisions']:,.0f} decisions; "
        f"allocator: {pipe['allocator_report'].get('solver')}, solve "
        f"{pipe['allocator_report'].get('solve_seconds') or 0:.2f} s)"
    )
    for col in ("last score after close", "first decision", "p50", "p99", "last decision", "target", "met"):
        lat.add_column(col, justify="right")
    ok = pipe["decision_last_s"] <= TARGET_DECISIONS_S
    lat.add_row(
        f"{pipe['last_score_after_close_s']:.2f} s",
        f"{pipe['first_decision_s']:.2f} s",
        f"{pipe['decision_p50_s']:.2f} s",
        f"{pipe['decision_p99_s']:.2f} s",
        f"{pipe['decision_last_s']:.2f} s",
        f"<= {TARGET_DECISIONS_S:.0f} s",
        "[green]yes[/]" if ok else "[red]no[/]",
    )
    console.print(lat)
    cpu = result["cpu_seconds"]
    console.print(
        f"CPU seconds during the batch ({cpu['wall']:.1f} s wall, {cpu['machine_cores']:.0f} cores): "
        + ", ".join(f"{k} {cpu[k]:.1f}" for k in ("processors", "allocator", "bench", "machine", "steal"))
        + f"; load average at start {cfg['load_average_at_start'][0]:.2f}, "
        f"at end {cfg['load_average_at_end'][0]:.2f}"
    )
    if "features" in result:
        print_feature_table(result["features"])


def print_feature_table(features: dict[str, Any]) -> None:
    """The on and off arms' medians side by side, and on / off."""
    table = Table(title="the scorer's pair features in scores: on vs off (medians over each arm's batches)")
    columns = [name for name in ("on", "off", "on_over_off") if name in features]
    table.add_column("measure", justify="left")
    for name in columns:
        table.add_column(name.replace("_", " "), justify="right")
    rows = (
        ("scorer pairs/s", "scorer_pairs_per_s", "{:,.0f}"),
        ("scorer / raw consume", "scorer_over_raw_consume", "{:.4f}"),
        ("CLOSED -> decisions p50 (s)", "decision_p50_s", "{:.2f}"),
        ("CLOSED -> decisions p99 (s)", "decision_p99_s", "{:.2f}"),
        ("allocator solve (s)", "solve_seconds", "{:.2f}"),
        ("p99 less the solve (s)", "p99_less_solve_s", "{:.2f}"),
        ("scores record (bytes)", "scores_bytes_mean", "{:,.0f}"),
    )
    for label, key, fmt in rows:
        cells = []
        for name in columns:
            v = features[name].get(key)
            cells.append("" if v is None else (f"{v:.3f}" if name == "on_over_off" else fmt.format(v)))
        table.add_row(label, *cells)
    console.print(table)
