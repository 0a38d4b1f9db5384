"""The model feed checks every snapshot against its payload and loads only a newer version of
its own model, of the scorer's kind; anything else it rejects is a ValidationError (dead letter)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from models.posterior import BayesianLinearHead, LinearHeadConfig
from streams.errors import ValidationError
from streams.kafka.connection import ConnectionConfig
from streams.score.model_feed import ModelFeed, ModelSnapshotRecord
from tests.factories import SERDE, model_snapshot_value


def feed() -> ModelFeed:
    return ModelFeed(ConnectionConfig("127.0.0.1:1"), SERDE, "model-snapshots", "email")


def test_a_newer_version_of_the_model_is_loaded_and_an_older_one_or_another_models_is_left() -> None:
    f = feed()
    assert f.offer(model_snapshot_value("email", 3)) and f.version == 3
    assert not f.offer(model_snapshot_value("email", 2)) and f.version == 3
    assert not f.offer(model_snapshot_value("other", 9)) and f.version == 3
    assert f.model_for(2).version == 3


def _flip(payload: bytes) -> bytes:
    data = bytearray(payload)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"version": 0}, "snapshot version 0 is below 1"),
    ({"name": ""}, "model name must be a non-empty string"),
    ({"n_observations": -1}, "n_observations -1 is below 0"),
    ({"version": 8}, "snapshot email v8 (neural_thompson) carries a payload of 'email' v5"),
    ({"kind": "linear_head"}, "carries a payload of 'email' v5 (neural_thompson)"),
    ({"payload": b"not a snapshot"}, "the payload is not a snapshot"),
]


@pytest.mark.parametrize(("changes", "message"), BAD, ids=[m for _, m in BAD])
def test_a_snapshot_whose_envelope_and_payload_disagree_is_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        feed().offer({**model_snapshot_value("email", 5), **changes})


def test_a_corrupted_payload_fails_its_checksum() -> None:
    value = model_snapshot_value("email", 5)
    with pytest.raises(ValidationError, match="the payload is not a snapshot"):
        ModelSnapshotRecord.from_avro({**value, "payload": _flip(value["payload"])})


def test_a_newer_snapshot_of_another_kind_is_rejected_and_the_current_model_stays() -> None:
    f = feed()
    f.offer(model_snapshot_value("email", 3))
    head = BayesianLinearHead(LinearHeadConfig(dim=2))
    other = {
        **model_snapshot_value("email", 4),
        "kind": head.snapshot_kind,
        "payload": head.to_bytes(name="email", version=4),
    }
    with pytest.raises(ValidationError, match="the scorer needs neural_thompson"):
        f.offer(other)
    assert f.version == 3


def test_a_snapshot_of_a_model_never_fitted_is_rejected_before_it_can_stop_the_scorer() -> None:
    from models.neural import NeuralThompsonModel
    from models.neural_net import NeuralConfig

    unfitted = NeuralThompsonModel(NeuralConfig(user_dim=2, item_dim=0, hidden=(2,)))
    value = {**model_snapshot_value("email", 4), "payload": unfitted.to_bytes(name="email", version=4)}
    f = feed()
    with pytest.raises(ValidationError, match="never fitted"):
        f.offer(value)
    assert f.version == -1


def _v1_bytes(value: dict[str, Any]) -> bytes:
    """``value`` written with the v1 model-snapshots schema (before cost pacing), on the wire."""
    import io
    import json
    import struct

    import fastavro

    from streams.avro.registry import SCHEMA_DIR, schema_id_of

    old = fastavro.parse_schema(json.loads((SCHEMA_DIR / "history" / "model-snapshots.v1.avsc").read_text()))
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id_of(old)))
    fastavro.schemaless_writer(buf, old, {k: v for k, v in value.items() if k not in ("cost_scale", "cost_pacing")})
    return buf.getvalue()


PACING = {
    "outcome": "unsubscription",
    "realised": 31.0,
    "budgeted": 24.5,
    "n_rows": 900,
    "prior_events": 20.0,
    "memory": 1.0,
    "quantile": 0.5,
}


def test_a_v1_snapshot_reads_unpaced_and_a_paced_one_round_trips_to_the_scorers_model() -> None:
    from models.pacing import CostPacing, PacingConfig

    value = model_snapshot_value("email", 4)
    old = ModelSnapshotRecord.from_avro(SERDE.decode("model-snapshots", _v1_bytes(value)))
    assert old.cost_scale == {} and old.cost_pacing is None and old.unsubscription_factor == 1.0
    f = feed()
    assert f.offer(SERDE.decode("model-snapshots", _v1_bytes(value)))
    assert f.model_for(2).cost_scale == {}

    paced = {**model_snapshot_value("email", 5), "cost_scale": {"unsubscription": 1.19}, "cost_pacing": PACING}
    snap = ModelSnapshotRecord.from_avro(SERDE.decode("model-snapshots", SERDE.encode("model-snapshots", paced)))
    assert snap.cost_scale == {"unsubscription": 1.19} and snap.unsubscription_factor == 1.19
    assert snap.cost_pacing is not None and snap.cost_pacing.n_rows == 900
    assert snap.cost_pacing.pacing == CostPacing(PacingConfig(), 31.0, 24.5)
    assert snap.cost_pacing.to_avro() == PACING
    assert f.offer(SERDE.decode("model-snapshots", SERDE.encode("model-snapshots", paced)))
    assert f.model_for(2).cost_scale == {"unsubscription": 1.19}


BAD_PACING: list[tuple[dict[str, Any], str]] = [
    ({"cost_scale": {"unsubscription": 0.0}}, "cost_scale of unsubscription must be finite and > 0, got 0.0"),
    ({"cost_scale": {"unsubscription": float("inf")}}, "cost_scale of unsubscription must be finite and > 0"),
    ({"cost_scale": {"value": 2.0}}, "cost_scale names 'value'"),
    ({"cost_pacing": {**PACING, "quantile": 1.0}}, "cost_pacing: quantile must be in (0, 1)"),
    ({"cost_pacing": {**PACING, "realised": -1.0}}, "cost_pacing: pacing counts must be finite and >= 0"),
    ({"cost_pacing": {**PACING, "n_rows": -1}}, "cost_pacing n_rows -1 is below 0"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_PACING, ids=[m for _, m in BAD_PACING])
def test_a_snapshot_with_a_bad_factor_or_counts_is_rejected(changes: dict[str, Any], message: str) -> None:
    f = feed()
    with pytest.raises(ValidationError, match=re.escape(message)):
        f.offer({**model_snapshot_value("email", 5), **changes})
    assert f.version == -1
