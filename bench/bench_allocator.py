"""Benchmark: the dual-decomposition solver against HiGHS (IPM), measured in the same run.

For each size (pairs; 10 candidates per user, 2 budgets, 50 providers, caps 1-2, binding budgets
and provider bounds from ``allocator.instances.random_instance``) it solves the same instance with
HiGHS' interior-point method (crossover off: its fastest exact path) and with ``solve_dual``, and
prints times, the ratio HiGHS time / dual time, the relative objective gap of the (repaired,
feasible) dual solution to HiGHS' optimum, and the dual solver's peak memory (RSS sampled every
20 ms during its solve; ``torch.cuda.max_memory_allocated`` on a GPU). Above
``--skip-highs-above`` only the dual solver runs.

Targets (report, never assert): >= 5x faster than HiGHS at 1e6 pairs with gap <= 1e-3;
1e7 pairs in <= 60 s and <= 4 GB on 2 cores.

    python bench/bench_allocator.py --sizes 1e4,1e5,1e6 --out results.json
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

# run as a script from anywhere: import this checkout's packages, not another installed copy
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
import torch  # noqa: E402
import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from allocator.dual_decomposition import solve_dual  # noqa: E402
from allocator.highs import solve_highs  # noqa: E402
from allocator.instances import random_instance  # noqa: E402

console = Console(width=170)


class PeakRSS:
    """Samples this process' RSS in a thread; ``peak`` is the largest seen (bytes)."""

    def __init__(self, every: float = 0.02) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._proc = psutil.Process()

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or ``-`` for a figure this row has not measured."""
    return "-" if value is None else format(value, spec)


def main(
    sizes: str = typer.Option("1e4,1e5,1e6,1e7", help="Comma-separated pair counts."),
    device: str = typer.Option("cpu", help="cpu | cuda"),
    skip_highs_above: float = typer.Option(2e6, help="Run HiGHS only up to this many pairs."),
    out: Path | None = typer.Option(None, help="Write the rows as JSON here."),
    float32: bool = typer.Option(True, "--float32/--float64", help="Dual solver precision."),
    tol: float = typer.Option(1e-3, help="Dual solver stopping tolerance (gap and violation)."),
    gamma: float = typer.Option(1e-3, help="Dual solver ridge weight, relative to max|r|."),
    threads: int | None = typer.Option(None, help="torch intra-op threads (default: torch's)."),
    seed: int = typer.Option(0),
) -> None:
    """Run the benchmark and print the side-by-side table."""
    if threads:
        torch.set_num_threads(threads)
    dtype = torch.float32 if float32 else torch.float64
    rows: list[dict[str, Any]] = []
    for size in (int(float(s)) for s in sizes.split(",")):
        prob = random_instance(max(size // 10, 1), 10, 50, 2, (1, 2), 0.7, seed=seed)
        row: dict[str, Any] = {"pairs": prob.n_pairs}
        if prob.n_pairs <= skip_highs_above:
            t0 = time.perf_counter()
            h = solve_highs(prob, method="ipm", crossover=False)
            row.update(highs_s=time.perf_counter() - t0, highs_obj=h.objective, highs_status=h.status)
            console.print(f"{prob.n_pairs:>10,} HiGHS ipm {row['highs_s']:.2f}s")
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            d = solve_dual(prob, gamma=gamma, tol=tol, device=device, dtype=dtype, keep_unrepaired=False)
            row["dual_s"] = time.perf_counter() - t0
        row.update(
            dual_obj=d.objective,
            dual_status=d.status,
            iterations=d.iterations,
            viol_before_repair=d.max_violation_before_repair,
            viol_after=d.max_relative_violation,
            peak_rss_gb=mem.peak / 2**30,
            solver_rss_gb=(mem.peak - mem.start) / 2**30,
            maxrss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        )
        if device.startswith("cuda"):
            row["cuda_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
        if "highs_obj" in row:
            row["gap"] = (row["highs_obj"] - row["dual_obj"]) / abs(row["highs_obj"])
            row["speedup"] = row["highs_s"] / row["dual_s"]
        console.print(f"{prob.n_pairs:>10,} dual      {row['dual_s']:.2f}s, {d.iterations} iterations")
        rows.append(row)
        del prob
    table = Table(
        title=f"allocation LP: dual decomposition ({device}, {str(dtype)[6:]}, tol {tol:g}) "
        f"vs HiGHS IPM, threads {torch.get_num_threads()}"
    )
    for col in (
        "pairs",
        "HiGHS s",
        "dual s",
        "HiGHS/dual",
        "objective gap",
        "iters",
        "viol. before repair",
        "viol. after",
        "peak RSS GB",
        "solver RSS GB",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['pairs']:,}",
            _fmt(r.get("highs_s"), ".2f"),
            f"{r['dual_s']:.2f}",
            _fmt(r.get("speedup"), ".1f"),
            _fmt(r.get("gap"), ".2e"),
            str(r["iterations"]),
            f"{r['viol_before_repair']:.1e}",
            f"{r['viol_after']:.1e}",
            f"{r['peak_rss_gb']:.2f}",
            f"{r['solver_rss_gb']:.2f}",
        )
    console.print(table)
    if out is not None:
        out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    typer.run(main)
