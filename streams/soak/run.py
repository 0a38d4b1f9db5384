"""``banditlp soak``'s run: a broker of its own, the workers, the simulated world played batch after
batch, the chaos driver, the lag monitor, and at the end the independent audit and ``soak.json``.

Order of a run: start a fresh local broker on the soak's own port (its data under the Kafka
home, deleted at the end); create the topics of the ``soak-`` namespace; train model v1 on
logged random sends; start the workers (``processors`` x N as static members, ``allocator``,
``trainer``), each in its own process group; play batches back to back. The chaos clock starts
once the first batch is decided; faults are planned over ``minutes`` (``plan_faults``). The
batches go on until the time is up, every fault has been played and each one has recovered
(or its bound has passed), then the learner is given time to absorb the last feedback, the
workers stop cleanly (SIGTERM: offsets and changelogs flushed), and the auditor reads the topics
(``streams.soak.collect``) and counts (``streams.soak.audit``, ``streams.soak.audit_posterior``).
Whatever happens (an error, Ctrl-C), every worker's process group and the broker are stopped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import KafkaException

from banditlp.errors import BanditLPError
from evaluation.email_world import EmailWorldConfig
from models.random_effects import RandomEffectConfig
from streams.errors import ConfigError
from streams.kafka.local_broker import LocalBroker, LocalBrokerConfig, broker_answers
from streams.kafka.topics import create_topics, topic_specs
from streams.processors.config import ProcessorConfig
from streams.settings import Settings
from streams.simulate.feed import SimulatorConfig
from streams.soak.audit import audit_decisions, missing
from streams.soak.audit_posterior import check_head
from streams.soak.chaos import ChaosDriver
from streams.soak.monitor import LagMonitor
from streams.soak.recovery import RecoveryTracker
from streams.soak.schedule import ChaosConfig, plan_faults
from streams.soak.workers import Supervisor, WorkerSpec

log = logging.getLogger("banditlp.soak")

PREFIX = "soak-"
MODEL = "email"
PORTS = range(19500, 19599)  # the soak's own broker: the first free pair (port, port + 1) here


@dataclass(frozen=True)
class SoakConfig:
    """One soak run.

    Attributes:
        minutes: length of the chaos period (from the first decided batch).
        kills, broker_restarts: faults spread over it (``streams.soak.schedule``).
        work_dir: logs and RocksDB state of the run's workers.
        window_ms: the allocator's wait for missing users after CLOSED (``simulate --timeout-ms``).
        processors: processors workers (static members ``0 .. N-1``).
        port: the soak broker's port (its controller on ``port + 1``); None: the first free pair in
            19500-19599.
        recovery_bound_s: a fault not recovered within this long counts as unrecovered.
        drain_s: at the end, how long to wait for the learner to absorb the last feedback.
    """

    minutes: float
    kills: int
    broker_restarts: int
    work_dir: Path
    kafka_home: Path
    seed: int = 0
    users: int = 200
    items: int = 20
    providers: int = 4
    candidates: int = 5
    window_ms: int = 5_000
    processors: int = 2
    port: int | None = None
    recovery_bound_s: float = 180.0
    warm_start_batches: int = 2
    drain_s: float = 60.0


@dataclass
class SoakProgress:
    """What the progress bar shows; updated by the run as it goes."""

    elapsed_s: float = 0.0
    batches: int = 0
    decisions: int = 0
    fallback: int = 0
    kills: int = 0
    broker_restarts: int = 0
    phase: str = "starting"


@dataclass
class SoakResult:
    """``summary`` is soak.json's required part; ``details`` what explains it."""

    summary: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        s = self.summary
        return bool(
            s["lost"]
            or s["duplicated"]
            or s["undecided_users"]
            or s["posterior_mismatches"]
            or self.details.get("unrecovered_faults")
        )


