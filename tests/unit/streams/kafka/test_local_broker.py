"""The local broker's pure helpers (no JVM): the KRaft cluster id."""

from __future__ import annotations

import base64
import uuid

import pytest

from streams.kafka import local_broker
from streams.kafka.local_broker import new_cluster_id


def _decode(cluster_id: str) -> bytes:
    return base64.urlsafe_b64decode(cluster_id + "==")


def test_cluster_id_is_a_uuid_in_unpadded_urlsafe_base64() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(_decode(cluster_id)) == 16


def test_an_id_beginning_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 = 0b111110_00: its first six bits are 62, which URL-safe base64 writes as "-".
    dashed = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    plain = uuid.UUID(bytes=bytes(range(16)))
    draws = iter([dashed, dashed, plain])
    monkeypatch.setattr(local_broker.uuid, "uuid4", lambda: next(draws))
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    assert _decode(new_cluster_id()) == plain.bytes
