"""Trainer job: retrains the global model from training-rows and publishes snapshots.

It keeps the newest ``buffer_rows`` rows, and every ``retrain_every`` new rows (or every
``retrain_interval_s`` seconds when at least one new row came in) refits the network,
rebuilds the last-layer posterior and the calibrators from the retained rows, and
publishes version n+1 on the compacted ``model-snapshots`` topic, where every scorer picks
it up without restarting.

Its window is the last ``buffer_rows`` rows of the topic (logged history included: the
warm-start rows a deployment starts from are training rows like any other). It keeps no
offsets: on (re)start it reads the topic from the beginning to rebuild the window, and rows up
to the end offsets seen at start count as history, not as new rows, when a model already
exists, so a restart does not retrain on what the current model has seen.

Every row read (history included) with a budgeted cost also counts for cost pacing
(``streams.train.pacing``), whose factor and counts each published version carries. The
version guard (``models.version_guard``) compares the newest versions' costs of the new rows read
since the previous retrain and multiplies its factor into the published cost scale; the
versions it compares are the ones this process trained and the one it started from (the
compacted topic keeps only the newest), so a restarted trainer's guard starts again from that one.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

from banditlp.errors import BanditLPError
from models.neural import NeuralThompsonModel, calibrated_unsubscription, fit_or_refit
from models.version_guard import VersionGuard
from streams.avro.serde import AvroSerde
from streams.dead_letters import dead_letter
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.reading import read_to_end
from streams.metrics import MetricsConfig, WorkerMetrics, confluent_lag, start_worker_metrics
from streams.score.model import neural_config
from streams.score.model_feed import ModelSnapshotRecord, load_scoring_model
from streams.train.config import TrainerConfig
from streams.train.pacing import PacingLedger, snapshot_fields

log = logging.getLogger("banditlp.trainer")


def latest_version(
    connection: ConnectionConfig, serde: AvroSerde, topic: str, model_name: str, timeout_s: float = 30.0
) -> tuple[int, bytes | None]:
    """Newest (version, payload) of ``model_name`` on the compacted snapshots topic that is
    well-formed (``ModelSnapshotRecord``) and loads as the scorer's fitted model
    (``load_scoring_model``), or (0, None).

    Malformed snapshots, and newer ones that do not load, are skipped with a warning: the
    processors' model feed dead-letters them (``streams.score.model_feed``), and a trainer or a
    simulator that started from one would crash at every restart, or number its next
    version after a record no scorer uses.

    Raises:
        BrokerError: the topic does not exist or could not be read to its end.
    """
    found: list[ModelSnapshotRecord] = []
    for msg in read_to_end(connection, topic, group_id="banditlp-snapshot-probe", timeout_s=timeout_s):
        try:
            snap = ModelSnapshotRecord.from_avro(serde.decode("model-snapshots", msg.value()))
        except BanditLPError as exc:
            log.warning("snapshot at %s[%d]@%d skipped: %s", msg.topic(), msg.partition(), msg.offset(), exc)
            continue
        if snap.name == model_name:
            found.append(snap)
    for snap in sorted(found, key=lambda s: s.version, reverse=True):
        try:
            load_scoring_model(snap)
        except BanditLPError as exc:
            log.warning("snapshot skipped: %s", exc)
            continue
        return snap.version, snap.payload
    return 0, None


class Trainer:
    """Consume training rows, retrain, publish snapshots; records into ``metrics`` (its own when None)."""

    def __init__(
        self, cfg: TrainerConfig, connection: ConnectionConfig, serde: AvroSerde, metrics: WorkerMetrics | None = None
    ) -> None:
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self.cfg = cfg
        self.connection = connection
        self.serde = serde
        self.stop_event = threading.Event()
        self.buffer: deque[tuple[np.ndarray, bool, bool, float]] = deque(maxlen=cfg.buffer_rows)
        self.pacing = PacingLedger(cfg.pacing)
        self.guard: VersionGuard[NeuralThompsonModel] = VersionGuard(cfg.version_guard, calibrated_unsubscription)
        # features of the rows read since the last retrain that are not history: the version
        # guard's pairs (bounded: a retrain is due after retrain_every of them)
        self.recent: list[np.ndarray] = []
        self.published = 0

    def run(self, max_seconds: float | None = None) -> None:
        cfg = self.cfg
        names = cfg.names
        version, payload = latest_version(self.connection, self.serde, names("model-snapshots"), cfg.model_name)
        previous = NeuralThompsonModel.from_bytes(payload) if payload else None
        if previous is not None:
            self.guard.push(previous)
        log.info("trainer: model %s at version %d", cfg.model_name, version)
        if version:
            self.metrics.set_model_version(cfg.model_name, version)
        consumer = clients.consumer(
            self.connection,
            {"group.id": cfg.group_id, "enable.auto.commit": False, "isolation.level": "read_committed"},
        )
        topic = names("training-rows")
        parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        # rows below these offsets are history the current model was trained on (if any)
        history_end = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] if payload else 0 for p in parts
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        producer = clients.producer(
            self.connection,
            {"enable.idempotence": True, "message.max.bytes": 16 * 1024 * 1024, "compression.type": "lz4"},
        )
        new_rows = 0
        last_fit = last_lag = time.monotonic()
        started = time.monotonic()
        try:
            while not self.stop_event.is_set():
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    break
                if time.monotonic() - last_lag >= self.metrics.lag_interval_s:
                    self.metrics.set_lag(confluent_lag(consumer))  # no offsets kept: against the position
                    last_lag = time.monotonic()
                messages = consumer.consume(1000, timeout=0.5)
                self.metrics.consumed(topic, sum(1 for m in messages if not m.error()))
                for msg in messages:
                    if msg.error():
                        continue
                    try:
                        row = self.serde.decode(
                            "training-rows",
                            msg.value(),
                            topic=msg.topic(),
                            partition=msg.partition(),
                            offset=msg.offset(),
                        )
                        features = np.asarray(row["features"], dtype=np.float32)
                        if not np.all(np.isfinite(features)) or not np.isfinite(row["value"]):
                            raise BanditLPError("training row holds NaN or inf")
                        budgeted = row.get("budgeted_unsub")
                        if budgeted is not None and not 0.0 <= budgeted <= 1.0:  # NaN fails too
                            raise BanditLPError(f"training row's budgeted_unsub {budgeted} is not a probability")
                    except BanditLPError as exc:
                        topic, partition, offset = clients.position(msg)
                        clients.produce(
                            producer,
                            names("dead-letters"),
                            key=topic.encode(),
                            value=dead_letter(
                                self.serde,
                                source_topic=topic,
                                partition=partition,
                                offset=offset,
                                key=msg.key(),
                                value=msg.value(),
                                error=exc,
                                consumer="trainer",
                            ),
                        )
                        self.metrics.dead_lettered(topic, type(exc).__name__)
                        self.metrics.produced(names("dead-letters"))
                        continue
                    self.buffer.append((features, row["converted"], row["unsubscribed"], row["value"]))
                    self.pacing.add(row["unsubscribed"], budgeted)
                    _, partition, offset = clients.position(msg)
                    if offset >= history_end.get(partition, 0):
                        new_rows += 1
                        self.recent.append(features)
                due = new_rows >= cfg.retrain_every or (
                    new_rows and time.monotonic() - last_fit >= cfg.retrain_interval_s
                )
                if due and len(self.buffer) >= cfg.min_rows:
                    version += 1
                    previous = self._retrain_and_publish(producer, version, previous)
                    new_rows = 0
                    last_fit = time.monotonic()
        finally:
            producer.flush(30)
            consumer.close()

    def _retrain_and_publish(
        self, producer: Producer, version: int, previous: NeuralThompsonModel | None
    ) -> NeuralThompsonModel:
        X = np.stack([r[0] for r in self.buffer])
        converted = np.array([r[1] for r in self.buffer], dtype=np.float64)
        unsub = np.array([r[2] for r in self.buffer], dtype=np.float64)
        value = np.array([r[3] for r in self.buffer], dtype=np.float64)
        t0 = time.monotonic()
        model = fit_model(X, converted, unsub, value, seed=self.cfg.seed + version, previous=previous)
        payload = model.to_bytes(name=self.cfg.model_name, version=version)
        self.guard.push(model)
        guard = self.guard.factor(np.stack(self.recent) if self.recent else X[:0])
        self.recent = []
        pacing = snapshot_fields(self.pacing.fold(), version_factor=guard)
        clients.produce(
            producer,
            self.cfg.names("model-snapshots"),
            key=self.cfg.model_name.encode(),
            value=self.serde.encode(
                "model-snapshots",
                {
                    "name": self.cfg.model_name,
                    "version": version,
                    "kind": NeuralThompsonModel.snapshot_kind,
                    "created_at_ms": int(time.time() * 1000),
                    "n_observations": len(X),
                    "payload": payload,
                    **pacing,
                },
            ),
        )
        producer.flush(30)
        self.published += 1
        seconds = time.monotonic() - t0
        self.metrics.produced(self.cfg.names("model-snapshots"))
        self.metrics.trained(seconds, self.cfg.model_name, version)
        log.info(
            "published %s v%d from %d rows in %.1f s, cost scale %s from %d budgeted rows, version guard %.3f",
            self.cfg.model_name,
            version,
            len(X),
            seconds,
            pacing["cost_scale"] or "none",
            self.pacing.n_rows,
            guard,
        )
        return model


def fit_model(
    X: np.ndarray,
    converted: np.ndarray,
    unsubscribed: np.ndarray,
    value: np.ndarray,
    seed: int = 0,
    holdout: float = 0.2,
    previous: NeuralThompsonModel | None = None,
) -> NeuralThompsonModel:
    """Fit the network and its last-layer posterior on the older rows, and the heuristic
    calibrators on the newest ``holdout`` share (deterministic predictions vs outcomes,
    BanditLP Mechanism 3), so calibration is not fitted on the training rows themselves.

    Args:
        X: (n, d) pair features. converted, unsubscribed: (n,) 0/1. value: (n,) conversion
            values; only observed where converted (NaN elsewhere for the value head).
        seed: The new model's seed (a first fit only).
        holdout: Share of the newest rows the calibrators are fitted on.
        previous: The version before; when given, a copy of it is retrained from its weights
            (``NeuralThompsonModel.refit``) instead of a new network from scratch (unless its
            feature width differs). It is left unchanged.
    """
    outcomes = {
        "conversion": converted,
        "unsubscription": unsubscribed,
        "value": np.where(converted > 0, value, np.nan),
    }
    n_fit = max(1, int(len(X) * (1 - holdout)))
    model = fit_or_refit(
        previous, neural_config(X.shape[1], seed), X[:n_fit], {k: v[:n_fit] for k, v in outcomes.items()}
    )
    if n_fit < len(X):
        model.fit_calibrators(X[n_fit:], {k: v[n_fit:] for k, v in outcomes.items()})
    return model


def run_trainer(
    cfg: TrainerConfig, connection: ConnectionConfig, serde: AvroSerde, metrics: MetricsConfig | None = None
) -> None:
    """Run until SIGTERM/SIGINT; ``metrics.port`` set: its instruments are served there.

    Raises:
        ConfigError: the metrics port cannot be bound.
    """
    instruments = start_worker_metrics(metrics)
    log.info("trainer on %s", connection.redacted())
    trainer = Trainer(cfg, connection, serde, metrics=instruments)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: trainer.stop_event.set())
    trainer.run()
