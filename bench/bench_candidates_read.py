"""Benchmark: what reading ``candidates`` costs the allocator (issue 18, part 2), in one run.

The allocator of this checkout reads the ids of every ``candidates`` record (the batch's users,
for the fallback of the users never scored: ``streams.decide.fallback``); the allocator before it
read ``batch-control`` and ``scores`` only. This runs ``bench/bench_pipeline.py``'s pipeline
(the simulated world through the processors workers and the allocator, timed from the records'
Kafka timestamps) in arms that alternate between the two allocators, each arm in a fresh topic
namespace, all between the same raw-Kafka rounds. Everything but the allocator comes from this
checkout; the other allocator runs from a tree extracted from ``--before REV`` (``git archive``),
started with that tree as its working directory and ``PYTHONPATH``.

Per arm kind, the medians over its batches of CLOSED -> decisions p50 and p99, p99 less the
allocator's solve (the solve is the same code in both and varies with the dual's iterations),
the allocator's CPU seconds during a batch, the scorer's rate, and after / before of each. The
machine's load average is kept at the start and the end (the figures are only comparable on an
idle machine).

    ~/.cache/banditlp/venv/bin/python bench/bench_candidates_read.py --before 8ac6bbe \\
        --arms before,after,before,after --batches 2 --out bench/results/candidates-read-cpu-2core.json
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_pipeline as bp  # noqa: E402
import psutil  # noqa: E402
import typer  # noqa: E402

from banditlp.errors import BanditLPError  # noqa: E402
from evaluation.email_world import EmailWorld, EmailWorldConfig  # noqa: E402
from streams.cli.processes import WorkerSet  # noqa: E402
from streams.kafka.local_broker import ensure_kafka  # noqa: E402
from streams.kafka.topics import DAY_MS, TopicNames, TopicSpec, create_topics, delete_topics  # noqa: E402
from streams.settings import Settings  # noqa: E402

ARMS = ("before", "after")
KEYS = ("decision_p50_s", "decision_p99_s", "decision_last_s", "scorer_pairs_per_s", "last_score_after_close_s")


def extract(repo: Path, rev: str, into: Path) -> Path:
    """The tree of ``rev`` of the git repository ``repo`` under ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def with_allocator_from(tree: Path | None):  # noqa: ANN201 - a context manager
    """While active, ``WorkerSet.start("allocator", ...)`` runs the allocator from ``tree``."""
    original = WorkerSet.start

    def start(self: WorkerSet, name: str, args: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        if name == "allocator" and tree is not None:
            env = {**env, "PYTHONPATH": str(tree)}
            cwd = tree
        original(self, name, args, env, cwd)

    class Patch:
        def __enter__(self) -> None:
            WorkerSet.start = start  # type: ignore[method-assign]

        def __exit__(self, *exc: object) -> None:
            WorkerSet.start = original  # type: ignore[method-assign]

    return Patch()


def with_window(window_s: float):  # noqa: ANN201 - a context manager
    """While active, the measured batches' allocator window (``timeout_ms`` after CLOSED) is at
    most ``window_s``: shorter than the bench's own wait for the decisions, so a batch with users
    the scorers never scored (faust's at-least-once after a start-up rebalance, README) is decided
    with them by the fallback (after) or without them (before) instead of failing the arm."""
    original = bp.SimulatorConfig

    def config(*args: Any, **kwargs: Any) -> Any:
        if "timeout_ms" in kwargs:
            kwargs["timeout_ms"] = min(kwargs["timeout_ms"], int(window_s * 1000))
        return original(*args, **kwargs)

    class Patch:
        def __enter__(self) -> None:
            bp.SimulatorConfig = config

        def __exit__(self, *exc: object) -> None:
            bp.SimulatorConfig = original

    return Patch()


def summary(arms: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm kind, the medians over its batches; and after / before."""
    out: dict[str, Any] = {}
    for kind in ARMS:
        batches = [b for a in arms if a["allocator"] == kind for b in a.get("pipeline_batches", ())]
        if not batches:
            continue
        m = {k: statistics.median(b[k] for b in batches) for k in KEYS}
        solve = [b["allocator_report"].get("solve_seconds") or 0.0 for b in batches]
        m["solve_seconds"] = statistics.median(solve)
        m["p99_less_solve_s"] = statistics.median(b["decision_p99_s"] - t for b, t in zip(batches, solve))
        m["allocator_cpu_s"] = statistics.median(b["cpu_seconds"]["allocator"] for b in batches)
        m["batches"] = len(batches)
        out[kind] = m
    if "before" in out and "after" in out:
        out["after_over_before"] = {
            k: out["after"][k] / out["before"][k] for k in out["after"] if k != "batches" and out["before"][k]
        }
    return out


def main(
    before: str = typer.Option(..., help="The revision whose allocator is the baseline (git archive of it)."),
    repo: Path = typer.Option(ROOT, help="The git repository of --before (default: this checkout)."),
    arms: str = typer.Option("before,after,before,after", help="Arms in order: before | after, comma-separated."),
    users: int = typer.Option(10_000),
    candidates: int = typer.Option(20),
    batches: int = typer.Option(2, help="Measured batches per arm."),
    processors_workers: int = typer.Option(2),
    baseline_repeats: int = typer.Option(2),
    timeout_s: float = typer.Option(300.0, help="Limit of each phase (the warm-up, a batch's decisions, reads)."),
    window_s: float = typer.Option(60.0, help="The measured batches' allocator window after CLOSED (< timeout_s)."),
    out: Path | None = typer.Option(None),
    seed: int = typer.Option(0),
) -> None:
    order = [a.strip() for a in arms.split(",") if a.strip()]
    if not order or any(a not in ARMS for a in order):
        raise typer.BadParameter(f"--arms takes before/after, comma-separated, not {arms!r}")
    settings = Settings.from_env()
    boot = settings.connection
    try:
        ensure_kafka(boot, settings.kafka_home, settings.kafka_port, external=False)
    except BanditLPError as exc:
        raise typer.BadParameter(str(exc)) from exc
    prefix = f"{settings.topic_prefix}bench-candidates-read-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-"
    serde = settings.with_prefix(prefix).serde()
    tmp = Path(tempfile.mkdtemp(prefix="bench-candidates-read-"))
    run = bp.PipelineRun(users, candidates, 4, 50, batches, 1, timeout_s, processors_workers, (), (), seed, None)
    result: dict[str, Any] = {
        "config": {
            "before": before,
            "arms": order,
            "users": users,
            "candidates": candidates,
            "batches_per_arm": batches,
            "processors_workers": processors_workers,
            "cores": psutil.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        }
    }
    try:
        tree = extract(repo, before, tmp / "before-tree")
        world = EmailWorldConfig(n_users=users, candidates_per_user=candidates, n_items=max(40, candidates), seed=seed)
        records = bp.candidates_records(EmailWorld(world), serde, 2)
        base_topic = TopicNames(prefix)("baseline-candidates")
        create_topics(boot, TopicNames(prefix), (TopicSpec("baseline-candidates", 4, retention_ms=DAY_MS),))
        with bp._progress() as progress:
            rounds = [
                bp.raw_kafka_round(boot, base_topic, 4, records, progress, f"raw Kafka #{r + 1}", timeout_s)
                for r in range(baseline_repeats)
            ]
        done: list[dict[str, Any]] = []
        for i, kind in enumerate(order):
            try:
                with with_allocator_from(tree if kind == "before" else None), with_window(window_s):
                    arm = bp.run_pipeline(boot, settings, f"{prefix}{i}-", run, True, tmp)
            except BanditLPError as exc:  # an arm that could not finish is kept as such, not averaged
                arm = {"error": str(exc)}
                print(f"arm {i} ({kind}) failed: {exc}")
            arm["allocator"] = kind
            arm["load_average"] = os.getloadavg()
            done.append(arm)
            if "pipeline" in arm:
                p, cpu = arm["pipeline"], arm["cpu_seconds"]
                print(
                    f"arm {i} ({kind}): p50 {p['decision_p50_s']:.2f} s, p99 {p['decision_p99_s']:.2f} s, "
                    f"allocator CPU {cpu['allocator']:.2f} s, load {os.getloadavg()}"
                )
        with bp._progress() as progress:
            rounds.append(bp.raw_kafka_round(boot, base_topic, 4, records, progress, "raw Kafka (after)", timeout_s))
        result["arms"] = done
        result["baseline_rounds"] = rounds
        result["baseline_consume_records_per_s"] = statistics.median(r["consume_records_per_s"] for r in rounds)
        result["summary"] = summary(done)
        result["config"]["load_average_at_end"] = os.getloadavg()
        print(json.dumps(result["summary"], indent=2))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
            print(f"written: {out}")
    except BanditLPError as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            delete_topics(boot, prefix)
        except BanditLPError as exc:
            print(f"could not delete the bench's topics ({prefix}*): {exc}")


if __name__ == "__main__":
    typer.run(main)
