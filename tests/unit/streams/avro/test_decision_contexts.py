"""A batch's decision contexts written at once against fastavro, the reference: the same bytes as
fastavro writes for each record, fastavro itself for what the encoder leaves to it (null means,
feature widths that differ between users), and the structure it is bound to."""

from __future__ import annotations

import io
import json

import fastavro
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.avro import contexts as context_codec
from streams.avro.contexts import ContextColumns
from streams.avro.registry import SCHEMA_DIR
from tests.factories import REFERENCE_SERDE, SERDE, context_columns

ids = st.text(max_size=70)  # past 63 UTF-8 bytes a string's length takes two varint bytes
doubles = st.floats(allow_nan=True, allow_infinity=True)
floats32 = st.floats(width=32, allow_nan=False)


def fastavro_record(value: dict) -> bytes:
    sid, schema = SERDE.registry.current("decision-contexts")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, value)
    return b"\x00" + sid.to_bytes(4, "big") + buf.getvalue()


@st.composite
def batches(draw: st.DrawFn) -> ContextColumns:
    n = draw(st.integers(0, 5))
    sizes = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
    e = int(starts[-1])
    d = draw(st.integers(0, 3))
    item_names = draw(st.lists(ids, min_size=1, max_size=4, unique=True))
    provider_names = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    finite = st.floats(allow_nan=False, allow_infinity=True)
    models = draw(st.lists(st.tuples(ids, st.integers(-(2**63), 2**63 - 1), ids), min_size=1, max_size=2))
    picks = draw(st.lists(st.integers(0, len(models) - 1), min_size=n, max_size=n))

    def column(elements: st.SearchStrategy[float], m: int) -> np.ndarray:
        return np.array(draw(st.lists(elements, min_size=m, max_size=m)), dtype=np.float64)

    return ContextColumns(
        batch_id=draw(ids),
        user_ids=draw(st.lists(ids, min_size=n, max_size=n, unique=True)),
        starts=starts,
        item=np.array(draw(st.lists(st.integers(0, len(item_names) - 1), min_size=e, max_size=e)), dtype=np.int64),
        item_names=item_names,
        provider=np.array(
            draw(st.lists(st.integers(0, len(provider_names) - 1), min_size=e, max_size=e)), dtype=np.int64
        ),
        provider_names=provider_names,
        features=[
            np.array(draw(st.lists(floats32, min_size=k * d, max_size=k * d)), dtype=np.float32).reshape(k, d)
            for k in sizes
        ],
        propensity=column(doubles, e),
        x=column(doubles, e),
        mean_conversion=column(finite, e),
        mean_unsubscription=column(finite, e),
        mean_value=column(finite, e),
        model_names=[models[p][0] for p in picks],
        model_versions=[models[p][1] for p in picks],
        parameter_versions=[models[p][2] for p in picks],
        taus=column(st.one_of(st.just(float("nan")), finite), n),
        user_caps=draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n, max_size=n)),
        policy=draw(ids),
        n_draws=draw(st.integers(1, 2**31 - 1)),
        rounding=draw(ids),
        decided_at_ms=draw(st.integers(-(2**63), 2**63 - 1)),
    )


def test_the_encoder_implements_the_shipped_schema_and_no_changed_one() -> None:
    assert context_codec.implements(SERDE.registry.current("decision-contexts")[1])
    raw = json.loads((SCHEMA_DIR / "decision-contexts.avsc").read_text())
    raw["fields"].append({"name": "extra", "type": "int", "default": 0})
    assert not context_codec.implements(fastavro.parse_schema(raw))
    assert not context_codec.implements(SERDE.registry.current("decisions")[1])


@settings(max_examples=200, deadline=None)
@given(batches())
def test_a_batch_encodes_to_fastavros_bytes_record_by_record(columns: ContextColumns) -> None:
    assert context_codec.encode(columns) is not None  # the fast path, not the fallback
    records = SERDE.encode_contexts(columns)
    assert records == [fastavro_record(value) for value in columns.rows()]
    assert records == REFERENCE_SERDE.encode_contexts(columns)


def test_a_missing_mean_is_null_and_is_left_to_fastavro() -> None:
    columns = context_columns(3, np.random.default_rng(1))
    means = columns.mean_value.copy()
    means[1] = np.nan
    gap = ContextColumns(**{**columns.__dict__, "mean_value": means})
    assert context_codec.encode(gap) is None
    records = SERDE.encode_contexts(gap)
    decoded = [SERDE.decode("decision-contexts", r) for r in records]
    values = [c["mean_value"] for d in decoded for c in d["candidates"]]
    assert values[1] is None and all(v is not None for i, v in enumerate(values) if i != 1)
    assert records == [fastavro_record(value) for value in gap.rows()]


def test_feature_widths_that_differ_between_users_are_left_to_fastavro() -> None:
    columns = context_columns(2, np.random.default_rng(2), d=3)
    ragged = [columns.features[0], columns.features[1][:, :1]]
    mixed = ContextColumns(**{**columns.__dict__, "features": ragged})
    assert context_codec.encode(mixed) is None
    decoded = [SERDE.decode("decision-contexts", r) for r in SERDE.encode_contexts(mixed)]
    assert {len(c["features"]) for c in decoded[0]["candidates"]} == {3}
    assert {len(c["features"]) for c in decoded[1]["candidates"]} == {1}


def test_rows_are_the_contexts_the_allocator_published() -> None:
    columns = ContextColumns(
        batch_id="b7",
        user_ids=["u1", "u2"],
        starts=np.array([0, 2, 3]),
        item=np.array([1, 0, 1]),
        item_names=["i0", "i1"],
        provider=np.array([0, 0, 1]),
        provider_names=["p0", "p1"],
        features=[np.array([[0.5], [1.5]], dtype=np.float32), np.array([[2.0]], dtype=np.float32)],
        propensity=np.array([0.25, 0.75, 1.0]),
        x=np.array([0.0, 1.0, 1.0]),
        mean_conversion=np.array([0.1, 0.2, 0.3]),
        mean_unsubscription=np.array([0.01, 0.02, 0.03]),
        mean_value=np.array([5.0, 6.0, 7.0]),
        model_names=["m", "m"],
        model_versions=[3, 3],
        parameter_versions=["default", "a"],
        taus=np.array([1.0, np.nan]),
        user_caps=[1, 2],
        policy="banditlp",
        n_draws=4,
        rounding="sample",
        decided_at_ms=1_700_000_000_000,
    )
    rows = list(columns.rows())
    assert rows[1] == {
        "decision_id": "b7/u2",
        "batch_id": "b7",
        "user_id": "u2",
        "policy": "banditlp",
        "n_draws": 4,
        "model_name": "m",
        "model_version": 3,
        "parameter_version": "a",
        "tau": None,
        "user_cap": 2,
        "rounding": "sample",
        "decided_at_ms": 1_700_000_000_000,
        "candidates": [
            {
                "item_id": "i1",
                "provider_id": "p1",
                "features": [2.0],
                "propensity": 1.0,
                "x": 1.0,
                "mean_conversion": 0.3,
                "mean_unsubscription": 0.03,
                "mean_value": 7.0,
            }
        ],
    }
    assert [c["item_id"] for c in rows[0]["candidates"]] == ["i1", "i0"]
    assert SERDE.encode_contexts(columns) == [fastavro_record(v) for v in rows]
