"""Cost pacing through the real broker: training rows -> trainer -> model-snapshots -> scorer.

There is no in-process trainer test to extend (the pipeline and metrics tests run it as a
process, the pipeline with rows whose budgeted costs the test cannot know in advance), so this
short test produces the rows itself: 150 logged rows (no budgeted cost), 50 rows written with
the v1 schema (before the field existed) and 400 rows with known ``budgeted_unsub`` and
``unsubscribed``. A trainer in a thread of the test process retrains once on all of them
(``retrain_every`` = their count) and publishes v1. Then:

- the snapshot's factor equals the Gamma(a + R, rate a + C) median computed with scipy from
  the 400 budgeted rows (the others do not count), and its counts are R, C and 400;
- a restarted trainer, given 100 more budgeted rows, re-reads the topic and publishes v2 whose
  counts are those of all 500 budgeted rows (history included), with its factor the closed form
  times the version guard's, the larger of 1 and v1's over v2's calibrated cost of the 100 new
  rows (both models read back from their payloads);
- the scorer's model feed, reading the real topic, loads v2 with that factor; scores built
  with it (``score_records``, encoded and read back through the broker) carry unsubscription
  means equal to clip(factor x the context's unpaced mean), and that unpaced mean is the
  snapshot's model scored without a factor, bit for bit.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from collections.abc import Callable
from typing import Any

import fastavro
import numpy as np
import pytest
from scipy import stats

from models.neural import NeuralThompsonModel
from models.pacing import PacingConfig
from models.version_guard import VersionGuardConfig
from streams.avro.registry import SCHEMA_DIR, schema_id_of
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.learn.context_slots import ContextIndex
from streams.learn.update import DecisionContext
from streams.learn.user_state import UserState
from streams.records import CandidatesRecord, ScoresRecord
from streams.score.batch import score_records
from streams.score.model import ScoringModel
from streams.score.model_feed import ModelFeed, ModelSnapshotRecord
from streams.settings import Settings
from streams.train.config import TrainerConfig
from streams.train.trainer import Trainer
from tests import factories
from tests.integration.kafka_reading import read_all, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

D = 6
SERDE = Settings().serde()


def rows(n: int, rng: np.random.Generator, budgeted: bool, start: int) -> list[dict[str, Any]]:
    """``n`` training rows; budgeted ones get a cost in [0.01, 0.08] and unsubscribe at 1.4x it."""
    X = rng.normal(size=(n, D)).astype(np.float32)
    cost = rng.uniform(0.01, 0.08, n)
    unsub = rng.random(n) < 1.4 * cost
    return [
        {
            "decision_id": f"b/u{start + i}",
            "batch_id": "b",
            "user_id": f"u{start + i}",
            "item_id": f"i{i % 7}",
            "features": X[i].tolist(),
            "converted": bool(X[i, 0] > 1.0),
            "unsubscribed": bool(unsub[i]),
            "value": float(abs(X[i, 1])) if X[i, 0] > 1.0 else 0.0,
            "model_version": 1,
            "observed_at_ms": 1_700_000_000_000,
            "budgeted_unsub": float(cost[i]) if budgeted else None,
        }
        for i in range(n)
    ]


def v1_bytes(row: dict[str, Any]) -> bytes:
    old = fastavro.parse_schema(json.loads((SCHEMA_DIR / "history" / "training-rows.v1.avsc").read_text()))
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id_of(old)))
    fastavro.schemaless_writer(buf, old, {k: v for k, v in row.items() if k != "budgeted_unsub"})
    return buf.getvalue()


def produce(connection: ConnectionConfig, names: TopicNames, values: list[bytes]) -> None:
    producer = clients.producer(connection, {"linger.ms": 5})
    for j, value in enumerate(values):
        clients.produce(producer, names("training-rows"), key=f"u{j}".encode(), value=value)
    assert producer.flush(30) == 0


def train_once(
    cfg: TrainerConfig, connection: ConnectionConfig, history: int = 0, then: Callable[[], None] | None = None
) -> None:
    """Run a trainer in a thread until it has published one version, then stop it. ``then``
    runs once the trainer has read ``history`` rows: what it produces counts as new rows (a
    restarted trainer counts what is on the topic when it starts as history)."""
    trainer = Trainer(cfg, connection, SERDE)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            trainer.run(max_seconds=120)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        if then is not None:
            wait_until(lambda: len(trainer.buffer) >= history, 60, f"the trainer read the {history} rows")
            then()
        wait_until(lambda: trainer.published >= 1 or not thread.is_alive(), 40, "the trainer published a version")
    finally:
        trainer.stop_event.set()
        thread.join(30)
    assert not errors and trainer.published == 1


def snapshots(connection: ConnectionConfig, names: TopicNames) -> dict[int, ModelSnapshotRecord]:
    out = {}
    for _, value in read_all(connection, names("model-snapshots"), "model-snapshots"):
        snap = ModelSnapshotRecord.from_avro(value)
        out[snap.version] = snap
    return out


def closed_form(budgeted: list[dict[str, Any]], cfg: PacingConfig) -> tuple[float, float, float]:
    """(R, C, factor) of the budgeted rows, from the rows themselves."""
    R = float(sum(r["unsubscribed"] for r in budgeted))
    C = float(np.sum([r["budgeted_unsub"] for r in budgeted]))
    a = cfg.prior_events
    return R, C, float(stats.gamma.ppf(cfg.quantile, a + R, scale=1.0 / (a + C)))


def test_the_trainer_publishes_the_closed_form_factor_and_the_scorer_applies_it(
    kafka_connection: ConnectionConfig, project_topics: Callable[..., TopicNames]
) -> None:
    names = project_topics(partitions=4)
    rng = np.random.default_rng(3)
    logged, old, first = rows(150, rng, False, 0), rows(50, rng, True, 150), rows(400, rng, True, 200)
    produce(
        kafka_connection,
        names,
        [SERDE.encode("training-rows", r) for r in logged + first] + [v1_bytes(r) for r in old],
    )
    cfg = TrainerConfig(names=names, retrain_every=600, retrain_interval_s=3600.0, min_rows=100)
    train_once(cfg, kafka_connection)
    v1 = snapshots(kafka_connection, names)[1]
    R, C, factor = closed_form(first, cfg.pacing)
    assert v1.n_observations == 600 and v1.cost_pacing is not None
    assert v1.cost_pacing.n_rows == 400 and v1.cost_pacing.pacing.realised == R
    assert v1.cost_pacing.pacing.budgeted == pytest.approx(C, rel=1e-12)
    assert v1.unsubscription_factor == pytest.approx(factor, rel=1e-9)
    assert factor > 1.0  # the rows unsubscribe at 1.4x their budgeted cost

    more = rows(100, rng, True, 600)
    train_once(
        TrainerConfig(
            names=names,
            retrain_every=100,
            retrain_interval_s=3600.0,
            min_rows=100,
            version_guard=VersionGuardConfig(versions=5),
        ),
        kafka_connection,
        history=600,
        then=lambda: produce(kafka_connection, names, [SERDE.encode("training-rows", r) for r in more]),
    )
    v2 = snapshots(kafka_connection, names)[2]
    R, C, factor = closed_form(first + more, cfg.pacing)
    assert v2.cost_pacing is not None and v2.cost_pacing.n_rows == 500 and v2.cost_pacing.pacing.realised == R
    # The version guard (asked for: 5 versions) compares v1, which the restarted trainer loaded, with v2
    # on the 100 new rows: their calibrated mean costs, from the published payloads.
    X_new = np.array([r["features"] for r in more], dtype=np.float32)
    totals = [
        float(NeuralThompsonModel.from_bytes(v.payload).mean_scores(X_new, calibrate=True)["unsubscription"].sum())
        for v in (v1, v2)
    ]
    guard = max(1.0, totals[0] / totals[1])
    assert v2.unsubscription_factor == pytest.approx(factor * guard, rel=1e-9)

    feed = ModelFeed(kafka_connection, SERDE, names("model-snapshots"), "email")
    feed.start()
    try:
        assert feed.caught_up.wait(60)
        model = feed.model_for(D)
    finally:
        feed.stop()
    assert model.version == 2 and model.cost_scale == {"unsubscription": v2.unsubscription_factor}
    candidates = [
        CandidatesRecord.from_avro(
            SERDE.decode("candidates", SERDE.encode("candidates", factories.candidates_value(u, 5, rng, d=D)))
        )
        for u in range(8)
    ]
    index = ContextIndex(8, {}.get)
    scored = score_records(
        candidates,
        lambda i, k: UserState.prior(k, 25.0),
        model,
        1.0,
        np.random.default_rng(0),
        lambda i: index.claim(0, candidates[i].user_id, candidates[i].batch_id),
    )
    producer = clients.producer(kafka_connection, {"linger.ms": 5})
    for value in scored.values:
        clients.produce(producer, names("scores"), key=value["batch_id"].encode(), value=SERDE.encode("scores", value))
    assert producer.flush(30) == 0
    written = {
        v["user_id"]: ScoresRecord.from_avro(v) for _, v in read_all(kafka_connection, names("scores"), "scores")
    }
    unpaced = ScoringModel.from_snapshot("email", 2, v2.payload).score(
        np.concatenate([c.features for c in candidates]), 1.0, np.random.default_rng(0)
    )
    start = 0
    for rec, (_, data) in zip(candidates, scored.contexts, strict=True):
        context = DecisionContext.decode(data)
        assert context.p_unsub is not None
        np.testing.assert_array_equal(context.p_unsub, unpaced.means["unsubscription"][start : start + 5])
        np.testing.assert_array_equal(
            written[rec.user_id].means["unsubscription"],
            np.clip(v2.unsubscription_factor * context.p_unsub, 0.0, 1.0),
        )
        start += 5
