"""Issue 18's scenario: faults during a 6-batch ``banditlp simulate`` leave no user undecided.

On a broker of its own (the project's local KRaft broker on free ports, fresh storage, deleted
afterwards: restarting it cannot disturb the session's broker or another test), two processors
workers (static members), the allocator and ``banditlp simulate --batches 6`` run as processes.
Right after the first batch is decided a processors worker is SIGKILLed and restarted at once,
after the second the allocator, after the third the broker is stopped and started again
(``LocalBroker.down`` / ``up``: what ``banditlp kafka down`` and ``up`` do). The allocator's
window after CLOSED is 3 s, shorter than a scorer's restart, so the batch after the first kill
usually has users never scored in time. The test supervises the workers as a deployment would:
a worker that exits is started again (the allocator's watchdog ends it when librdkafka blocks for
good after the broker restart: ``--stuck-call-s 30``). Then, read_committed: every user of every
batch has exactly one decision within its cap; the reports count the fallback's decisions as the
decisions say; every scores record of a user the fallback decided went to dead-letters (late
scores stay dead-lettered); ``simulate`` exited 0, which it does only when no closed batch left a
user undecided. How many decisions the fallback made depends on the machine's timing (0 is
possible); the test prints them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from evaluation.email_world import EmailWorld, EmailWorldConfig
from streams.cli.processes import WorkerSet
from streams.errors import BrokerError
from streams.kafka import clients
from streams.kafka.local_broker import LocalBroker, LocalBrokerConfig
from streams.kafka.topics import TopicNames, create_topics, topic_specs
from streams.settings import Settings
from tests.integration.kafka_reading import read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCHES, USERS, ITEMS, PROVIDERS, CANDIDATES = 6, 200, 20, 4, 5
WINDOW_MS = 3_000  # the allocator's wait after CLOSED: short, so that a restarted scorer outlasts it
LIMIT_S = 480  # the whole scenario, start-up included


def free_port_pair() -> int:
    """A port ``p`` with ``p`` and ``p + 1`` (the KRaft controller) free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    home = Path(os.environ.get("BANDITLP_KAFKA_HOME", os.path.expanduser("~/.cache/banditlp/kafka")))
    broker = LocalBroker(LocalBrokerConfig(home=home, port=free_port_pair(), name="faults-broker", start_timeout_s=120))
    try:
        broker.ensure_jars()
    except BrokerError as exc:
        pytest.skip(f"the project's local broker cannot be provisioned here: {exc}")
    broker.up(fresh=True)
    try:
        yield broker
    finally:
        broker.down()
        if broker.config.log_path.exists():  # kept beside the workers' logs
            shutil.copy(broker.config.log_path, tmp_path / "broker.log")
        shutil.rmtree(broker.config.instance_dir, ignore_errors=True)


