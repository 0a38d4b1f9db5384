"""The health worker's batch handling without a broker: records in (encoded as on the wire),
health records out, checked against the metrics recomputed here from the same values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from evaluation.health.metrics import item_coverage, selection_entropy, send_variance
from streams.health.batches import ContextIndex, OpenBatch
from streams.health.worker import HealthWorker, HealthWorkerConfig
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.settings import Settings
from tests.factories import ManualClock

SERDE = Settings().serde()
NAMES = TopicNames("t-")


class FakeMessage:
    def __init__(self, topic: str, value: bytes | None, offset: int = 0) -> None:
        self._topic, self._value, self._offset = topic, value, offset

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes:
        return b"k"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        return 0


def _batch(
    batch_id: str, rng: np.random.Generator, n_users: int = 6, n_cand: int = 3
) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for u in range(n_users):
        items = rng.choice(8, n_cand, replace=False)
        x = np.zeros(n_cand)
        x[rng.integers(n_cand)] = 1.0
        p = np.clip(x * 0.8 + 0.1 * rng.random(n_cand), 0, 1)
        did = f"{batch_id}/u{u}"
        out.append(("decisions", {
            "decision_id": did, "batch_id": batch_id, "user_id": f"u{u}",
            "chosen": [{"item_id": f"i{items[j]}", "provider_id": "p0", "propensity": float(p[j])}
                       for j in range(n_cand) if x[j] > 0],
            "allocation": [{"item_id": f"i{items[j]}", "x": float(x[j]), "propensity": float(p[j])}
                           for j in range(n_cand)],
            "model_name": "email", "model_version": 3, "parameter_version": "default", "solver": "highs",
            "rounding": "sample", "decided_at_ms": 1, "n_draws": 4, "policy": "banditlp",
        }))  # fmt: skip
        out.append(("decision-contexts", {
            "decision_id": did, "batch_id": batch_id, "user_id": f"u{u}", "policy": "banditlp", "n_draws": 4,
            "model_name": "email", "model_version": 3, "parameter_version": "default", "tau": 1.0, "user_cap": 1,
            "rounding": "sample", "decided_at_ms": 1,
            "candidates": [{"item_id": f"i{items[j]}", "provider_id": "p0",
                            "features": rng.standard_normal(2).astype(np.float32).tolist(),
                            "propensity": float(p[j]), "x": float(x[j]), "mean_conversion": 0.1,
                            "mean_unsubscription": 0.02, "mean_value": 10.0} for j in range(n_cand)],
        }))  # fmt: skip
        for j in np.flatnonzero(x):
            out.append(("feedback", {
                "decision_id": did, "batch_id": batch_id, "user_id": f"u{u}", "item_id": f"i{items[j]}",
                "converted": bool(rng.random() < 0.1), "unsubscribed": False, "value": 0.0,
                "observed_at_ms": 1, "source": "simulator",
            }))  # fmt: skip
    out.append(("allocation-reports", {
        "batch_id": batch_id, "status": "optimal", "solver": "highs", "objective": 1.0, "n_users": n_users,
        "n_pairs": n_users * n_cand, "missing_users": [], "n_missing": 0, "n_fallback": 0, "fallback_users": [],
        "budgets": [], "providers": [], "max_violation": 0.0, "max_relative_violation": 0.0, "iterations": 1,
        "solve_seconds": 0.1, "window_seconds": 0.2, "decided_at_ms": 1, "item_means": [],
    }))  # fmt: skip
    return out


def _worker() -> tuple[HealthWorker, ManualClock]:
    clock = ManualClock()
    worker = HealthWorker(HealthWorkerConfig(names=NAMES, quiet_s=2.0), ConnectionConfig("127.0.0.1:1"), SERDE, clock)
    return worker, clock


def _feed(worker: HealthWorker, values: list[tuple[str, dict[str, Any]]]) -> None:
    for i, (subject, value) in enumerate(values):
        worker.handle(FakeMessage(NAMES(subject), SERDE.encode(subject, value), i))  # type: ignore[arg-type]


def test_one_record_per_batch_with_the_metrics_of_its_decisions() -> None:
    rng = np.random.default_rng(0)
    worker, clock = _worker()
    producer = FakeProducer()
    batches = [_batch(f"b{k}", rng) for k in range(3)]
    for k, values in enumerate(batches):
        _feed(worker, values)
        assert worker.close_ready(producer) == []  # type: ignore[arg-type]  # not quiet yet
        clock.now += 2.5
        made = worker.close_ready(producer)  # type: ignore[arg-type]
        assert [m["batch_id"] for m in made] == [f"b{k}"]
        d = [v for s, v in values if s == "decisions"]
        items = np.array([int(a["item_id"][1:]) for v in d for a in v["allocation"]])
        p = np.array([a["propensity"] for v in d for a in v["allocation"]])
        record = made[0]
        assert record["values"]["selection_entropy"] == pytest.approx(selection_entropy(items, p))
        assert record["values"]["item_coverage"] == pytest.approx(item_coverage(items, p))
        assert record["values"]["allocation_variance"] == pytest.approx(send_variance(p))
        assert record["n_users"] == 6 and record["n_contexts"] == 6 and record["n_outcomes"] == 6
        assert record["sequence"] == k and record["in_reference"] is True and record["model_versions"] == [3]
        assert record["values"]["outcomes.conversion"] == 6
    assert [key for _, key, _ in producer.sent] == [b"b0", b"b1", b"b2"]
    decoded = SERDE.decode("health", producer.sent[0][2])
    assert decoded["batch_id"] == "b0" and math.isnan(decoded["values"]["overlap_at_k"] or math.nan)


def test_bad_records_are_dead_lettered_and_replays_are_not_counted_twice() -> None:
    rng = np.random.default_rng(1)
    worker, clock = _worker()
    sent: list[Any] = []
    worker.dead.send = lambda msg, error: sent.append((msg, error))  # type: ignore[method-assign]
    values = _batch("b0", rng)
    bad = dict(values[0][1])
    bad["allocation"] = [{"item_id": "i1", "x": math.nan, "propensity": None}]
    worker.handle(FakeMessage(NAMES("decisions"), b"not avro"))  # type: ignore[arg-type]
    worker.handle(FakeMessage(NAMES("decisions"), SERDE.encode("decisions", bad)))  # type: ignore[arg-type]
    _feed(worker, values)
    _feed(worker, [v for v in values if v[0] == "feedback"])  # feedback replayed
    clock.now += 3
    record = worker.close_ready(FakeProducer())[0]  # type: ignore[arg-type]
    assert len(sent) == 2 and worker.stats.dead_letters == 2
    assert "not in [0, 1]" in str(sent[1][1])
    assert record["n_outcomes"] == 6  # each sent item's outcome once


def test_an_incomplete_batch_waits_then_is_dropped() -> None:
    rng = np.random.default_rng(2)
    worker, clock = _worker()
    values = [v for v in _batch("b0", rng) if not (v[0] == "decisions" and v[1]["user_id"] == "u0")]
    _feed(worker, values)
    clock.now += 10
    assert worker.close_ready(FakeProducer()) == []  # type: ignore[arg-type]
    clock.now += 301
    assert worker.close_ready(FakeProducer()) == [] and worker.stats.dropped_batches == 1  # type: ignore[arg-type]


def test_context_index_and_completeness() -> None:
    index = ContextIndex(batches=1)
    index.add({"batch_id": "a", "decision_id": "a/u", "candidates": [{"item_id": "i", "mean_conversion": 0.1}]})
    assert index.take("a", "a/u", "i") == (0.1, None)
    assert index.take("a", "a/u", "i") is None
    index.add({"batch_id": "a", "decision_id": "a/u", "candidates": [{"item_id": "i"}]})
    index.add({"batch_id": "b", "decision_id": "b/u", "candidates": [{"item_id": "i"}]})
    assert index.take("a", "a/u", "i") is None  # only the last batch is kept
    batch = OpenBatch("b", report={"n_users": 2, "n_fallback": 1})
    batch.decisions = {"u1": {}, "u2": {}}
    batch.contexts = {"u1": {}}
    assert batch.complete
