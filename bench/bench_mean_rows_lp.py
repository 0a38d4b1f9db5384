"""Benchmark: the allocator's own time per batch with the mean budget rows on vs off, without Kafka.

``streams.decide.decision.decide_batch`` (the LP of every Thompson draw, the pick and rounding, the
encoded decisions, contexts and report: the allocator's work between a batch's window closing and
its transaction) on one synthetic batch of ``--users`` x ``--candidates`` whose unsubscription budget
binds (calibrated means m ~ U(0.005, 0.03), each draw m times a lognormal of sd 0.3, the budget 60%
of what the users' caps would spend at the mean), the solver the worker's size rule picks. After one
untimed decision of each arm, the arms alternate (off, on, off, on, ...) ``--repeats`` times per K,
so a change of the machine's load hits both alike; reported: the median wall and CPU seconds of
each arm, on / off, and the plan's use of the budget on its draw and on the means. A run on a
loaded machine measures the ratio, not the absolute times.

    nice -n 10 ~/.cache/banditlp/venv/bin/python bench/bench_mean_rows_lp.py --draws 1,4 \\
        --out bench/results/mean-rows-lp-cpu-2core.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from streams.decide.config import AllocatorWorkerConfig  # noqa: E402
from streams.decide.decision import decide_batch  # noqa: E402
from streams.decide.solve import DualMemory  # noqa: E402
from streams.decide.window import BatchWindow  # noqa: E402
from streams.records import BatchControlRecord, ScoresRecord  # noqa: E402
from streams.settings import Settings  # noqa: E402

console = Console(width=140)


def batch(users: int, candidates: int, k: int, seed: int) -> BatchWindow:
    """The synthetic batch of the module docstring, as the allocator's window holds it."""
    rng = np.random.default_rng(seed)
    caps = 1 + np.arange(users) % 2
    mean_unsub = rng.uniform(0.005, 0.03, (users, candidates))
    mean_reward = rng.uniform(0.0, 1.0, (users, candidates))
    budget = 0.6 * float((caps * mean_unsub.mean(axis=1)).sum())
    control = BatchControlRecord.from_avro(
        {
            "batch_id": f"bench-{k}",
            "event": "OPENED",
            "expected_users": users,
            "timeout_ms": 60_000,
            "created_at_ms": int(time.time() * 1000),
            "default_user_cap": 1,
            "budgets": [{"name": "unsubs", "outcome": "unsubscription", "limit": budget}],
            "providers": [{"provider_id": "p0", "min_exposure": 0.05 * users, "max_exposure": None}],
            "reward_outcome": "reward",
        }
    )
    window = BatchWindow(control.batch_id, 0.0)
    window.open(control, 0.0)
    items = tuple(f"i{j}" for j in range(candidates))
    for u in range(users):
        noise = rng.lognormal(0.0, 0.3, (2, k, candidates))
        draws = {
            "unsubscription": mean_unsub[u] * noise[0],
            "reward": mean_reward[u] * noise[1],
        }
        rec = ScoresRecord(
            control.batch_id,
            f"u{u:06d}",
            int(caps[u]),
            "bench",
            1,
            "default",
            items,
            tuple(f"p{(u + j) % 7}" for j in range(candidates)),
            {o: d[0] for o, d in draws.items()},
            {"unsubscription": mean_unsub[u], "reward": mean_reward[u]},
            draws,
        )
        window.add(rec)
    window.close(BatchControlRecord.from_avro({**control.to_avro(), "event": "CLOSED"}), 0.0)
    return window


def main(
    draws: str = typer.Option("1,4", help="The K values, comma separated."),
    users: int = typer.Option(10_000),
    candidates: int = typer.Option(20),
    repeats: int = typer.Option(3, help="Decisions per arm and K (arms alternate)."),
    out: Path | None = typer.Option(None),
    seed: int = typer.Option(0),
) -> None:
    """Decide one batch per (K, arm, repeat) and print the allocator's time with the rows on vs off."""
    serde = Settings().serde()  # the local registry, as the unit tests'
    result: dict[str, Any] = {
        "config": {
            "users": users,
            "candidates": candidates,
            "repeats": repeats,
            "cores": psutil.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        },
        "by_draws": {},
    }
    for k in [int(v) for v in draws.split(",")]:
        window = batch(users, candidates, k, seed)
        means = np.concatenate([window.scores[u].means["unsubscription"] for u in sorted(window.scores)])  # (E,)
        figures: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for arm in ("off", "on"):  # untimed: imports, the solvers' first calls
            decide_batch(
                window,
                AllocatorWorkerConfig.for_prefix(mean_budget_rows=arm == "on"),
                serde,
                DualMemory(),
                time.monotonic,
            )
        for r in range(repeats):
            for arm in ("off", "on"):
                cfg = AllocatorWorkerConfig.for_prefix(mean_budget_rows=arm == "on")
                wall, cpu = time.perf_counter(), time.process_time()
                decided = decide_batch(window, cfg, serde, DualMemory(), time.monotonic)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                report = serde.decode("allocation-reports", decided.report)
                x = np.concatenate(
                    [[a["x"] for a in serde.decode("decisions", v)["allocation"]] for _, v in decided.records]
                )
                figures[arm].append(
                    {
                        "wall_s": wall,
                        "cpu_s": cpu,
                        "solve_s": report["solve_seconds"],
                        "iterations": report["iterations"],
                        "solver": report["solver"],
                        "status": report["status"],
                        "budgets": report["budgets"],
                        # the picked plan's use of the budget on the calibrated means, over the limit
                        "usage_on_means": float(means @ x) / report["budgets"][0]["limit"],
                    }
                )
                console.print(f"K = {k}, {arm}, #{r + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU ({report['solver']})")
        row: dict[str, Any] = {
            arm: {
                key: statistics.median(f[key] for f in runs)
                for key in ("wall_s", "cpu_s", "solve_s", "iterations", "usage_on_means")
            }
            for arm, runs in figures.items()
        }
        row["on_over_off"] = {key: row["on"][key] / row["off"][key] for key in ("wall_s", "cpu_s", "solve_s")}
        row["runs"] = figures
        result["by_draws"][str(k)] = row
    result["config"]["load_average_at_end"] = os.getloadavg()
    table = Table(title=f"decide_batch, mean rows on vs off: {users:,} users x {candidates} candidates")
    for col in ("K", "off wall (s)", "on wall (s)", "on/off wall", "on/off CPU", "on/off solve", "iterations off / on",
                "usage on means off / on"):  # fmt: skip
        table.add_column(col, justify="right")
    for k, row in result["by_draws"].items():
        ratio = row["on_over_off"]
        table.add_row(
            k,
            f"{row['off']['wall_s']:.2f}",
            f"{row['on']['wall_s']:.2f}",
            f"{ratio['wall_s']:.2f}",
            f"{ratio['cpu_s']:.2f}",
            f"{ratio['solve_s']:.2f}",
            f"{row['off']['iterations']:.0f} / {row['on']['iterations']:.0f}",
            f"{row['off']['usage_on_means']:.3f} / {row['on']['usage_on_means']:.3f}",
        )
    console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        console.print(f"written: {out}")


if __name__ == "__main__":
    typer.run(main)
