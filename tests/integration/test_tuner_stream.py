"""The tuner in the streams, on a real broker: a published distribution serves each user an arm, a
restarted scorer reads the newest one from the compacted topic, and every decision names its arm.

1. ``banditlp tune --publish`` writes version 1: arm ``hot`` (tau 2, budget_scale 1) and arm ``cold``
   (tau 0), half each; the allocator gives each arm its own unsubscription row (``streams.decide.arm_knobs``).
2. A processors worker and an allocator decide one simulated batch. Every decision scored by the LP
   says ``tau@1:<arm>``, and the arm is the one computed here from models.tuner.assignment alone
   (the user's BLAKE2b position in ``initial_layout`` of the published probabilities); the scores of a
   ``cold`` user are at tau 0 (samples equal means), a ``hot`` user's at tau 2. The learner's metrics
   records count each arm's feedback: their n_feedback per arm equals the items sent to its users.
3. The scorer is stopped (SIGTERM); the tuner job (``streams.tune.job``, one step) reads those metrics as
   the tune-metrics worker's windows (whose per-arm sends, from the decisions, equal the items sent too),
   fits models.tuner and publishes version 2 (new arms, new shares); the scorer starts again on the
   same state and decides a second batch: every decision says ``tau@2:<arm>`` and the arm is the one
   of ``relayout(initial_layout(p1), p2)`` (computed here), at that arm's tau.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from evaluation.email_world import EmailWorldConfig
from evaluation.reporting import write_report
from models.tuner.assignment import Layout, initial_layout, moved_fraction, relayout, total_variation, user_positions
from streams.cli.processes import WorkerSet
from streams.errors import BrokerError
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames, create_topics, topic_specs
from streams.score.parameter_feed import parse_parameter_version
from streams.settings import Settings
from streams.simulate.feed import SimulatorConfig, SimulatorFeed
from streams.simulate.warm_start import publish_warm_start
from streams.tune.job import TunerJob, TunerJobConfig
from streams.tune.run_log import TUNE_LIVE_JSON, TuneRunLog
from streams.tune.windows import summed
from tests.integration.kafka_reading import read_all, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORLD = EmailWorldConfig(n_users=160, n_items=20, n_providers=4, candidates_per_user=5, seed=13)
EXPERIMENT = "tau"


def served(decisions: dict[str, dict], version: int) -> dict[str, str]:
    """user -> arm of the LP's decisions (the fallback's users were never scored), each of ``version``."""
    out = {}
    for user, d in decisions.items():
        if d.get("policy") == "fallback":
            continue
        parsed = parse_parameter_version(d["parameter_version"])
        assert parsed is not None and parsed[:2] == (EXPERIMENT, version), d["parameter_version"]
        out[user] = parsed[2]
    return out


def expected_arms(users: list[str], layout: Layout) -> dict[str, str]:
    return dict(zip(users, layout.assign(user_positions(users, EXPERIMENT, ""))))


def decisions_of(connection: ConnectionConfig, names: TopicNames, batch_id: str) -> dict[str, dict]:
    return {
        v["user_id"]: v for _, v in read_all(connection, names("decisions"), "decisions") if v["batch_id"] == batch_id
    }


def scores_of(connection: ConnectionConfig, names: TopicNames, batch_id: str) -> dict[str, dict]:
    return {v["user_id"]: v for _, v in read_all(connection, names("scores"), "scores") if v["batch_id"] == batch_id}


def test_decisions_carry_the_arm_of_the_newest_distribution_across_a_scorer_restart(
    kafka_settings: Settings, kafka_connection: ConnectionConfig, topic_names: TopicNames, tmp_path: Path
) -> None:
    names = topic_names
    settings = kafka_settings.with_prefix(names.prefix)
    serde = settings.serde()
    create_topics(kafka_connection, names, topic_specs(4))
    publish_warm_start(kafka_connection, serde, names, WORLD, "email", n_batches=1, seed=0)
    env = {**os.environ, **settings.to_env(), "BANDITLP_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}

    # 1. the operator's one-shot publish, through the CLI
    cli = [sys.executable, "-m", "streams", "tune", "--publish", "--experiment", EXPERIMENT]
    out = subprocess.run(
        [*cli, "--arm", "hot/tau=2.0,budget_scale=1:0.5", "--arm", "cold/tau=0:0.5"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "published tau version 1" in out.stdout
    p1 = {"hot": 0.5, "cold": 0.5}
    tau_of = {"hot": 2.0, "cold": 0.0}

    (tmp_path / "logs").mkdir()
    workers = WorkerSet(tmp_path / "logs")
    feed = SimulatorFeed(
        SimulatorConfig(names=names, world=WORLD, timeout_ms=120_000, decision_timeout_s=240.0), kafka_connection, serde
    )
    try:
        workers.start("processors", ["worker", "processors", "--experiment", EXPERIMENT], env)
        workers.start("allocator", ["worker", "allocator", "--unknown-batch-timeout-s", "5"], env)
        workers.start("tune-metrics", ["worker", "tune-metrics"], env)

        # 2. one batch under version 1
        run0 = feed.run_batch(0)
        batch0 = feed.world.candidates(0).batch_id
        decisions0 = {
            v["user_id"]: v
            for _, v in read_all(kafka_connection, names("decisions"), "decisions")
            if v["batch_id"] == batch0
        }
        arms0 = served(decisions0, 1)
        assert len(arms0) >= 0.9 * WORLD.n_users, f"{len(arms0)} of {WORLD.n_users} decided by the LP"
        users0 = sorted(arms0)
        assert arms0 == expected_arms(users0, initial_layout(p1))
        assert set(arms0.values()) == {"hot", "cold"}
        # hot's budget_scale gives each arm its own unsubscription row in the allocator's LP (arm_knobs)
        report0 = next(v for _, v in read_all(kafka_connection, names("allocation-reports"), "allocation-reports"))
        rows = {b["name"]: b for b in report0["budgets"]}
        arm_rows = {n.rpartition("@")[2] for n in rows if n.count("@") == 2}
        assert arm_rows == {"1:hot", "1:cold"}, sorted(rows)
        assert all(b["used"] <= b["limit"] * (1 + 1e-6) + 1e-9 for b in rows.values()), rows
        scores0 = scores_of(kafka_connection, names, batch0)
        for user, arm in arms0.items():
            s = scores0[user]
            assert s["tau"] == tau_of[arm] and s["parameter_version"] == f"{EXPERIMENT}@1:{arm}"
            greedy = all(it["samples"] == it["means"] for it in s["items"])
            assert greedy == (arm == "cold"), (user, arm)

        # the learner's per-arm metrics: n_feedback per arm = items sent to that arm's users (a fallback
        # user's feedback has no decision context: it is dead-lettered, not counted)
        sent: Counter[str] = Counter()
        batch = feed.world.candidates(0)
        for j in np.flatnonzero(run0.chosen).tolist():
            user = f"u{int(batch.pair_user[j])}"
            if user in arms0:
                sent[arms0[user]] += 1

        def metric_totals() -> Counter[str]:
            totals: Counter[str] = Counter()
            for _, v in read_all(kafka_connection, names("metrics"), "metrics"):
                totals[v["arm_id"]] += v["n_feedback"]
            return totals

        wait_until(lambda: metric_totals() == sent, 120, f"metrics per arm {dict(sent)}", alive=workers.check)

        # 3. stop the scorer; the tuner reads the metrics and publishes version 2; the scorer restarts
        proc = workers.procs["processors"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) is not None
        job_config = TunerJobConfig(experiment=EXPERIMENT, min_feedback=1, n_samples=256, n_candidates=32, max_arms=4)
        run_dir = tmp_path / "tune-run"  # what `banditlp tune --live --out DIR` writes
        run_log = TuneRunLog(run_dir, EXPERIMENT, job_config.knobs, job_config.windows, 0.01)
        job = TunerJob(job_config, kafka_connection, serde, names, run_log)

        def windowed() -> bool:
            try:
                job.read_metrics(1.0)
            except BrokerError:  # tune-metrics has not made its changelogs yet
                job.reader.close()
                return False
            return {a: t.n_feedback for a, t in job.state.totals.items() if t.n_feedback} == dict(sent)

        # the tune-metrics windows: the feedback per arm, and the decisions' sends per arm, both = sent
        wait_until(windowed, 120, f"windowed feedback per arm {dict(sent)}", alive=workers.check)
        assert {a: summed(ws)["sends"] for a, ws in job.state.windows.items()} == {a: float(n) for a, n in sent.items()}
        v2 = job.step()
        assert v2 is not None and v2.version == 2
        p2 = {a.arm_id: a.probability for a in v2.arms}
        assert not set(p2) & set(p1)  # the tuner's arms are its candidates' ids
        tau2 = {a.arm_id: a.parameters["tau"] for a in v2.arms}
        layout2 = relayout(initial_layout(p1), p2)  # the minimal move, computed here
        assert moved_fraction(initial_layout(p1), layout2) == pytest.approx(total_variation(p1, p2), abs=1e-9)
        # the run directory: its step says what was published and each arm's feedback; the report renders it
        logged = json.loads((run_dir / TUNE_LIVE_JSON).read_text())["steps"]
        assert [s["version"] for s in logged] == [2] and {a["arm_id"] for a in logged[0]["arms"]} == set(p2)
        assert {m["arm_id"]: m["n_feedback"] for m in logged[0]["metrics"] if m["n_feedback"]} == dict(sent)
        page = write_report(run_dir).read_text()
        assert "1 steps, 1 published versions" in page and "Per-arm metrics at the last step (1)" in page

        workers.start("processors", ["worker", "processors", "--experiment", EXPERIMENT], env)
        feed.run_batch(1)
        batch1 = feed.world.candidates(1).batch_id
        decisions1 = {
            v["user_id"]: v
            for _, v in read_all(kafka_connection, names("decisions"), "decisions")
            if v["batch_id"] == batch1
        }
        arms1 = served(decisions1, 2)
        assert len(arms1) >= 0.9 * WORLD.n_users, f"{len(arms1)} of {WORLD.n_users} decided by the LP"
        assert arms1 == expected_arms(sorted(arms1), layout2)
        scores1 = scores_of(kafka_connection, names, batch1)
        for user, arm in arms1.items():
            assert scores1[user]["tau"] == pytest.approx(tau2[arm], abs=0) and scores1[user]["parameter_version"] == (
                f"{EXPERIMENT}@2:{arm}"
            )
        print(  # for the record (pytest -s)
            f"v1 users per arm {dict(Counter(arms0.values()))}; v2 arms {tau2} p {p2}; moved "
            f"{np.mean([arms0.get(u) != a for u, a in arms1.items()]):.3f} of users, TV {total_variation(p1, p2):.3f}; "
            f"v2 users per arm {dict(Counter(arms1.values()))}"
        )
        log = (tmp_path / "logs" / "processors.log").read_text()
        assert "experiment tau: 2 arms, version 1" in log and f"version {v2.version}" in log
    finally:
        workers.stop()
        feed.close()
