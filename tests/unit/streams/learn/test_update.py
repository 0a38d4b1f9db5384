"""The learner's training row carries the cost the scorer budgeted for the item fed back.

The context holds each scored item's calibrated mean unsubscription before pacing (``p_unsub``);
the row of the item fed back takes that item's value (not another item's, nor the pair order's),
and a context stored before the scorer kept it gives a row without one (null), which still
encodes. A v1 training row (no such field) reads back with null."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import numpy as np

from models.random_effects import RandomEffectConfig
from streams.avro.registry import SCHEMA_DIR, schema_id_of
from streams.learn.state_codec import pack
from streams.learn.update import DecisionContext, learn
from streams.learn.user_state import UserState
from streams.records import FeedbackRecord
from tests.factories import SERDE, feedback_value

ITEMS = ["i0", "i1", "i2", "i3"]
P_UNSUB = np.array([0.011, 0.023, 0.037, 0.052])


def context_bytes(with_p_unsub: bool) -> bytes:
    rng = np.random.default_rng(0)
    arrays = {
        "features": rng.normal(size=(4, 3)).astype(np.float32),
        "item_features": rng.normal(size=(4, 2)).astype(np.float32),
        "p_conversion": np.full(4, 0.1),
    }
    if with_p_unsub:
        arrays["p_unsub"] = P_UNSUB
    return pack(arrays, {"batch_id": "b1", "seq": 0, "items": ITEMS, "model_version": 3})


def feedback(item: str, unsubscribed: bool) -> FeedbackRecord:
    return FeedbackRecord.from_avro({**feedback_value("b1/u7", "u7", item), "unsubscribed": unsubscribed})


def state() -> UserState:
    A, b = RandomEffectConfig(2, 25.0).prior()
    return UserState(A, b, np.zeros(0, "<u8"), 0)


def test_the_row_carries_the_contexts_p_unsub_of_the_item_fed_back() -> None:
    context = DecisionContext.decode(context_bytes(True))
    for j, item in enumerate(ITEMS):
        learned = learn(feedback(item, j == 2), context, state(), 1.0, 16)
        assert learned is not None
        row = learned.training_row
        assert row["budgeted_unsub"] == P_UNSUB[j] and row["unsubscribed"] is (j == 2)
        decoded = SERDE.decode("training-rows", SERDE.encode("training-rows", row))
        assert decoded["budgeted_unsub"] == P_UNSUB[j]


def test_a_context_stored_without_p_unsub_gives_a_row_without_a_budgeted_cost() -> None:
    context = DecisionContext.decode(context_bytes(False))
    assert context.p_unsub is None
    learned = learn(feedback("i1", False), context, state(), 1.0, 16)
    assert learned is not None and learned.training_row["budgeted_unsub"] is None
    assert SERDE.decode("training-rows", SERDE.encode("training-rows", learned.training_row))["budgeted_unsub"] is None


def test_a_v1_training_row_reads_with_no_budgeted_cost() -> None:
    old = fastavro.parse_schema(json.loads((SCHEMA_DIR / "history" / "training-rows.v1.avsc").read_text()))
    row = {
        "decision_id": "b1/u7",
        "batch_id": "b1",
        "user_id": "u7",
        "item_id": "i1",
        "features": [0.5, -1.0],
        "converted": False,
        "unsubscribed": True,
        "value": 0.0,
        "model_version": 2,
        "observed_at_ms": 1_700_000_000_000,
    }
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id_of(old)))
    fastavro.schemaless_writer(buf, old, row)
    assert SERDE.decode("training-rows", buf.getvalue()) == {**row, "budgeted_unsub": None}
