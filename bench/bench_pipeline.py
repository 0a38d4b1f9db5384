"""Benchmark: the streaming pipeline against raw Kafka, both on the real broker in one run.

Baseline: raw confluent-kafka, N ``candidates``-sized records (one user's C candidates with
features, encoded with the project's AvroSerde, so the bytes are the real ones) produced to a
fresh topic with the pipeline's partitions and the simulator's producer settings (lz4, linger
5 ms, idempotence), then consumed; records/s each way, and pairs/s = records/s x C. It runs
``--baseline-repeats`` times before the pipeline and once after it (a changed figure says the
machine was disturbed); the table shows the median.

Pipeline: a fresh topic namespace, a warm-start model snapshot (``publish_warm_start``), the
processors workers (faust scorer + learner; ``--processors-workers``, by default one per core
as deployed) and the allocator worker as processes; a warm-up
batch of ``--warmup-users`` users goes through the whole loop first. Then ONE batch of
``--users`` x ``--candidates`` (the simulated email world, published by
``SimulatorFeed.publish_batch``: OPENED, every user's candidates, CLOSED), measuring

(a) scorer throughput: pairs / (first candidates record produced -> last scores record of
    the batch produced), both Kafka CreateTimes, read back from the topics by this script
    after the batch (so reading them does not load the pipeline while it runs);
(b) batch close -> decisions: from the CLOSED record's CreateTime to the moment this script
    reads each committed decision (read_committed), p50 and p99 over users and the last.

``--batches N`` measures N such batches one after the other and reports medians (and every
batch in the JSON), for a steadier figure on a busy machine.

``--feature-arms on,off,...`` runs the pipeline once per arm, each in a fresh topic namespace
with the same model and batches, between the same baseline rounds: ``on`` is the deployed
scorer (every scored item carries its pair features, which the allocator copies into the
decision contexts), ``off`` leaves them empty (``bench/scorer_without_features.py``). The JSON
then has every arm and the ratios of the on arms' medians to the off arms'.

Targets (reported, never asserted): >= 50,000 scored pairs/s on this machine; every decision
of the batch within 5 s of its close. Also reported: CPU seconds used by each worker, this
script and the whole machine during the batch (the machine is shared; the sum shows what else
ran), and the allocator's own solve time from its allocation report. ``--py-spy FILE`` records
the processors worker with py-spy during the batch (raw collapsed stacks; needs py-spy).

Topics are left on the broker (this script deletes nothing outside its temp directory).

    ~/.cache/banditlp/venv/bin/python bench/bench_pipeline.py --users 10000 --candidates 20 \\
        --batches 3 --out bench/results/pipeline-cpu-2core-2workers.json

This file holds the arms (:func:`run_pipeline`) and the command line; beside it,
``pipeline_kafka.py`` reads the topics back and runs the raw-Kafka baseline,
``pipeline_measure.py`` measures one batch, ``pipeline_report.py`` prints the tables.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# run as a script from anywhere: import this checkout's packages, not another installed copy
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# the helpers beside this file (pipeline_*.py), also when it is imported rather than run
sys.path.insert(1, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
import typer  # noqa: E402
from pipeline_kafka import (  # noqa: E402
    BenchError,
    candidates_records,
    create_time_s,
    end_offsets,
    raw_kafka_round,
    read_range,
)
from pipeline_measure import (  # noqa: E402
    CpuMeter,
    DecisionReader,
    measure_batch,
    quantile,
    start_py_spy,
    stop_py_spy,
    wait_for_batch,
)
from pipeline_report import (  # noqa: E402
    TARGET_DECISIONS_S,
    TARGET_PAIRS_PER_S,
    _progress,
    console,
    print_feature_table,
    print_tables,
)

from banditlp.errors import BanditLPError  # noqa: E402
from evaluation.email_world import EmailWorld, EmailWorldConfig  # noqa: E402
from streams.cli.processes import WorkerSet  # noqa: E402
from streams.kafka.connection import ConnectionConfig  # noqa: E402
from streams.kafka.local_broker import ensure_kafka  # noqa: E402
from streams.kafka.topics import DAY_MS, TopicNames, TopicSpec, create_topics, delete_topics, topic_specs  # noqa: E402
from streams.settings import Settings  # noqa: E402

# run_pipeline reads SimulatorConfig from this module's globals: bench_candidates_read.py
# swaps bp.SimulatorConfig to shorten the allocator window, so it stays imported here.
from streams.simulate.feed import SimulatorConfig, SimulatorFeed  # noqa: E402
from streams.simulate.warm_start import publish_warm_start  # noqa: E402

# Every public name this module had before its helpers moved to pipeline_*.py, so that the scripts that
# import it (bench_mean_rows.py, bench_candidates_read.py: ``bp.NAME``) keep finding them here.
__all__ = [
    "BenchError",
    "CpuMeter",
    "DecisionReader",
    "FEATURE_ARMS",
    "PipelineRun",
    "ROOT",
    "SimulatorConfig",
    "TARGET_DECISIONS_S",
    "TARGET_PAIRS_PER_S",
    "candidates_records",
    "console",
    "create_time_s",
    "end_offsets",
    "feature_comparison",
    "main",
    "measure_batch",
    "print_feature_table",
    "print_tables",
    "quantile",
    "raw_kafka_round",
    "read_range",
    "run_pipeline",
    "start_processors",
    "start_py_spy",
    "stop_py_spy",
    "wait_for_batch",
]


# -- the pipeline -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineRun:
    """What one pipeline arm runs: the batch, the workers and the limits (``main``'s options)."""

    users: int
    candidates: int
    partitions: int
    warmup_users: int
    batches: int
    warm_start_batches: int
    timeout_s: float
    processors_workers: int
    processors_args: tuple[str, ...]
    worker_env: tuple[str, ...]
    seed: int
    py_spy: Path | None
    allocator_args: tuple[str, ...] = ()


FEATURE_ARMS = {"on": True, "off": False}


def start_processors(workers: WorkerSet, name: str, args: list[str], env: dict[str, str], features: bool) -> None:
    """``banditlp worker processors ARGS`` as ``name``; ``features=False`` runs it through
    ``bench/scorer_without_features.py`` (the scorer leaves the items' features empty)."""
    if features:
        workers.start(name, ["worker", "processors", *args], env)
        return
    with open(workers.log_dir / f"{name}.log", "ab") as log:
        workers.procs[name] = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "scorer_without_features.py"), "worker", "processors", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def run_pipeline(
    boot: ConnectionConfig, settings: Settings, prefix: str, run: PipelineRun, features: bool, tmp: Path
) -> dict[str, Any]:
    """One pipeline arm in the topic namespace ``prefix``: topics, model v1, workers, the warm-up
    batch, then ``run.batches`` measured batches; the workers are stopped at the end."""
    arm = settings.with_prefix(prefix)
    names, serde = arm.names, arm.serde()
    world_cfg = EmailWorldConfig(
        n_users=run.users, candidates_per_user=run.candidates, n_items=max(40, run.candidates), seed=run.seed
    )
    logs = tmp / prefix / "logs"
    logs.mkdir(parents=True)
    workers = WorkerSet(logs)
    feed = warm = reader = None
    out: dict[str, Any] = {"features": features, "prefix": prefix}
    try:
        create_topics(boot, names, topic_specs(run.partitions))
        with console.status("training model v1 on logged data of a random policy ..."):
            n_logged = publish_warm_start(boot, serde, names, world_cfg, "email", run.warm_start_batches, run.seed)
        env = {
            **os.environ,
            **arm.to_env(),
            "BANDITLP_PARTITIONS": str(run.partitions),
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            **dict(item.split("=", 1) for item in run.worker_env),
        }
        for w in range(run.processors_workers):  # one consumer group; each worker its own RocksDB directory
            start_processors(
                workers,
                "processors" if w == 0 else f"processors-{w + 1}",
                ["--seed", str(run.seed + w), *run.processors_args],
                {**env, "BANDITLP_STATE_DIR": str(tmp / prefix / f"state-{w}")},
                features,
            )
        workers.start("allocator", ["worker", "allocator", *run.allocator_args], env)
        reader = DecisionReader(boot, serde, names, run.partitions)
        warm = SimulatorFeed(
            SimulatorConfig(
                names=names,
                seed=run.seed,
                world=EmailWorldConfig(
                    n_users=run.warmup_users,
                    candidates_per_user=run.candidates,
                    n_items=max(40, run.candidates),
                    seed=run.seed,
                ),
            ),
            boot,
            serde,
        )
        t0 = time.monotonic()
        with console.status(
            f"model v1 on {n_logged} logged sends; warm-up batch of {run.warmup_users} users through the whole loop ..."
        ):
            batch, _ = warm.publish_batch(0)
            wait_for_batch(reader, workers, batch.batch_id, run.warmup_users, 0, run.timeout_s)
        out["warmup_s"] = time.monotonic() - t0
        warm.close()
        arm_name = "on" if features else "off"
        console.print(f"features {arm_name}: warm-up batch decided {out['warmup_s']:.1f} s after the workers started")

        feed = SimulatorFeed(
            SimulatorConfig(names=names, world=world_cfg, seed=run.seed, timeout_ms=int(run.timeout_s * 1000)),
            boot,
            serde,
        )
        runs = []
        for b in range(run.batches):
            spy = run.py_spy
            spy_out = None if spy is None else (spy if b == 0 else spy.with_suffix(f".{b + 1}{spy.suffix}"))
            runs.append(
                measure_batch(
                    boot,
                    names,
                    run.partitions,
                    feed,
                    reader,
                    workers,
                    1 + b,
                    run.users,
                    run.candidates,
                    run.timeout_s,
                    spy_out,
                )
            )
        out["pipeline_batches"] = runs
        out["pipeline"] = _medians(runs)
        out["pipeline"]["allocator_report"] = runs[len(runs) // 2]["allocator_report"]
        out["cpu_seconds"] = {k: statistics.median(r["cpu_seconds"][k] for r in runs) for k in runs[0]["cpu_seconds"]}
        return out
    except BanditLPError:
        for log in sorted(logs.glob("*.log")):
            console.print(f"[dim]--- {log.name} (tail) ---\n{log.read_text(errors='replace')[-2500:]}[/]")
        raise
    finally:
        workers.stop()
        for f in (feed, reader):
            if f is not None:
                f.close()


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every number of the batches' results."""
    return {
        k: statistics.median(r[k] for r in runs)
        for k, v in runs[0].items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def feature_comparison(arms: list[dict[str, Any]], consume_records_per_s: float) -> dict[str, Any]:
    """Medians over the batches of the on arms and of the off arms, and on / off of each.

    ``p99_less_solve_s`` is each batch's p99 less its allocator's solve time: the solve does not
    read the features, and its time varies from batch to batch with the dual's iterations.
    """
    keys = (
        "scorer_pairs_per_s",
        "scorer_records_per_s",
        "decision_p50_s",
        "decision_p99_s",
        "decision_last_s",
        "last_score_after_close_s",
        "scores_bytes_mean",
    )
    out: dict[str, Any] = {}
    for name, on in FEATURE_ARMS.items():
        batches = [b for a in arms if a["features"] is on for b in a["pipeline_batches"]]
        if batches:
            m = _medians(batches)
            out[name] = {k: m[k] for k in keys}
            out[name]["scorer_over_raw_consume"] = m["scorer_records_per_s"] / consume_records_per_s
            solve = [b["allocator_report"].get("solve_seconds") or 0.0 for b in batches]
            out[name]["solve_seconds"] = statistics.median(solve)
            out[name]["p99_less_solve_s"] = statistics.median(b["decision_p99_s"] - t for b, t in zip(batches, solve))
            out[name]["batches"] = len(batches)
    if "on" in out and "off" in out:
        out["on_over_off"] = {k: out["on"][k] / out["off"][k] for k in out["on"] if k != "batches" and out["off"][k]}
    return out


def main(
    users: int = typer.Option(10_000, help="Users in the measured batch (one candidates record each)."),
    candidates: int = typer.Option(20, help="Candidates per user (pairs per record)."),
    partitions: int = typer.Option(4, help="Partitions of the keyed topics (as the pipeline's)."),
    warmup_users: int = typer.Option(50, help="Users of the warm-up batch that proves the workers ready."),
    batches: int = typer.Option(1, help="Measured batches, one after the other (the table shows medians)."),
    warm_start_batches: int = typer.Option(1, help="Logged random-policy batches (of --users) that train model v1."),
    baseline_repeats: int = typer.Option(3, help="Raw Kafka rounds before the pipeline (one more runs after)."),
    timeout_s: float = typer.Option(300.0, help="Limit of each phase: warm-up, the batch's decisions, reads."),
    bootstrap: str | None = typer.Option(
        None,
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka (default: the local broker); security settings come from the KAFKA_* variables, as for banditlp.",
    ),
    py_spy: Path | None = typer.Option(
        None,
        "--py-spy",
        help="Record the processors worker during the batch to this file (py-spy raw/collapsed format).",
    ),
    keep_logs: Path | None = typer.Option(None, help="Copy the workers' logs here at the end."),
    processors_workers: int | None = typer.Option(
        None,
        help="Processors workers sharing the candidates "
        "partitions (default: one per core, at most one "
        "per partition: the deployment rule).",
    ),
    processors_arg: list[str] = typer.Option(
        [], help="An argument added to `banditlp worker processors` (repeatable), e.g. --processors-arg=--take=2000."
    ),
    worker_env: list[str] = typer.Option(
        [], help="NAME=VALUE added to the workers' environment (repeatable), for experiments such as OMP_NUM_THREADS=1."
    ),
    feature_arms: str = typer.Option(
        "on",
        help="Pipeline runs, in order, each in a fresh namespace: 'on' (the scorer copies the pair features into "
        "scores) or 'off' (empty), e.g. on,off,on,off for the cost of the features measured in one run.",
    ),
    out: Path | None = typer.Option(None, help="Write all figures as JSON here."),
    seed: int = typer.Option(0),
) -> None:
    """Run the benchmark and print the side-by-side table."""
    arms = [a.strip() for a in feature_arms.split(",") if a.strip()]
    if not arms or any(a not in FEATURE_ARMS for a in arms):
        raise typer.BadParameter(f"--feature-arms takes on/off, comma-separated, not {feature_arms!r}")
    settings = Settings.from_env(bootstrap=bootstrap)
    boot = settings.connection
    try:
        with console.status("checking for a Kafka broker (starting the local one if none answers) ..."):
            ensure_kafka(boot, settings.kafka_home, settings.kafka_port, external=bootstrap is not None)
    except BanditLPError as exc:
        raise typer.BadParameter(str(exc)) from exc
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = f"{settings.topic_prefix}bench-pipeline-{stamp}-{os.getpid()}-"
    serde = settings.with_prefix(prefix).serde()
    world_cfg = EmailWorldConfig(n_users=users, candidates_per_user=candidates, n_items=max(40, candidates), seed=seed)
    if processors_workers is None:
        processors_workers = max(1, min(partitions, psutil.cpu_count() or 1))
    run = PipelineRun(
        users,
        candidates,
        partitions,
        warmup_users,
        batches,
        warm_start_batches,
        timeout_s,
        processors_workers,
        tuple(processors_arg),
        tuple(worker_env),
        seed,
        py_spy,
    )
    result: dict[str, Any] = {
        "config": {
            "users": users,
            "candidates": candidates,
            "pairs": users * candidates,
            "partitions": partitions,
            "warmup_users": warmup_users,
            "batches": batches,
            "prefix": prefix,
            "cores": psutil.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "worker_env": worker_env,
            "processors_args": processors_arg,
            "processors_workers": processors_workers,
            "feature_arms": arms,
        },
        "targets": {"scored_pairs_per_s": TARGET_PAIRS_PER_S, "decisions_within_s": TARGET_DECISIONS_S},
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        # 1. Baseline ---------------------------------------------------------------------
        with console.status("encoding candidates records for the raw-Kafka baseline ..."):
            records = candidates_records(EmailWorld(world_cfg), serde, 2)
        base_topic = TopicNames(prefix)("baseline-candidates")
        create_topics(boot, TopicNames(prefix), (TopicSpec("baseline-candidates", partitions, retention_ms=DAY_MS),))
        with _progress() as progress:
            rounds = [
                raw_kafka_round(boot, base_topic, partitions, records, progress, f"raw Kafka #{r + 1}", timeout_s)
                for r in range(baseline_repeats)
            ]
        result["record_bytes_mean"] = sum(len(v) for _, v in records) / len(records)

        # 2. The pipeline, once per arm (a fresh namespace each) ----------------------------
        done = [
            run_pipeline(boot, settings, f"{prefix}{i}-" if len(arms) > 1 else prefix, run, FEATURE_ARMS[a], tmp)
            for i, a in enumerate(arms)
        ]
        first = done[0]
        result["warmup_s"] = first["warmup_s"]
        result["pipeline_batches"] = first["pipeline_batches"]
        result["pipeline"] = first["pipeline"]
        result["cpu_seconds"] = first["cpu_seconds"]
        if len(done) > 1:
            result["arms"] = done

        # 3. Baseline once more: was the machine disturbed? ---------------------------------
        with _progress() as progress:
            rounds.append(
                raw_kafka_round(boot, base_topic, partitions, records, progress, "raw Kafka (after)", timeout_s)
            )
        result["baseline_rounds"] = rounds
        result["baseline"] = {
            k: statistics.median(r[k] for r in rounds) for k in ("produce_records_per_s", "consume_records_per_s")
        }
        result["config"]["load_average_at_end"] = os.getloadavg()
        if len(done) > 1:
            result["features"] = feature_comparison(done, result["baseline"]["consume_records_per_s"])
        print_tables(result, candidates)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
            console.print(f"written: {out}")
    except BanditLPError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    finally:
        if keep_logs is not None:
            for logs in tmp.glob("*/logs"):
                shutil.copytree(logs, keep_logs / logs.parent.name, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        try:  # a broker recovers every partition it holds at start-up: leave none behind
            delete_topics(boot, prefix)
        except BanditLPError as exc:
            console.print(f"[yellow]could not delete the bench's topics ({prefix}*):[/] {exc}")


if __name__ == "__main__":
    typer.run(main)
