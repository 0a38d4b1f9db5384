"""1,000 fuzzed records per input topic into the running workers (issue 18, part 4).

The processors worker (scorer, learner and its two topic feeds), the allocator and the trainer
run as processes, as deployed. ``streams.fuzz`` turns valid records of ``tests.factories`` into
invalid ones (seeded): byte damage (random bytes, truncated frames, wrong schema ids, dropped
fields, fields of another type, ...) and broken rules (NaN/inf, huge lists, negative or unknown
ids, unknown batches, records at the broker's size limit, ...), 1,000 into each of candidates,
feedback, batch-control, scores, model-snapshots and parameter-distribution. Scores that break a
rule belong to a batch that is OPENED (so a rule the allocator missed is not hidden by its
unknown-batch timeout); it is CLOSED afterwards and decided with nobody.

Checked: the dead-letters topic holds exactly one dead letter per fuzzed record, found by the
record's key, from the worker that reads its topic, with the error class the fuzzer expects, a
reason and the original bytes (a record at the size limit keeps its first bytes, and the reason
says so); no other record is dead-lettered, no fuzzed user is decided, and every worker is still
alive. Then every worker is restarted once: each comes back and works (a probe is scored, a probe
batch decided, the trainer starts from the topic's valid model), and the feeds' second reading of
the compacted topics dead-letters the same records at the same coordinates.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.cli.processes import WorkerSet
from streams.dead_letters import MAX_DEAD_LETTER_BYTES
from streams.fuzz import RULES, Fuzzer, FuzzRecord
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.settings import Settings
from tests.factories import (
    REFERENCE_SERDE,
    candidates_value,
    closed_value,
    feedback_value,
    model_snapshot_value,
    opened_value,
    parameter_distribution_value,
    scores_value,
)
from tests.integration.kafka_reading import read_all, read_raw, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_TOPIC = 1_000
SEED = 18
FEATURES = 6
OPEN_BATCH = "fuzz-open"
# Kafka's default message.max.bytes is 1,048,588 (a record batch); a value this long still fits.
AT_THE_LIMIT = 1_048_300
#: The worker that validates each topic's records: every fuzzed record has its dead letter.
CONSUMER = {
    "candidates": "scorer",
    "feedback": "learner",
    "batch-control": "allocator",
    "scores": "allocator",
    "model-snapshots": "model-feed",
    "parameter-distribution": "parameter-feed",
}
#: Other workers that read a topic (the allocator reads the candidates' ids for its fallback
#: decisions, issue 18 part 2) and may dead-letter a record they cannot read, once each.
OTHER_READERS = {"candidates": {"allocator"}}


def base(subject: str, i: int) -> dict[str, Any]:
    """A valid record of ``subject``, its ids its own (``i``)."""
    rng = np.random.default_rng([SEED, i])
    if subject == "candidates":
        return candidates_value(i, 4, rng, d=FEATURES, k=3, batch_id=f"fuzz-batch-{i}")
    if subject == "feedback":
        return feedback_value(f"fuzz-batch-{i}/fuzz-user-{i}", f"fuzz-user-{i}")
    if subject == "batch-control":
        return opened_value(f"fuzz-batch-{i}", 10) if i % 2 else closed_value(f"fuzz-batch-{i}", 10)
    if subject == "scores":
        return {**scores_value(OPEN_BATCH, i, rng), "user_id": f"fuzz-user-{i}"}
    if subject == "model-snapshots":
        return model_snapshot_value("email", version=1_000 + i, feature_dim=FEATURES)
    return parameter_distribution_value(f"fuzz-experiment-{i}", rng)


class DeadLetters:
    """The dead-letters topic, read incrementally from its beginning."""

    def __init__(self, connection: ConnectionConfig, topic: str) -> None:
        self.consumer = clients.consumer(
            connection,
            {"group.id": "fuzz-dead-letters", "isolation.level": "read_committed", "enable.auto.commit": False},
        )
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.letters: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        for msg in self.consumer.consume(5_000, 0.5):
            if msg.error() is None:
                self.letters.append(REFERENCE_SERDE.decode("dead-letters", msg.value()))
        return self.letters

    def by(self, fuzzed: dict[bytes, FuzzRecord]) -> set[bytes]:
        """The fuzzed records dead-lettered by the worker that validates their topic."""
        return {
            d["key"] for d in self.poll() if d["key"] in fuzzed and d["consumer"] == CONSUMER[fuzzed[d["key"]].subject]
        }


def test_every_fuzzed_record_is_dead_lettered_once_with_a_reason_and_no_worker_exits(
    kafka_settings: Settings, kafka_connection: ConnectionConfig, project_topics, tmp_path: Path
) -> None:
    names: TopicNames = project_topics(4)
    settings = kafka_settings.with_prefix(names.prefix)
    serde = settings.serde()
    env = {**os.environ, **settings.to_env(), "BANDITLP_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    args = {
        "processors": ["worker", "processors", "--instance", "0", "--feature-dim", str(FEATURES)],
        "allocator": ["worker", "allocator", "--unknown-batch-timeout-s", "5"],
        "trainer": ["worker", "trainer"],
    }
    (tmp_path / "logs").mkdir()
    workers = WorkerSet(tmp_path / "logs")
    producer = clients.producer(
        kafka_connection, {"linger.ms": 20, "partitioner": "murmur2_random", "message.max.bytes": 1_100_000}
    )
    dead = DeadLetters(kafka_connection, names("dead-letters"))

    def logs() -> str:
        return "".join(f"\n--- {p.name}\n" + p.read_text()[-3000:] for p in sorted((tmp_path / "logs").glob("*.log")))

    def alive() -> None:
        for name, proc in workers.procs.items():
            assert proc.poll() is None, f"worker {name} exited with code {proc.returncode}" + logs()

    def send(base_topic: str, key: bytes, value: bytes | None) -> None:
        clients.produce(producer, names(base_topic), value, key)

    def probe(round_: int) -> None:
        """A valid user scored and its batch decided: the processors and the allocator work."""
        batch = f"probe-{round_}"
        user = candidates_value(10_000 + round_, 3, np.random.default_rng(round_), d=FEATURES, k=3, batch_id=batch)
        send("candidates", user["user_id"].encode(), serde.encode("candidates", user))
        for event in ("OPENED", "CLOSED"):  # one user, no budget or provider rows
            control = {**closed_value(batch, 1), "event": event, "user_ids": [user["user_id"]]}
            send("batch-control", batch.encode(), serde.encode("batch-control", control))
        assert producer.flush(30) == 0
        wait_until(
            lambda: any(key == batch.encode() for _, _, key, _ in read_raw(kafka_connection, names("scores"))),
            180,
            f"probe {round_} scored",
            alive=alive,
        )
        wait_until(
            lambda: any(
                v["batch_id"] == f"probe-{round_}"
                for _, v in read_all(kafka_connection, names("allocation-reports"), "allocation-reports")
            ),
            180,
            f"probe batch {round_} decided",
            alive=alive,
        )

    fuzzer = Fuzzer(REFERENCE_SERDE, seed=SEED, oversized_value_bytes=AT_THE_LIMIT)
    fuzzed: dict[bytes, FuzzRecord] = {
        r.key: r for subject in RULES for r in fuzzer.records(subject, lambda i, s=subject: base(s, i), PER_TOPIC)
    }
    try:
        for name, a in args.items():
            workers.start(name, a, env)
        probe(0)
        # faust's consumer seeks once more after its first assignment (streams.processors.recovery):
        # records read before that seek would be read, and dead-lettered, twice
        wait_until(
            lambda: "re-seeked to their committed offsets" in (tmp_path / "logs" / "processors.log").read_text(),
            60,
            "the processors worker's re-seek after its first assignment",
            alive=alive,
        )
        opened = {**opened_value(OPEN_BATCH, 100_000), "timeout_ms": 0}
        send("batch-control", OPEN_BATCH.encode(), serde.encode("batch-control", opened))
        for r in fuzzed.values():
            send(r.subject, r.key, r.value)
        send(
            "batch-control",
            OPEN_BATCH.encode(),
            serde.encode("batch-control", {**closed_value(OPEN_BATCH, 100_000), "timeout_ms": 0}),
        )
        assert producer.flush(60) == 0
        wait_until(lambda: len(dead.by(fuzzed)) == len(fuzzed), 300, f"{len(fuzzed)} dead letters", alive=alive)
        alive()
        first = list(dead.poll())

        # -- one dead letter per fuzzed record, from the right worker, for the right reason ----
        letters: dict[tuple[bytes, str], list[dict[str, Any]]] = defaultdict(list)
        for d in first:
            assert d["key"] is not None and d["key"].startswith(b"fuzz-"), f"a valid record was dead-lettered: {d}"
            letters[(d["key"], d["consumer"])].append(d)
        repeated = {k: len(v) for k, v in letters.items() if len(v) > 1}
        assert not repeated, f"{len(repeated)} records dead-lettered more than once: {list(repeated.items())[:5]}"
        wrong = []
        for (key, consumer), (d,) in letters.items():
            r = fuzzed[key]
            cut = r.value is not None and len(r.value) + len(key) > MAX_DEAD_LETTER_BYTES
            same_bytes = (
                d["value"] == r.value if not cut else r.value.startswith(d["value"]) and "cut to" in d["reason"]
            )
            if consumer == CONSUMER[r.subject]:
                ok = d["error_type"] == r.expect
            else:
                ok = consumer in OTHER_READERS.get(r.subject, set())
            if not (ok and d["source_topic"] == names(r.subject) and d["reason"] and same_bytes):
                wrong.append((r.subject, r.mutation, r.expect, d["error_type"], consumer, d["reason"][:200]))
        assert not wrong, f"{len(wrong)} dead letters not as expected: {wrong[:10]}"
        counts = Counter(r.subject for r in fuzzed.values())
        assert counts == {s: PER_TOPIC for s in RULES}
        assert any(r.mutation.startswith("oversized") for r in fuzzed.values())

        # -- nothing fuzzed was decided; the opened batch was decided with nobody ----------------
        decided = [v for _, v in read_all(kafka_connection, names("decisions"), "decisions")]
        assert not [d for d in decided if d["user_id"].startswith("fuzz-")]
        wait_until(
            lambda: any(
                v["batch_id"] == OPEN_BATCH and v["n_users"] == 0
                for _, v in read_all(kafka_connection, names("allocation-reports"), "allocation-reports")
            ),
            60,
            "the opened fuzz batch decided with nobody",
            alive=alive,
        )

        # -- every worker restarts on the fuzzed topics and works -------------------------------
        for name, a in args.items():
            workers.procs[name].terminate()
            workers.procs[name].wait(60)
            workers.start(name, a, env)
        probe(1)
        trainer_log = tmp_path / "logs" / "trainer.log"
        wait_until(
            lambda: len(re.findall(r"trainer: model email at version 0", trainer_log.read_text())) == 2,
            120,
            "the restarted trainer read the snapshots and started from no model",
            alive=alive,
        )
        compacted = {k for k, r in fuzzed.items() if r.subject in ("model-snapshots", "parameter-distribution")}
        wait_until(
            lambda: sum(1 for d in dead.poll() if d["key"] in compacted) >= 2 * len(compacted),
            120,
            "the feeds read the compacted topics again",
            alive=alive,
        )
        alive()
        for d in dead.poll()[len(first) :]:  # at-least-once: a record read again keeps its coordinates
            (original,) = letters[(d["key"], d["consumer"])]
            coordinates = ("source_topic", "partition", "offset", "error_type", "value")
            assert all(d[k] == original[k] for k in coordinates), (d, original)
            assert d["key"] in compacted or d["consumer"] in OTHER_READERS.get(fuzzed[d["key"]].subject, set()), d
    finally:
        workers.stop()