def claim_port_pair(lock_dir: Path, ports: range = PORTS) -> tuple[int, TextIO]:
    """The first ``p`` in ``ports`` with ``p`` and ``p + 1`` free on 127.0.0.1 and no other process
    holding ``lock_dir/port-<p>.lock``; returns it with the open, locked file (hold it for the
    run: a broker takes seconds to bind its ports, and two runs started together would otherwise
    pick the same pair and share one broker)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for port in ports:
        lock = open(lock_dir / f"port-{port}.lock", "w")  # noqa: SIM115 - held open by the caller
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for q in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return port, lock
        except OSError:
            lock.close()
    raise ConfigError(f"no free port pair in {ports.start}-{ports.stop}")


def clear_worker_state(work_dir: Path) -> list[Path]:
    """Delete the workers' RocksDB state left in ``work_dir`` by an earlier run; returns what it
    deleted. The soak's broker starts from empty storage, and a worker whose local tables record
    changelog offsets past the new changelogs' ends stops at start-up (faust's ConsistencyError),
    so a reused ``--work-dir`` would leave every batch to the fallback."""
    stale = sorted(p for p in work_dir.glob("state-*") if p.is_dir())
    for path in stale:
        shutil.rmtree(path)
    if stale:
        log.info("deleted the workers' state of an earlier run: %s", ", ".join(p.name for p in stale))
    return stale


def run_soak(cfg: SoakConfig, progress: Callable[[SoakProgress], None] = lambda p: None) -> SoakResult:
    """Run one soak (see the module docstring); returns its result, also when it is failing."""
    from streams.simulate.warm_start import publish_warm_start
    from streams.soak.feed import AuditedFeed

    port, port_lock = (cfg.port, None) if cfg.port else claim_port_pair(cfg.kafka_home / "soak-ports")
    broker = LocalBroker(LocalBrokerConfig(home=cfg.kafka_home, port=port, name="soak-broker", start_timeout_s=240))
    state = SoakProgress()
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    clear_worker_state(cfg.work_dir)
    (cfg.work_dir / "logs").mkdir(exist_ok=True)
    settings = Settings(connection=broker.config.connection, kafka_home=cfg.kafka_home, kafka_port=port)
    settings = settings.with_prefix(PREFIX)
    names, serde = settings.names, settings.serde()
    world = EmailWorldConfig(
        n_users=cfg.users,
        n_items=cfg.items,
        n_providers=cfg.providers,
        candidates_per_user=cfg.candidates,
        seed=cfg.seed,
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "BANDITLP_"))}
    env = {**base, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    specs = {
        f"processors-{i}": WorkerSpec(
            ("worker", "processors", "--instance", str(i)),
            {**env, "BANDITLP_STATE_DIR": str(cfg.work_dir / f"state-{i}")},
        )
        for i in range(cfg.processors)
    }
    specs["allocator"] = WorkerSpec(("worker", "allocator", "--stats-interval-s", "10", "--stuck-call-s", "30"), env)
    specs["trainer"] = WorkerSpec(
        ("worker", "trainer", "--retrain-every", str(cfg.users), "--min-rows", "200", "--retrain-interval-s", "10"),
        env,
    )
    supervisor = Supervisor(cfg.work_dir / "logs", specs)
    tracker = RecoveryTracker(cfg.recovery_bound_s)
    plan = plan_faults(
        ChaosConfig(
            cfg.minutes * 60,
            cfg.kills,
            cfg.broker_restarts,
            tuple(specs),
            seed=cfg.seed,
            warmup_s=min(10.0, cfg.minutes * 6),
            tail_s=min(30.0, cfg.minutes * 12),
        )
    )
    monitor: LagMonitor | None = None
    chaos: ChaosDriver | None = None
    feed = None
    result: SoakResult | None = None
    batch_errors: Counter[str] = Counter()
    try:
        state.phase = "broker"
        progress(state)
        broker.ensure_jars()
        if broker_answers(broker.config.connection):  # restarting someone else's broker is not ours to do
            raise ConfigError(f"a broker already answers on port {port}; the soak needs one of its own")
        broker.up(fresh=True)
        create_topics(settings.connection, names, topic_specs(settings.partitions))
        state.phase = "model v1"
        progress(state)
        publish_warm_start(settings.connection, serde, names, world, MODEL, cfg.warm_start_batches, cfg.seed)
        supervisor.start_all()
        app_id = f"{PREFIX}banditlp-processors"
        parts = {spec.base: spec.partitions for spec in topic_specs(settings.partitions)}
        groups = {
            app_id: (names("candidates"), names("feedback")),
            f"{PREFIX}banditlp-allocator": (names("scores"), names("candidates"), names("batch-control")),
        }
        monitor = LagMonitor(
            settings.connection, groups, {names(b): n for b, n in parts.items()}, names("decisions"), tracker
        )
        monitor.start()
        feed = AuditedFeed(
            SimulatorConfig(names=names, world=world, timeout_ms=cfg.window_ms, seed=cfg.seed),
            settings.connection,
            serde,
        )

        def tick() -> None:
            state.elapsed_s = time.monotonic() - chaos.t0 if chaos and chaos.t0 else 0.0
            state.kills, state.broker_restarts = (chaos.kills, chaos.broker_restarts) if chaos else (0, 0)
            progress(state)

        chaos = ChaosDriver(plan, supervisor, broker, monitor, tick)
        duration = cfg.minutes * 60
        state.phase = "first batch"
        progress(state)
        outcome: list[BaseException] = []

        def play() -> None:
            """The batches, back to back, until the chaos is over and every fault recovered.
            In a thread: the main thread stays free to take Ctrl-C or SIGTERM at once, while a
            batch can block in a Kafka call for a minute when the broker is down."""
            assert chaos is not None and monitor is not None and feed is not None
            hard_end = math.inf
            b = 0
            try:
                while not chaos.stopping:
                    if chaos.error is not None:
                        raise chaos.error
                    try:
                        run = feed.run_batch(b)
                        state.batches += 1
                        state.fallback += run.fallback
                        state.decisions = len(feed.decided)
                    except (BanditLPError, KafkaException) as exc:  # a batch the faults kept from finishing
                        batch_errors[type(exc).__name__] += 1
                        log.warning("batch %d: %s", b, exc)
                        if not chaos.t0 and sum(batch_errors.values()) >= 3:
                            raise
                    b += 1
                    if not chaos.t0:
                        chaos.start(time.monotonic())
                        hard_end = chaos.t0 + duration + cfg.recovery_bound_s + 120
                        state.phase = "chaos"
                        continue
                    now = time.monotonic()
                    if now > hard_end:
                        raise BanditLPError(f"the soak did not wind down within {hard_end - chaos.t0:.0f} s")
                    if now - chaos.t0 >= duration:
                        if chaos.done and monitor.pending() == 0:
                            return
                        state.phase = "recovering"
            except BaseException as exc:  # re-raised in the main thread
                outcome.append(exc)

        player = threading.Thread(target=play, name="soak-batches", daemon=True)
        player.start()
        while player.is_alive():
            player.join(0.5)
        if outcome:
            raise outcome[0]
        state.phase = "draining"
        progress(state)
        feed.close()
        _drain(monitor, app_id, names("feedback"), cfg.drain_s)
        chaos.stop()
        state.phase = "stopping workers"
        progress(state)
        supervisor.stop_all()
        monitor.stop()
        state.phase = "auditing"
        progress(state)
        result = _audit(settings, f"{app_id}-users-changelog", feed)
        result.details.update(
            faults_planned=len(plan),
            worker_kills=dict(supervisor.kills),
            worker_exits_restarted=dict(supervisor.exits),
            worker_exit_codes=supervisor.exit_codes[:50],
            broker_restart_s=[round(t, 1) for t in chaos.broker_down_s],
            batches_played=state.batches,
            batch_errors=dict(batch_errors),
            recovered_faults=len(tracker.recovered),
            recovery_max_s=tracker.summary((100,))["p100"],
            unrecovered_faults=len(tracker.unrecovered),
            unrecovered=[f"{label} at {at - chaos.t0:.0f} s" for label, at in tracker.unrecovered],
            recovery_by_fault=[(label, round(at - chaos.t0, 1), round(r, 2)) for label, at, r in tracker.recovered],
            recovery_bound_s=cfg.recovery_bound_s,
            chaos_s=round(time.monotonic() - chaos.t0, 1),
            config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            processors_workers=cfg.processors,
            broker_port=port,
        )
        result.summary.update(kills=chaos.kills, broker_restarts=chaos.broker_restarts, recovery_s=tracker.summary())
        if result.failed:  # the topics are the evidence: kept (the broker stopped) for a second look
            result.details["broker_data_kept"] = str(broker.config.instance_dir)
        return result
    finally:
        if chaos is not None:
            chaos.stop()
        supervisor.stop_all()
        if monitor is not None:
            monitor.stop()
        if chaos is not None:
            with chaos.broker_lock:  # not while the chaos thread is between its down and its up
                broker.down()
        else:
            broker.down()
        if result is None or not result.failed:
            shutil.rmtree(broker.config.instance_dir, ignore_errors=True)
        if port_lock is not None:
            port_lock.close()


def _drain(monitor: LagMonitor, group: str, topic: str, timeout_s: float) -> None:
    """Wait until the processors' group has committed the feedback topic to its end (the last
    feedback absorbed), at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ends = {k: v for k, v in monitor.end_offsets().items() if k[0] == group and k[1] == topic}
            committed = monitor.committed()
            if all(end <= 0 or committed.get(k, -1) >= end for k, end in ends.items()):
                return
        except KafkaException:
            pass
        time.sleep(1.0)
    log.warning("the learner had not committed every feedback record after %.0f s", timeout_s)


