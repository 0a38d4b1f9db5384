"""Benchmark: the cost of exact propensities, K Thompson draws per pair, on the whole pipeline.

For each K of ``--draws`` (default 1,4,8,16) one run of ``bench/bench_pipeline.py`` with the
processors started as ``banditlp worker processors --draws K`` (the scorer publishes K draws per
pair; the allocator solves one LP per draw): batch CLOSED -> committed decisions p50 and p99 at
``--users`` x ``--candidates``, the scorer's rate as a fraction of raw consume measured in the
same run, and the allocator's solve time of all K plans. K = 1 is the baseline of the ratios.

The default K of the scorer is the largest K whose p99 stays within ``--target-s`` (5 s).

    ~/.cache/banditlp/venv/bin/python bench/bench_draws.py --out bench/results/draws-cpu-2core.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
console = Console(width=160)


def run_one(k: int, users: int, candidates: int, timeout_s: float, work: Path) -> dict[str, Any]:
    out = work / f"draws-{k}.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "bench_pipeline.py"),
        "--users",
        str(users),
        "--candidates",
        str(candidates),
        "--timeout-s",
        str(timeout_s),
        f"--processors-arg=--draws={k}",
        "--out",
        str(out),
    ]
    console.print(f"[bold]K = {k}[/]: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stdout + proc.stderr)[-2000:]
        return {"draws": k, "error": f"bench_pipeline exited {proc.returncode}", "tail": tail}
    result = json.loads(out.read_text())
    p, b = result["pipeline"], result["baseline"]
    report = p.get("allocator_report") or {}
    return {
        "draws": k,
        "decision_p50_s": p["decision_p50_s"],
        "decision_p99_s": p["decision_p99_s"],
        "decision_last_s": p["decision_last_s"],
        "scorer_pairs_per_s": p["scorer_pairs_per_s"],
        "scorer_over_raw_consume": p["scorer_records_per_s"] / b["consume_records_per_s"],
        "raw_consume_records_per_s": b["consume_records_per_s"],
        "allocator_solve_s": report.get("solve_seconds"),
        "run": result,
    }


def main(
    draws: str = typer.Option("1,4,8,16", help="The K values, comma separated."),
    users: int = typer.Option(10_000),
    candidates: int = typer.Option(20),
    timeout_s: float = typer.Option(300.0, help="Each run's phase limit (bench_pipeline --timeout-s)."),
    target_s: float = typer.Option(5.0, help="The p99 CLOSED -> decisions target that picks the default K."),
    out: Path | None = typer.Option(None, help="Write every run's figures as JSON here."),
) -> None:
    """Run the pipeline once per K and print close -> decisions and the scorer's rate per K."""
    ks = [int(k) for k in draws.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-draws-") as tmp:
        rows = [run_one(k, users, candidates, timeout_s, Path(tmp)) for k in ks]
    base = next((r for r in rows if r["draws"] == 1 and "error" not in r), None)
    table = Table(
        title=f"exact propensities: K draws per pair, {users:,} users x {candidates} candidates, one run each"
    )
    for col in (
        "K",
        "CLOSED -> decisions p50",
        "p99",
        "p99 / K=1",
        "last",
        "solve (all K)",
        "scorer pairs/s",
        "scorer / raw consume",
        f"p99 <= {target_s:g} s",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        if "error" in r:
            table.add_row(str(r["draws"]), r["error"], *[""] * 7)
            continue
        ratio = r["decision_p99_s"] / base["decision_p99_s"] if base else float("nan")
        table.add_row(
            str(r["draws"]),
            f"{r['decision_p50_s']:.2f} s",
            f"{r['decision_p99_s']:.2f} s",
            f"{ratio:.2f}",
            f"{r['decision_last_s']:.2f} s",
            f"{(r['allocator_solve_s'] or 0):.2f} s",
            f"{r['scorer_pairs_per_s']:,.0f}",
            f"{r['scorer_over_raw_consume']:.4f}",
            "yes" if r["decision_p99_s"] <= target_s else "no",
        )
    console.print(table)
    ok = [r["draws"] for r in rows if "error" not in r and r["decision_p99_s"] <= target_s]
    console.print(f"largest K within the target: {max(ok) if ok else 'none'}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"target_s": target_s, "rows": rows}, indent=2))
        console.print(f"written: {out}")


if __name__ == "__main__":
    typer.run(main)
