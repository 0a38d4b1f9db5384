"""Every subject's codec against fastavro: for 200 generated values of each topic's current schema,
the serde (its columnar codec where one is registered, and fastavro alone as the reference
serde) writes fastavro's bytes behind Confluent's header, and reads back what fastavro reads.

fastavro is the independent truth here: it is the reference implementation of the Avro spec
in Python, and none of the project's codecs call it on their fast paths."""

from __future__ import annotations

import io
import random
import struct
from typing import Any

import fastavro
import fastavro.utils
import pytest

from streams.avro.columns import Columns
from streams.kafka.topics import BASE_TOPICS
from tests.factories import REFERENCE_SERDE, SERDE

N_VALUES = 200


def _plain(value: Any) -> Any:
    """A decoded value with its columnar sequences as the lists of dicts they stand for."""
    if isinstance(value, Columns):
        return value.rows()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _values(subject: str) -> list[dict[str, Any]]:
    _, schema = SERDE.registry.current(subject)
    random.seed(f"conformance:{subject}")  # fastavro's generator draws from the random module
    return list(fastavro.utils.generate_many(schema, N_VALUES))


@pytest.mark.parametrize("subject", BASE_TOPICS)
@pytest.mark.parametrize("serde", [SERDE, REFERENCE_SERDE], ids=["columnar", "fastavro-only"])
def test_the_codec_of_every_subject_writes_and_reads_what_fastavro_does(subject: str, serde: Any) -> None:
    sid, schema = serde.registry.current(subject)
    for value in _values(subject):
        data = serde.encode(subject, value)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, schema, value)
        assert data[:5] == struct.pack(">bI", 0, sid)
        assert data[5:] == body.getvalue()
        expected = fastavro.schemaless_reader(io.BytesIO(body.getvalue()), schema, schema)
        assert _plain(serde.decode(subject, data)) == expected


@pytest.mark.parametrize("d", [0, 14], ids=["no-features", "14-features"])
@pytest.mark.parametrize("subject", sorted(SERDE.codecs))
def test_the_columnar_codecs_take_the_fast_path_on_the_values_the_pipeline_writes(subject: str, d: int) -> None:
    """Values of one shape per record (what the scorer and the simulator write: ``d`` pair
    features per item, the email world's 14 or none) decode to columns, so the conformance
    above covers the fast path and not only the fallback."""
    import numpy as np

    from tests.factories import candidates_value, scores_value

    rng = np.random.default_rng(0)
    make = {
        "candidates": lambda u: candidates_value(u, 5, rng, d=d, k=min(d, 3)),
        "scores": lambda u: scores_value("b", u, rng, d=d),
    }[subject]
    _, schema = SERDE.registry.current(subject)
    for u in range(20):
        value = make(u)
        data = SERDE.encode(subject, value)
        decoded = SERDE.decode(subject, data)
        items = decoded["candidates" if subject == "candidates" else "items"]
        assert isinstance(items, Columns)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, schema, value)
        assert data[5:] == body.getvalue()
        assert _plain(decoded) == fastavro.schemaless_reader(io.BytesIO(body.getvalue()), schema, schema)
        if subject == "scores":  # the columns re-encode to the same bytes, features included
            assert items.features.shape == (len(value["items"]), d)
            assert SERDE.encode(subject, decoded) == data


def _batch_columns(subject: str, n_users: int, rng: Any) -> Any:
    """One batch's columns of a subject written a batch at a time (``BATCH_ENCODERS``)."""
    from streams.avro.decisions import DecisionColumns
    from tests.factories import context_columns

    if subject == "decision-contexts":
        return context_columns(n_users, rng, d=int(rng.integers(0, 4)))
    c = context_columns(n_users, rng)
    return DecisionColumns(
        c.batch_id,
        c.user_ids,
        c.starts,
        c.item,
        c.item_names,
        c.provider,
        c.provider_names,
        c.x,
        c.x > 0,
        c.propensity,
        c.model_names,
        c.model_versions,
        c.parameter_versions,
        "highs",
        "sample",
        c.decided_at_ms,
        n_draws=c.n_draws,
    )


@pytest.mark.parametrize("subject", ["decisions", "decision-contexts"])
def test_the_batch_encoders_write_fastavros_bytes_for_every_record_of_a_batch(subject: str) -> None:
    """The allocator's batch encoders (``encode_decisions``, ``encode_contexts``) against fastavro
    on the batches the allocator builds, and a subject's generated values through them."""
    import numpy as np

    from streams.avro.serde import BATCH_ENCODERS

    assert set(BATCH_ENCODERS) == {"decisions", "decision-contexts"}
    encode = {"decisions": "encode_decisions", "decision-contexts": "encode_contexts"}[subject]
    sid, schema = SERDE.registry.current(subject)
    assert BATCH_ENCODERS[subject](schema)  # the fast path is the one under test
    rng = np.random.default_rng(0)
    for n_users in (0, 1, 7, 40):
        columns = _batch_columns(subject, n_users, rng)
        records = getattr(SERDE, encode)(columns)
        assert records == getattr(REFERENCE_SERDE, encode)(columns)
        for data, value in zip(records, columns.rows(), strict=True):
            body = io.BytesIO()
            fastavro.schemaless_writer(body, schema, value)
            assert data == struct.pack(">bI", 0, sid) + body.getvalue()
            assert _plain(SERDE.decode(subject, data)) == fastavro.schemaless_reader(
                io.BytesIO(body.getvalue()), schema, schema
            )
