"""The tune-metrics app on a real broker: per-arm windows against a hand computation, across a SIGKILL.

Records published here with chosen Kafka timestamps land in three 10-s tumbling windows W0, W1, W2:
``metrics`` (the learners' per-arm feedback counts) and ``decisions`` (the users' items per batch, a
fallback decision and a second copy of one decision id among them). ``banditlp worker tune-metrics``
sums them per (arm, window); the tuner job's reader (``streams.tune.windows.WindowReader``, the
windowed tables' changelogs) must give exactly the sums computed by hand below. Between the two rounds
of records the worker is SIGKILLed and restarted: its tables come back from their changelogs, and the
records it re-reads past its last committed offset are not counted twice. Finally the tuner job's
totals with ``windows=2`` are those of W1 and W2 alone (W0 aged out).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

from streams.cli.processes import WorkerSet
from streams.errors import BrokerError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames, create_topics, topic_specs
from streams.settings import Settings
from streams.tune.job import ArmTotals, TunerJob, TunerJobConfig
from streams.tune.windows import BATCH_FIELDS, FEEDBACK_FIELDS
from tests.integration.kafka_reading import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 10.0


def metrics_value(arm: str, n: int, conv: int, unsub: int, value: float) -> dict[str, Any]:
    return {
        "arm_id": arm,
        "window_start_ms": 0,
        "window_end_ms": 0,
        "n_feedback": n,
        "conversions": conv,
        "unsubscriptions": unsub,
        "value_sum": value,
    }


def decision_value(user: str, batch: str, arm: str, props: dict[str, float], policy: str = "banditlp") -> dict:
    return {
        "decision_id": f"{batch}/{user}",
        "batch_id": batch,
        "user_id": user,
        "chosen": [{"item_id": i, "provider_id": "p0", "propensity": p} for i, p in props.items() if p >= 0.5],
        "allocation": [{"item_id": i, "x": float(p >= 0.5), "propensity": p} for i, p in props.items()],
        "model_name": "email",
        "model_version": 1,
        "parameter_version": f"tau@1:{arm}" if arm != "default" else "default",
        "solver": "highs",
        "rounding": "sample",
        "decided_at_ms": 0,
        "n_draws": 4,
        "policy": policy,
    }


def zero() -> dict[str, float]:
    return {f: 0.0 for f in FEEDBACK_FIELDS + BATCH_FIELDS}


def test_per_arm_windows_equal_the_hand_computation_across_a_kill(
    kafka_settings: Settings, kafka_connection: ConnectionConfig, topic_names: TopicNames, tmp_path: Path
) -> None:
    names = topic_names
    settings = kafka_settings.with_prefix(names.prefix)
    serde = settings.serde()
    create_topics(kafka_connection, names, topic_specs(4))
    env = {**os.environ, **settings.to_env(), "BANDITLP_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    t0 = (math.floor(time.time() / SIZE) - 3) * SIZE  # W0 = [t0, t0 + 10), W1, W2 follow; all recent
    producer = clients.producer(kafka_connection, {"enable.idempotence": True})

    def send(topic: str, key: str, value: dict, window: int) -> None:
        stamp = int((t0 + window * SIZE + 2.0) * 1000)
        producer.produce(names(topic), serde.encode(topic, value), key.encode(), timestamp=stamp)

    expected: dict[tuple[str, float], dict[str, float]] = {}

    def expect(arm: str, window: int, **sums: float) -> None:
        into = expected.setdefault((arm, t0 + window * SIZE), zero())
        for k, v in sums.items():
            into[k] += v

    # round 1: feedback
    send("metrics", "a", metrics_value("a", 10, 2, 1, 6.0), 0)
    send("metrics", "a", metrics_value("a", 5, 1, 0, 2.5), 0)
    send("metrics", "b", metrics_value("b", 8, 0, 2, 0.0), 1)
    send("metrics", "a", metrics_value("a", 4, 1, 0, 1.5), 1)
    expect("a", 0, records=2, n_feedback=15, conversions=3, unsubscriptions=1, value_sum=8.5)
    expect("b", 1, records=1, n_feedback=8, conversions=0, unsubscriptions=2, value_sum=0.0)
    expect("a", 1, records=1, n_feedback=4, conversions=1, unsubscriptions=0, value_sum=1.5)
    # round 1: decisions (overlap@1)
    send("decisions", "u1", decision_value("u1", "b1", "a", {"i1": 1.0, "i2": 0.25}), 0)
    expect("a", 0, decisions=1, sends=1, pairs=2, variance_sum=0.1875)
    send("decisions", "u2", decision_value("u2", "b1", "b", {"i5": 0.5, "i6": 0.5}), 0)
    expect("b", 0, decisions=1, sends=2, pairs=2, variance_sum=0.5)
    send("decisions", "u3", decision_value("u3", "b1", "a", {"i1": 1.0}, policy="fallback"), 0)  # not counted
    send("decisions", "u1", decision_value("u1", "b2", "a", {"i1": 0.8, "i3": 0.2}), 1)
    send("decisions", "u1", decision_value("u1", "b2", "a", {"i1": 0.8, "i3": 0.2}), 1)  # same id: once
    expect("a", 1, decisions=1, sends=1, pairs=2, variance_sum=0.32, overlap_sum=1.0, overlap_users=1)  # i1 again
    send("decisions", "u2", decision_value("u2", "b2", "a", {"i5": 1.0}), 1)  # moved from arm b: no overlap
    expect("a", 1, decisions=1, sends=1, pairs=1, variance_sum=0.0)
    assert producer.flush(30) == 0

    job = TunerJob(TunerJobConfig(windows=2, min_feedback=1), kafka_connection, serde, names)

    def windows_equal() -> bool:
        try:
            job.read_metrics(1.0)
        except BrokerError:  # the worker has not made its changelogs yet
            job.reader.close()
            return False
        got = {(w.arm_id, w.start_s): dict(w.sums) for ws in job.reader.windows().values() for w in ws}
        return set(got) == set(expected) and all(
            all(abs(got[k][f] - v) < 1e-9 for f, v in expected[k].items()) for k in expected
        )

    (tmp_path / "logs").mkdir()
    workers = WorkerSet(tmp_path / "logs")
    args = ["worker", "tune-metrics", "--window-s", str(SIZE), "--overlap-k", "1"]
    try:
        workers.start("tune-metrics", args, env)
        wait_until(windows_equal, 120, "round 1 windows", alive=workers.check)

        # SIGKILL (no commit, no flush) and restart: the tables come back from their changelogs
        workers.kill("tune-metrics")
        workers.start("tune-metrics", args, env)
        send("metrics", "b", metrics_value("b", 3, 0, 1, 0.5), 2)
        expect("b", 2, records=1, n_feedback=3, unsubscriptions=1, value_sum=0.5)
        send("decisions", "u1", decision_value("u1", "b3", "a", {"i3": 1.0}), 2)  # top-1 i3 after i1: overlap 0
        expect("a", 2, decisions=1, sends=1, pairs=1, overlap_users=1)
        assert producer.flush(30) == 0
        wait_until(windows_equal, 180, "round 2 windows after the restart", alive=workers.check)
        # and they stay so (nothing re-read past the restart is added on top)
        time.sleep(5.0)
        assert windows_equal()
    finally:
        workers.stop()
        job.reader.close()

    # the tuner's totals of the newest 2 windows (W1, W2): W0 aged out
    assert job.state.totals == {"a": ArmTotals(4, 1, 0, 1.5, 1.0, 2), "b": ArmTotals(11, 0, 3, 0.5)}
    assert {arm: [w.start_s for w in ws] for arm, ws in job.state.windows.items()} == {
        "a": [t0 + SIZE, t0 + 2 * SIZE],
        "b": [t0 + SIZE, t0 + 2 * SIZE],
    }