@pytest.mark.timeout(LIMIT_S + 180)
def test_kills_and_a_broker_restart_during_simulate_leave_no_user_without_a_decision(
    own_broker: LocalBroker, tmp_path: Path
) -> None:
    broker = own_broker
    names = TopicNames("faults-")
    settings = Settings(
        connection=broker.config.connection, kafka_home=broker.config.home, kafka_port=broker.config.port
    ).with_prefix(names.prefix)
    serde = settings.serde()
    create_topics(settings.connection, names, topic_specs(4))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "BANDITLP_"))}
    env = {**base, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    (tmp_path / "logs").mkdir()
    workers = WorkerSet(tmp_path / "logs")
    commands = {
        f"processors-{i}": (
            ["worker", "processors", "--instance", str(i)],
            {**env, "BANDITLP_STATE_DIR": str(tmp_path / f"state-{i}")},
        )
        for i in range(2)
    }
    commands["allocator"] = (["worker", "allocator", "--stats-interval-s", "5", "--stuck-call-s", "30"], env)
    simulate = [
        "simulate",
        *("--batches", str(BATCHES), "--users", str(USERS), "--items", str(ITEMS)),
        *("--providers", str(PROVIDERS), "--candidates", str(CANDIDATES), "--timeout-ms", str(WINDOW_MS)),
        *("--warm-start-batches", "2", "--run-dir", str(tmp_path / "run")),
    ]
    faults: list[tuple[str, float]] = []
    restarts: Counter[str] = Counter()
    deadline = time.monotonic() + LIMIT_S

    reports = clients.consumer(
        settings.connection,
        {"group.id": f"{names.prefix}test-watch", "isolation.level": "read_committed", "enable.auto.commit": False},
    )
    reports.assign([TopicPartition(names("allocation-reports"), 0, OFFSET_BEGINNING)])
    seen: set[str] = set()

    def decided() -> int:
        """Batches with a committed report so far (a fault follows one within ~0.1 s)."""
        for msg in reports.consume(100, timeout=0.1):
            if msg.error() is None:
                seen.add(serde.decode("allocation-reports", msg.value())["batch_id"])
        return len(seen)

    def supervise() -> None:
        """Start again any worker that exited (the simulator is not a worker: it must finish)."""
        for name, (args, worker_env) in commands.items():
            if workers.procs[name].poll() is not None:
                restarts[name] += 1
                workers.start(name, args, worker_env)

    def wait_for(n: int) -> None:
        while time.monotonic() < deadline and workers.procs["simulate"].poll() is None:
            supervise()
            if decided() >= n:
                return

    start = time.monotonic()
    try:
        for name, (args, worker_env) in commands.items():
            workers.start(name, args, worker_env)
        workers.start("simulate", simulate, env)
        wait_for(1)
        workers.kill("processors-0")  # 1. a scorer dies and is replaced at once (same instance id)
        workers.start("processors-0", *commands["processors-0"])
        faults.append(("processors-0 SIGKILL + restart", time.monotonic() - start))
        wait_for(2)
        workers.kill("allocator")  # 2. the allocator dies and is replaced at once
        workers.start("allocator", *commands["allocator"])
        faults.append(("allocator SIGKILL + restart", time.monotonic() - start))
        wait_for(3)
        broker.down()  # 3. the broker restarts (its data kept), as `banditlp kafka down && up`
        broker.up()
        faults.append(("broker down + up", time.monotonic() - start))
        while time.monotonic() < deadline and workers.procs["simulate"].poll() is None:
            supervise()
            time.sleep(1.0)
        sim = workers.procs["simulate"]
        assert sim.poll() is not None, f"simulate did not finish within {LIMIT_S} s"
        sim_log = (tmp_path / "logs" / "simulate.log").read_text(errors="replace")
        assert sim.returncode == 0, sim_log[-4000:]
        elapsed = time.monotonic() - start
        fallback = {
            (v["batch_id"], v["user_id"])
            for _, v in read_all(broker.config.bootstrap, names("decisions"), "decisions")
            if v["policy"] == "fallback"
        }
        # Late scores stay dead-lettered: each fallback user's scores that reached the scores
        # topic after its batch was decided is in dead-letters (the allocator keeps running).
        scored = {
            (v["batch_id"], v["user_id"]) for _, v in read_all(broker.config.bootstrap, names("scores"), "scores")
        }
        late: set[tuple[str, str]] = set()
        while time.monotonic() < deadline + 60:
            late = {
                (s["batch_id"], s["user_id"])
                for s in (
                    serde.decode("scores", v["value"])
                    for _, v in read_all(broker.config.bootstrap, names("dead-letters"), "dead-letters")
                    if v["source_topic"] == names("scores") and v["reason"].startswith("scores for decided batch")
                )
            }
            if fallback & scored <= late:
                break
            supervise()
            time.sleep(1.0)
    finally:
        reports.close()
        workers.stop()

    world = EmailWorld(
        EmailWorldConfig(n_users=USERS, n_items=ITEMS, n_providers=PROVIDERS, candidates_per_user=CANDIDATES, seed=0)
    )
    batches = [world.candidates(b) for b in range(BATCHES)]
    caps = {c.batch_id: world.constraints(c).user_cap for c in batches}
    expected = {(c.batch_id, f"u{int(u)}") for c in batches for u in set(c.pair_user.tolist())}
    decisions = [v for _, v in read_all(broker.config.bootstrap, names("decisions"), "decisions")]
    count = Counter((d["batch_id"], d["user_id"]) for d in decisions)
    undecided = expected - set(count)
    assert not undecided, f"{len(undecided)} users without a decision, e.g. {sorted(undecided)[:5]}"
    assert set(count) == expected and max(count.values()) == 1, [k for k, n in count.items() if n > 1][:5]
    reports = {
        v["batch_id"]: v
        for _, v in read_all(broker.config.bootstrap, names("allocation-reports"), "allocation-reports")
    }
    assert set(reports) == {c.batch_id for c in batches}
    assert sum(r["n_fallback"] for r in reports.values()) == len(fallback)
    assert all(r["n_users"] == USERS for r in reports.values())
    for d in decisions:  # every decision keeps its user's cap; the fallback's log propensity 1 or 0
        assert len(d["chosen"]) <= caps[d["batch_id"]][int(d["user_id"][1:])]
        if d["policy"] == "fallback":
            assert all(c["propensity"] == 1.0 for c in d["chosen"])
            assert all(a["propensity"] in (0.0, 1.0) for a in d["allocation"])
    assert fallback & scored <= late, f"late scores not dead-lettered: {sorted((fallback & scored) - late)[:5]}"
    summary = {
        "decisions": len(decisions),
        "fallback_decisions": len(fallback),
        "undecided_users": len(undecided),
        "fallback_users_scored_late_and_dead_lettered": len(fallback & scored),
        "fallback_by_batch": {b: r["n_fallback"] for b, r in sorted(reports.items())},
        "worker_restarts_by_the_supervisor": dict(restarts),
        "faults_at_s": [(what, round(t, 1)) for what, t in faults],
        "simulate_s": round(elapsed, 1),
    }
    print("fault scenario:", json.dumps(summary))
