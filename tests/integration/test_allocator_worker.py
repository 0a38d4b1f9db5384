"""The allocator worker against a real broker: constraints of the published allocations,
exactly-once decisions across a SIGKILL inside an open transaction, and dead letters."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from streams.decide.worker import AllocatorWorker, AllocatorWorkerConfig
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.settings import Settings
from tests.factories import N_CANDIDATES, scores_value
from tests.factories import closed_value as closed
from tests.factories import opened_value as opened
from tests.integration.kafka_reading import read_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-6


# -- producing input ---------------------------------------------------------------------------


def produce_batches(
    bootstrap: str, names: TopicNames, batch_ids: list[str], n_users: int, seed: int = 0, timeout_ms: int = 30_000
) -> None:
    """All OPENED, then every batch's scores interleaved, then all CLOSED: every batch's
    records are spread over the whole range of offsets (held records pin the commits)."""
    serde, rng = Settings().serde(), np.random.default_rng(seed)
    p = clients.producer(ConnectionConfig(bootstrap), {"linger.ms": 5, "enable.idempotence": True})
    for b in batch_ids:
        p.produce(
            names("batch-control"), key=b.encode(), value=serde.encode("batch-control", opened(b, n_users, timeout_ms))
        )
    for u in range(n_users):
        for b in batch_ids:
            p.produce(names("scores"), key=b.encode(), value=serde.encode("scores", scores_value(b, u, rng)))
        p.poll(0)
    for b in batch_ids:
        p.produce(names("batch-control"), key=b.encode(), value=serde.encode("batch-control", closed(b, n_users)))
    assert p.flush(60) == 0


# -- reading output ----------------------------------------------------------------------------


def wait_for_reports(
    bootstrap: str, names: TopicNames, n: int, timeout_s: float = 120.0, alive: Any = None
) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reports = [v for _, v in read_all(bootstrap, names("allocation-reports"), "allocation-reports")]
        if len({r["batch_id"] for r in reports}) >= n:
            return reports
        if alive is not None:
            assert alive(), "the worker died"
        time.sleep(0.5)
    raise AssertionError(f"fewer than {n} allocation reports after {timeout_s} s")


class WorkerThread:
    """The worker in a thread of the test process, stopped through its stop event."""

    def __init__(self, cfg: AllocatorWorkerConfig, connection: ConnectionConfig) -> None:
        self.worker, self.stop = AllocatorWorker(cfg, connection, Settings().serde()), threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run(stop_event=self.stop, max_seconds=300)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def alive(self) -> bool:
        return self.thread.is_alive() and self.error is None


def check_decisions(
    decisions: list[tuple[bytes, dict]], batch_ids: list[str], n_users: int, reports: list[dict]
) -> None:
    """Exactly one decision per (batch, user); caps; budgets and provider bounds from the published x."""
    keys = Counter((v["batch_id"], v["user_id"]) for _, v in decisions)
    expected = {(b, f"user-{u:05d}") for b in batch_ids for u in range(n_users)}
    assert set(keys) == expected, f"missing {len(expected - set(keys))}, unexpected {len(set(keys) - expected)}"
    assert max(keys.values()) == 1, f"duplicates: {[k for k, c in keys.items() if c > 1][:5]}"
    by_batch: dict[str, list[dict]] = {b: [] for b in batch_ids}
    for key, v in decisions:
        assert key == v["user_id"].encode() and v["decision_id"] == f"{v['batch_id']}/{v['user_id']}"
        by_batch[v["batch_id"]].append(v)
    report_of = {r["batch_id"]: r for r in reports}
    assert set(report_of) == set(batch_ids) and len(reports) == len(batch_ids)
    for b, decs in by_batch.items():
        rep = report_of[b]
        assert rep["status"] == "optimal" and rep["n_users"] == n_users and rep["n_missing"] == 0
        assert rep["n_pairs"] == n_users * N_CANDIDATES
        con = opened(b, n_users)
        for v in decs:
            user = int(v["user_id"].split("-")[1])
            cap = 1 + user % 2
            assert len(v["chosen"]) <= cap
            x = np.array([a["x"] for a in v["allocation"]])
            assert len(x) == N_CANDIDATES and np.all(x >= 0) and np.all(x <= 1)
            assert x.sum() <= cap * (1 + TOL)
            x_of = {a["item_id"]: a["x"] for a in v["allocation"]}
            for c in v["chosen"]:  # propensity = x_e under systematic sampling
                assert c["propensity"] == pytest.approx(x_of[c["item_id"]]) and c["propensity"] > 0
            assert v["model_name"] == "neural-ts" and v["model_version"] == 3 and v["rounding"] == "sample"
        # The report's own usage figures (check_against_inputs recomputes them from x and the inputs).
        for d in con["providers"]:
            rows = [r for r in rep["providers"] if r["provider_id"] == d["provider_id"]]
            assert len(rows) == 1
            assert rows[0]["exposure"] >= d["min_exposure"] * (1 - TOL) - TOL
            if d["max_exposure"] is not None:
                assert rows[0]["exposure"] <= d["max_exposure"] * (1 + TOL) + TOL
        for bu in rep["budgets"]:
            assert bu["used"] <= bu["limit"] * (1 + TOL)


def check_against_inputs(
    decisions: list[tuple[bytes, dict]], batch_ids: list[str], n_users: int, seed: int = 0
) -> None:
    """Budgets and provider bounds recomputed from the published x and the produced samples."""
    rng = np.random.default_rng(seed)
    samples: dict[tuple[str, str], dict] = {}
    for u in range(n_users):
        for b in batch_ids:
            v = scores_value(b, u, rng)
            samples[(b, v["user_id"])] = v
    per_batch: dict[str, dict[str, float]] = {b: Counter() for b in batch_ids}
    for _, d in decisions:
        s = samples[(d["batch_id"], d["user_id"])]
        assert [a["item_id"] for a in d["allocation"]] == [it["item_id"] for it in s["items"]]
        acc = per_batch[d["batch_id"]]
        for a, it in zip(d["allocation"], s["items"]):
            acc["unsub"] += a["x"] * it["samples"]["unsubscription"]
            acc[it["provider_id"]] += a["x"]
    for b, acc in per_batch.items():
        con = opened(b, n_users)
        limit = con["budgets"][0]["limit"]
        assert acc["unsub"] <= limit * (1 + TOL), (b, acc["unsub"], limit)
        assert acc["unsub"] >= 0.9 * limit  # the budget binds: the test exercises it
        for d in con["providers"]:
            assert acc[d["provider_id"]] >= d["min_exposure"] * (1 - TOL) - TOL, (b, d, acc[d["provider_id"]])
            if d["max_exposure"] is not None:
                assert acc[d["provider_id"]] <= d["max_exposure"] * (1 + TOL) + TOL, (b, d)


# -- tests -------------------------------------------------------------------------------------


def test_five_batches_are_decided_once_within_every_constraint(
    kafka_bootstrap, kafka_connection, project_topics
) -> None:
    names = project_topics(partitions=4)
    batch_ids, n_users = [f"batch-{k}" for k in range(5)], 300
    produce_batches(kafka_bootstrap, names, batch_ids, n_users)
    cfg = AllocatorWorkerConfig.for_prefix(names.prefix, stats_interval_s=5.0)
    with WorkerThread(cfg, kafka_connection) as w:
        reports = wait_for_reports(kafka_bootstrap, names, 5, alive=w.alive)
    assert w.error is None
    decisions = read_all(kafka_bootstrap, names("decisions"), "decisions")
    check_decisions(decisions, batch_ids, n_users, reports)
    check_against_inputs(decisions, batch_ids, n_users)
    assert w.worker.stats.batches_decided == 5 and w.worker.stats.decisions == 5 * n_users
    assert w.worker.stats.dead_letters == 0
    assert read_all(kafka_bootstrap, names("dead-letters"), "dead-letters") == []


def _spawn(bootstrap: str, prefix: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams",
            "--bootstrap",
            bootstrap,
            "--prefix",
            prefix,
            "worker",
            "allocator",
            "--poll-timeout-s",
            "0.1",
            "--stats-interval-s",
            "5",
            *extra,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigkill_inside_an_open_transaction_then_restart_decides_each_user_exactly_once(
    kafka_bootstrap, kafka_connection, project_topics
) -> None:
    names = project_topics(partitions=4)
    batch_ids, n_users = [f"batch-{k}" for k in range(5)], 300
    produce_batches(kafka_bootstrap, names, batch_ids, n_users)
    first = _spawn(kafka_bootstrap, names.prefix, "--debug-sleep-before-commit-s", "2")
    lines: list[str] = []
    decided, killed = 0, False
    try:
        assert first.stderr is not None
        for line in first.stderr:  # kill inside the transaction that follows the 2nd decided batch
            lines.append(line)
            if " decided: " in line:
                decided += 1
            if decided >= 2 and "transaction open" in line:
                time.sleep(0.5)  # well inside the 2 s sleep: produced, offsets sent, not committed
                first.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        first.kill()
        first.wait(30)
    assert killed, "".join(lines[-30:])
    before = {v["batch_id"] for _, v in read_all(kafka_bootstrap, names("allocation-reports"), "allocation-reports")}
    assert 2 <= len(before) < 5  # the killed transaction's batch is not visible
    second = _spawn(kafka_bootstrap, names.prefix)
    try:
        reports = wait_for_reports(kafka_bootstrap, names, 5, alive=lambda: second.poll() is None)
        time.sleep(1.0)  # let any (wrong) extra transaction land before checking exactly-once
        second.send_signal(signal.SIGTERM)  # a clean stop
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err[-3000:]
    finally:
        if second.poll() is None:
            second.kill()
    # The restarted worker re-read records of the batches decided before the kill (their
    # offsets were pinned by the other batches' held records) and skipped them.
    replayed = [int(m) for m in re.findall(r"'skipped_replayed': (\d+)", err)]
    assert replayed and replayed[-1] > 0, err[-3000:]
    reports = [v for _, v in read_all(kafka_bootstrap, names("allocation-reports"), "allocation-reports")]
    decisions = read_all(kafka_bootstrap, names("decisions"), "decisions")
    check_decisions(decisions, batch_ids, n_users, reports)
    check_against_inputs(decisions, batch_ids, n_users)
    assert read_all(kafka_bootstrap, names("dead-letters"), "dead-letters") == []  # replays are not dead letters


def test_garbage_goes_to_dead_letters_and_good_batches_are_decided(
    kafka_bootstrap, kafka_connection, project_topics
) -> None:
    names = project_topics(partitions=4)
    batch_ids, n_users = ["good-0", "good-1"], 50
    serde, rng = Settings().serde(), np.random.default_rng(11)
    p = clients.producer(kafka_connection, {"linger.ms": 5})
    scores_t, control_t = names("scores"), names("batch-control")
    body = serde.encode("scores", scores_value("good-0", 999, rng))[5:]
    bad: list[tuple[str, bytes, str]] = [  # (topic, value, expected reason fragment)
        (scores_t, b"this is not avro at all", "magic byte"),
        (scores_t, struct.pack(">bI", 0, 12345) + body, "unknown schema id 12345"),
        (scores_t, serde.encode("scores", scores_value("good-1", 998, rng, nan=True)), "NaN"),
        (control_t, b"\x00\x00\x00", "shorter than the 5-byte header"),
        (scores_t, serde.encode("scores", scores_value("ghost-batch", 1, rng)), "unknown batch ghost-batch"),
        (scores_t, serde.encode("scores", scores_value("ghost-batch", 2, rng)), "unknown batch ghost-batch"),
    ]
    for b in batch_ids:
        p.produce(control_t, key=b.encode(), value=serde.encode("batch-control", opened(b, n_users)))
    for u in range(n_users):
        for b in batch_ids:
            p.produce(scores_t, key=b.encode(), value=serde.encode("scores", scores_value(b, u, rng)))
        if u % 10 == 0 and u // 10 < len(bad):  # interleave the garbage with the good records
            topic, value, _ = bad[u // 10]
            p.produce(topic, key=b"junk", value=value)
    for topic, value, _ in bad[(n_users + 9) // 10 :]:
        p.produce(topic, key=b"junk", value=value)
    dup = serde.encode("scores", scores_value("good-0", 0, rng))  # a duplicate (batch, user): skipped, kept first
    p.produce(scores_t, key=b"good-0", value=dup)
    for b in batch_ids:
        p.produce(control_t, key=b.encode(), value=serde.encode("batch-control", closed(b, n_users)))
    assert p.flush(30) == 0

    cfg = AllocatorWorkerConfig.for_prefix(names.prefix, unknown_batch_timeout_s=2.0, dead_letter_flush_s=0.5)
    with WorkerThread(cfg, kafka_connection) as w:
        reports = wait_for_reports(kafka_bootstrap, names, 2, alive=w.alive)
        # A late score for a decided batch is dead-lettered too; a decided user scored again (a
        # scorer's replay after its rebalance) is skipped as a duplicate.
        duplicates_before = w.worker.stats.skipped_duplicates
        # (the duplicate first: same key, same partition, so it is consumed before the late one lands)
        p.produce(scores_t, key=b"good-0", value=serde.encode("scores", scores_value("good-0", 7, rng)))
        p.produce(scores_t, key=b"good-0", value=serde.encode("scores", scores_value("good-0", n_users + 7, rng)))
        assert p.flush(30) == 0
        bad.append((scores_t, b"", f"scores for decided batch good-0; user user-{n_users + 7:05d} was not scored"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dead = read_all(kafka_bootstrap, names("dead-letters"), "dead-letters")
            if len(dead) >= len(bad):
                break
            assert w.alive()
            time.sleep(0.5)
        assert w.alive(), w.error
    assert w.error is None
    decisions = read_all(kafka_bootstrap, names("decisions"), "decisions")
    check_decisions(decisions, batch_ids, n_users, reports)
    dead = [(k, v) for k, v in read_all(kafka_bootstrap, names("dead-letters"), "dead-letters")]
    assert len(dead) == len(bad), [v["reason"] for _, v in dead]
    reasons = [v["reason"] for _, v in dead]
    for topic, value, fragment in bad:
        hits = [v for _, v in dead if fragment in v["reason"] and v["source_topic"] == topic]
        assert hits, (fragment, reasons)
        if value:
            assert any(h["value"] == value for h in hits), fragment
    for key, v in dead:
        assert key == v["source_topic"].encode() and v["consumer"] == "allocator"
        assert v["error_type"] in ("DecodeError", "ValidationError")
    assert w.worker.stats.skipped_duplicates >= duplicates_before + 1 and w.worker.stats.dead_letters == len(bad)


class _AbortOnceProducer(Producer):
    """A real transactional producer whose first commit of a transaction carrying decisions
    fails with an abortable error (as a coordinator error would): fault injection on the
    client side, the broker stays real."""

    failures = 1

    def begin_transaction(self, *args: Any) -> None:
        self._carries_decisions = False
        super().begin_transaction(*args)

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        if topic.endswith("decisions"):
            self._carries_decisions = True
        super().produce(topic, *args, **kwargs)

    def commit_transaction(self, *args: Any) -> None:
        if self._carries_decisions and _AbortOnceProducer.failures > 0:
            _AbortOnceProducer.failures -= 1
            raise KafkaException(KafkaError(KafkaError._STATE, "injected abortable error", txn_requires_abort=True))
        super().commit_transaction(*args)


def test_an_abortable_commit_error_aborts_rewinds_and_still_decides_once(
    kafka_bootstrap, kafka_connection, project_topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streams.kafka.clients as kafka_clients

    names = project_topics(partitions=4)
    batch_ids, n_users = [f"batch-{k}" for k in range(3)], 100
    produce_batches(kafka_bootstrap, names, batch_ids, n_users)
    monkeypatch.setattr(kafka_clients, "Producer", _AbortOnceProducer)
    cfg = AllocatorWorkerConfig.for_prefix(names.prefix)
    with WorkerThread(cfg, kafka_connection) as w:
        reports = wait_for_reports(kafka_bootstrap, names, 3, alive=w.alive)
        time.sleep(1.0)
    assert w.error is None and w.worker.stats.aborts == 1 and _AbortOnceProducer.failures == 0
    reports = [v for _, v in read_all(kafka_bootstrap, names("allocation-reports"), "allocation-reports")]
    decisions = read_all(kafka_bootstrap, names("decisions"), "decisions")
    check_decisions(decisions, batch_ids, n_users, reports)
    check_against_inputs(decisions, batch_ids, n_users)
