"""The fuzzer without a broker: seeded, keyed, every record invalid by fastavro or by the
contract, and every one rejected at the edge of the worker that reads its topic, with the error
class the fuzzer expects, through the workers' own serde (the columnar codecs) as well as
fastavro's. The same records against running workers: tests/integration/test_fuzz.py."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from streams.avro.serde import AvroSerde
from streams.decide.contexts import ScoresContext
from streams.errors import DecodeError, ValidationError
from streams.fuzz import RULES, Fuzzer, FuzzRecord
from streams.fuzz.rules import FieldRule
from streams.kafka.connection import ConnectionConfig
from streams.records import BatchControlRecord, CandidatesRecord, FeedbackRecord, ScoresRecord
from streams.score.model_feed import ModelFeed
from streams.score.parameter_feed import ParameterDistributionRecord
from tests.factories import (
    REFERENCE_SERDE,
    SERDE,
    candidates_value,
    closed_value,
    feedback_value,
    model_snapshot_value,
    opened_value,
    parameter_distribution_value,
    scores_value,
)

N = 400
SUBJECTS = tuple(RULES)


def base(subject: str, i: int) -> dict[str, Any]:
    """A valid value of ``subject`` with ids of its own (as the integration test builds them),
    its times fixed (the factories stamp the wall clock)."""
    value = _base(subject, i)
    for key in ("created_at_ms", "observed_at_ms", "scored_at_ms"):
        if key in value:
            value[key] = 1_700_000_000_000
    if subject == "model-snapshots":
        from models.snapshot import decode_snapshot, encode_snapshot

        header, arrays = decode_snapshot(value["payload"])
        value["payload"] = encode_snapshot(replace(header, created_at_ms=1_700_000_000_000), arrays)
    return value


def _base(subject: str, i: int) -> dict[str, Any]:
    rng = np.random.default_rng(i)
    if subject == "candidates":
        return candidates_value(i, 4, rng, d=6, k=3, batch_id=f"fuzz-batch-{i}")
    if subject == "feedback":
        return feedback_value(f"fuzz-batch-{i}/u{i}", f"u{i}")
    if subject == "batch-control":
        return opened_value(f"fuzz-batch-{i}", 10) if i % 2 else closed_value(f"fuzz-batch-{i}", 10)
    if subject == "scores":
        return scores_value("fuzz-open", i, rng)
    if subject == "model-snapshots":
        return model_snapshot_value("email", version=1_000 + i)
    return parameter_distribution_value(f"fuzz-experiment-{i}", rng)


# A base value each consumer accepts only with context this offline check does not have: the
# allocator's unknown-batch timeout, the learner's decision contexts (the integration test has them).
NEEDS_CONTEXT = {"unknown_ref batch_id", "unknown_ref decision_id"}


def consumer_error(subject: str, data: bytes | None, serde: AvroSerde) -> str | None:
    """The error class the worker that reads ``subject`` gives ``data`` at its edge, or None."""
    try:
        value = serde.decode(subject, data)
        if subject == "candidates":
            CandidatesRecord.from_avro(value)
        elif subject == "feedback":
            FeedbackRecord.from_avro(value)
        elif subject == "batch-control":
            BatchControlRecord.from_avro(value)
        elif subject == "scores":
            ScoresRecord.from_avro(value)
            ScoresContext.from_avro(value)
        elif subject == "model-snapshots":
            ModelFeed(ConnectionConfig("127.0.0.1:1"), serde, "model-snapshots", "email").offer(value)
        else:
            ParameterDistributionRecord.from_avro(value)
    except (DecodeError, ValidationError) as exc:
        return type(exc).__name__
    return None


@pytest.fixture(scope="module")
def fuzzed() -> dict[str, list[FuzzRecord]]:
    fuzzer = Fuzzer(REFERENCE_SERDE, seed=18, oversized_value_bytes=200_000, oversized_share=0.02)
    return {s: fuzzer.records(s, lambda i, s=s: base(s, i), N) for s in SUBJECTS}


def test_the_bases_are_valid_records_the_consumers_accept() -> None:
    for subject in SUBJECTS:
        for i in range(6):
            assert consumer_error(subject, SERDE.encode(subject, base(subject, i)), SERDE) is None, (subject, i)


def test_the_same_seed_gives_the_same_records_and_each_key_is_unique(fuzzed: dict[str, list[FuzzRecord]]) -> None:
    again = Fuzzer(REFERENCE_SERDE, seed=18, oversized_value_bytes=200_000, oversized_share=0.02)
    for subject in ("candidates", "batch-control"):
        assert again.records(subject, lambda i, s=subject: base(s, i), N) == fuzzed[subject]
    keys = [r.key for records in fuzzed.values() for r in records]
    assert len(set(keys)) == len(keys) == N * len(SUBJECTS)


def test_every_kind_of_damage_is_drawn(fuzzed: dict[str, list[FuzzRecord]]) -> None:
    for subject, records in fuzzed.items():
        kinds = Counter(r.mutation for r in records)
        byte_kinds = {k for k in kinds if " " not in k}
        assert {"truncated", "random_body", "dropped_field", "swapped_type", "other_subject_id"} <= byte_kinds
        assert {str(rule) for rule in RULES[subject]} - set(kinds) <= {
            str(r) for r in RULES[subject] if r.kind == "oversized"
        }


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("serde", [SERDE, REFERENCE_SERDE], ids=["columnar", "fastavro"])
def test_every_fuzzed_record_is_rejected_at_the_edge_with_the_expected_error(
    fuzzed: dict[str, list[FuzzRecord]], subject: str, serde: AvroSerde
) -> None:
    wrong = []
    for r in fuzzed[subject]:
        if r.mutation in NEEDS_CONTEXT:
            continue
        got = consumer_error(subject, r.value, serde)
        if got != r.expect:
            wrong.append((r.mutation, r.expect, got))
    assert not wrong, f"{len(wrong)} of {N} records not rejected as expected: {wrong[:10]}"


def test_a_rule_that_does_not_fit_its_value_is_not_drawn() -> None:
    fuzzer = Fuzzer(REFERENCE_SERDE, seed=1)
    rule = FieldRule(("batch_id",), "unknown_ref", only_if=("event", "CLOSED"))
    opened = opened_value("b", 3)
    assert not rule.applies(opened) and rule.applies(closed_value("b", 3))
    records = fuzzer.records("batch-control", lambda i: opened, 200)
    assert all(r.mutation != str(rule) for r in records)


def test_an_oversized_record_is_built_to_the_size_asked_for(fuzzed: dict[str, list[FuzzRecord]]) -> None:
    big = [r for records in fuzzed.values() for r in records if r.mutation.startswith("oversized")]
    assert big and all(199_000 <= len(r.value or b"") <= 200_000 for r in big)


def test_a_columnar_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="fastavro alone"):
        Fuzzer(SERDE, seed=0)
