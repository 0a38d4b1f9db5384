"""A batch's decisions written at once against fastavro, the reference: the same bytes as
fastavro writes for each record, and fastavro itself for whatever the encoder leaves to it."""

from __future__ import annotations

import io
import json

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.avro import decisions as decision_columns
from streams.avro.decisions import DecisionColumns
from streams.avro.registry import SCHEMA_DIR
from streams.errors import SchemaError
from streams.settings import Settings

FAST = Settings().serde()
REFERENCE = Settings().serde(columnar=False)

ids = st.text(max_size=70)  # past 63 UTF-8 bytes a string's length takes two varint bytes
doubles = st.floats(allow_nan=True, allow_infinity=True)


def fastavro_record(value: dict) -> bytes:
    sid, schema = FAST.registry.current("decisions")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, value)
    return b"\x00" + sid.to_bytes(4, "big") + buf.getvalue()


@st.composite
def batches(draw: st.DrawFn) -> DecisionColumns:
    n = draw(st.integers(0, 6))
    sizes = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
    e = int(starts[-1])
    item_names = draw(st.lists(ids, min_size=1, max_size=5, unique=True))
    provider_names = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    models = draw(st.lists(st.tuples(ids, st.integers(-(2**63), 2**63 - 1), ids), min_size=1, max_size=2))
    picks = draw(st.lists(st.integers(0, len(models) - 1), min_size=n, max_size=n))
    return DecisionColumns(
        batch_id=draw(ids),
        user_ids=draw(st.lists(ids, min_size=n, max_size=n, unique=True)),
        starts=starts,
        item=np.array(draw(st.lists(st.integers(0, len(item_names) - 1), min_size=e, max_size=e)), dtype=np.int64),
        item_names=item_names,
        provider=np.array(
            draw(st.lists(st.integers(0, len(provider_names) - 1), min_size=e, max_size=e)), dtype=np.int64
        ),
        provider_names=provider_names,
        x=np.array(draw(st.lists(doubles, min_size=e, max_size=e)), dtype=np.float64),
        chosen=np.array(draw(st.lists(st.booleans(), min_size=e, max_size=e)), dtype=bool),
        propensity=np.array(draw(st.lists(doubles, min_size=e, max_size=e)), dtype=np.float64),
        model_names=[models[p][0] for p in picks],
        model_versions=[models[p][1] for p in picks],
        parameter_versions=[models[p][2] for p in picks],
        solver=draw(ids),
        rounding=draw(ids),
        decided_at_ms=draw(st.integers(-(2**63), 2**63 - 1)),
        n_draws=draw(st.integers(1, 2**31 - 1)),
        policy=draw(ids),
    )


def test_the_encoder_implements_the_shipped_schema_and_no_changed_one() -> None:
    assert decision_columns.implements(FAST.registry.current("decisions")[1])
    raw = json.loads((SCHEMA_DIR / "decisions.avsc").read_text())
    raw["fields"].append({"name": "extra", "type": "int", "default": 0})
    assert not decision_columns.implements(fastavro.parse_schema(raw))
    assert not decision_columns.implements(FAST.registry.current("scores")[1])


@settings(max_examples=200, deadline=None)
@given(batches())
def test_a_batch_encodes_to_fastavros_bytes_record_by_record(columns: DecisionColumns) -> None:
    records = FAST.encode_decisions(columns)
    assert records == [fastavro_record(value) for value in columns.rows()]
    assert records == REFERENCE.encode_decisions(columns)


def test_rows_are_the_decisions_the_worker_published() -> None:
    columns = DecisionColumns(
        batch_id="b7",
        user_ids=["u1", "u2", "u3"],
        starts=np.array([0, 3, 3, 5]),
        item=np.array([2, 0, 1, 0, 2]),
        item_names=["i0", "i1", "i2"],
        provider=np.array([1, 0, 0, 0, 1]),
        provider_names=["p0", "p1"],
        x=np.array([0.25, 0.0, 0.75, 1.0, 0.0]),
        chosen=np.array([True, False, True, True, False]),
        propensity=np.array([0.3, 0.1, 0.6, 1.0, 0.0]),
        model_names=["m", "m", "n"],
        model_versions=[3, 3, 1],
        parameter_versions=["default", "default", "a"],
        solver="dual",
        rounding="sample",
        decided_at_ms=1_700_000_000_000,
        n_draws=4,
        policy="banditlp",
    )
    rows = list(columns.rows())
    assert rows[0] == {
        "decision_id": "b7/u1",
        "batch_id": "b7",
        "user_id": "u1",
        "chosen": [
            {"item_id": "i2", "provider_id": "p1", "propensity": 0.3},
            {"item_id": "i1", "provider_id": "p0", "propensity": 0.6},
        ],
        "allocation": [
            {"item_id": "i2", "x": 0.25, "propensity": 0.3},
            {"item_id": "i0", "x": 0.0, "propensity": 0.1},
            {"item_id": "i1", "x": 0.75, "propensity": 0.6},
        ],
        "model_name": "m",
        "model_version": 3,
        "parameter_version": "default",
        "solver": "dual",
        "rounding": "sample",
        "decided_at_ms": 1_700_000_000_000,
        "n_draws": 4,
        "policy": "banditlp",
    }
    assert rows[1]["chosen"] == rows[1]["allocation"] == []
    assert rows[2]["chosen"] == [{"item_id": "i0", "provider_id": "p0", "propensity": 1.0}]
    assert (rows[2]["model_name"], rows[2]["model_version"], rows[2]["parameter_version"]) == ("n", 1, "a")
    assert [REFERENCE.decode("decisions", r) for r in FAST.encode_decisions(columns)] == rows


def test_values_of_unexpected_types_are_left_to_fastavro() -> None:
    base = dict(
        batch_id="b",
        user_ids=["u"],
        starts=np.array([0, 1]),
        item=np.array([0]),
        item_names=["i"],
        provider=np.array([0]),
        provider_names=["p"],
        x=np.array([0.5]),
        chosen=np.array([True]),
        propensity=np.array([0.5]),
        model_names=["m"],
        model_versions=[1],
        parameter_versions=["default"],
        solver="dual",
        rounding="sample",
        decided_at_ms=1,
    )
    # a numpy integer version: fastavro writes it as a long
    columns = DecisionColumns(**{**base, "model_versions": [np.int64(4)]})
    assert decision_columns.encode(columns) is None
    assert FAST.encode_decisions(columns) == REFERENCE.encode_decisions(columns)
    # a version out of the long range: fastavro's error, whatever it is
    columns = DecisionColumns(**{**base, "model_versions": [2**63]})
    errors = []
    for serde in (FAST, REFERENCE):
        with pytest.raises(Exception) as info:
            serde.encode_decisions(columns)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]
    # an id that is not a string: fastavro's SchemaError
    columns = DecisionColumns(**{**base, "item_names": [7]})
    with pytest.raises(SchemaError):
        FAST.encode_decisions(columns)