def _audit(settings: Settings, users_changelog: str, feed: Any) -> SoakResult:
    """The independent audit of the finished run (the workers have stopped; the broker is up)."""
    from streams.score.model import ScoringModel
    from streams.soak.collect import feedback_facts, global_means, read_run, stored_head

    names, serde = settings.names, settings.serde()
    run = read_run(settings.connection, serde, names, users_changelog, MODEL)
    counts = audit_decisions(run.opened, run.closed, run.candidate_records, run.decisions)
    lost_decisions = missing(feed.decided, {(d.batch_id, d.user_id) for d in run.decisions})
    lost_feedback = missing(feed.acked_feedback, run.feedback)
    means = global_means(run, MODEL, prior=lambda d: ScoringModel.prior(MODEL, d).model)
    facts = feedback_facts(run, means)
    precision = ProcessorConfig.random_effect_prior_precision
    noise_var = RandomEffectConfig(1).noise_var
    window = ProcessorConfig.seen_limit
    reasons: Counter[str] = Counter()
    examples: list[str] = []
    ambiguous_absorbed = 0
    b_error_matched = 0.0
    for user in sorted(set(facts) | set(run.heads)):
        stored = stored_head(run.heads[user]) if user in run.heads else None
        verdict = check_head(stored, facts.get(user, []), precision, noise_var, window)
        ambiguous_absorbed += verdict.ambiguous_absorbed
        if verdict.ok:
            b_error_matched = max(b_error_matched, verdict.b_error)
        else:
            reasons[verdict.reason.split(" (")[0]] += 1
            if len(examples) < 10:
                examples.append(f"{user}: {verdict.reason}")
    all_facts = [f for fs in facts.values() for f in fs]
    summary = {
        "decisions": counts.decisions,
        "lost": lost_decisions + lost_feedback,
        "duplicated": counts.duplicated,
        "undecided_users": counts.undecided_users,
        "fallback_decisions": counts.fallback_decisions,
        "kills": 0,
        "broker_restarts": 0,
        "recovery_s": {"p50": None, "p99": None},
        "posterior_mismatches": sum(reasons.values()),
    }
    details = {
        "lost_decisions": lost_decisions,
        "lost_feedback": lost_feedback,
        "decisions_seen_by_simulator": len(feed.decided),
        "feedback_acked": len(feed.acked_feedback),
        "feedback_records": run.feedback_records,
        "feedback_distinct": len(run.feedback),
        "feedback_certain": sum(1 for f in all_facts if f.certain and f.p_options),
        "feedback_ambiguous": sum(1 for f in all_facts if not f.certain and f.p_options),
        "feedback_never_scored": sum(1 for f in all_facts if not f.p_options),
        "ambiguous_absorbed": ambiguous_absorbed,
        "b_error_max_of_matching_users": round(b_error_matched, 4),
        "users_checked": len(set(facts) | set(run.heads)),
        "model_versions": sorted(run.snapshots),
        "unexpected_decisions": counts.unexpected,
        "closed_batches": counts.closed_batches,
        "open_batches_at_end": counts.open_batches,
        "undecided_examples": [list(k) for k in counts.undecided_examples],
        "mismatch_reasons": dict(reasons),
        "mismatch_examples": examples,
    }
    return SoakResult(summary, details)


def write_result(result: SoakResult, out_dir: Path) -> Path:
    """``out_dir/soak.json``: the required keys, then ``details``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "soak.json"
    path.write_text(json.dumps({**result.summary, "details": result.details}, indent=2, default=str) + "\n")
    return path
