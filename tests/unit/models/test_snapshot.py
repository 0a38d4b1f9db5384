"""Snapshot bytes: bit-identical round trips for every kind, corruption -> SnapshotError."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.calibration import IsotonicCalibrator, PlattCalibrator
from models.errors import SnapshotError
from models.logistic import BayesianLogisticHead, LogisticHeadConfig
from models.neural import NeuralThompsonModel
from models.neural_net import NeuralConfig
from models.posterior import BayesianLinearHead, LinearHeadConfig
from models.snapshot import (
    MAGIC,
    SnapshotHeader,
    decode_snapshot,
    dump_snapshot,
    encode_snapshot,
    load_snapshot,
    load_snapshot_with_header,
    read_header,
)

torch.set_num_threads(1)


def _linear():
    rng = np.random.default_rng(0)
    head = BayesianLinearHead(LinearHeadConfig(dim=4, prior_precision=0.3, noise_variance=2.0, gamma=0.97))
    head.update_batch(rng.normal(size=(50, 4)), rng.normal(size=50))
    return head


def _logistic():
    rng = np.random.default_rng(1)
    head = BayesianLogisticHead(LogisticHeadConfig(dim=3, prior_precision=2.0))
    head.fit(rng.normal(size=(80, 3)), (rng.random(80) < 0.3).astype(float))
    return head


def _calibrator():
    rng = np.random.default_rng(2)
    p = rng.random(500)
    return IsotonicCalibrator.fit_naive(p, (rng.random(500) < p).astype(float))


def _platt():
    rng = np.random.default_rng(4)
    p = rng.random(500) * 0.1
    return PlattCalibrator.fit(p, (rng.random(500) < p).astype(float))


def _neural():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 5))
    Y = {
        "conversion": (rng.random(200) < 0.2).astype(float),
        "unsubscription": np.zeros(200),
        "value": rng.normal(size=200),
    }
    model = NeuralThompsonModel(NeuralConfig(user_dim=3, item_dim=1, cross_dim=1, hidden=(8, 4), epochs=2))
    model.fit(X, Y)
    model.fit_calibrators(X, Y)
    return model, X


def _arrays_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a
    )


@pytest.mark.parametrize(
    "make",
    [_linear, _logistic, _calibrator, _platt, lambda: _neural()[0]],
    ids=["linear_head", "logistic_head", "isotonic_calibrator", "platt_calibrator", "neural_thompson"],
)
def test_roundtrip_is_bit_identical(make) -> None:
    obj = make()
    data = dump_snapshot(obj, name="reward-model", version=42, created_at_ms=1_700_000_000_123)
    header, loaded = load_snapshot_with_header(data)
    assert type(loaded) is type(obj)
    assert (header.kind, header.name, header.version, header.created_at_ms) == (
        obj.snapshot_kind,
        "reward-model",
        42,
        1_700_000_000_123,
    )
    assert read_header(data) == header
    assert _arrays_equal(loaded.snapshot_arrays(), obj.snapshot_arrays())
    assert loaded.to_bytes(name="reward-model", version=42, created_at_ms=1_700_000_000_123) == data
    assert type(obj).from_bytes(data).snapshot_config() == obj.snapshot_config()


def test_neural_snapshot_scores_identically() -> None:
    model, X = _neural()
    loaded = NeuralThompsonModel.from_bytes(model.to_bytes(version=1))
    for name, v in model.mean_scores(X).items():
        assert np.array_equal(loaded.mean_scores(X)[name], v)
    a = model.sample_scores(X, tau=1.0, generator=4, calibrate=True)
    b = loaded.sample_scores(X, tau=1.0, generator=4, calibrate=True)
    for name in a:
        assert np.array_equal(a[name], b[name])
    assert set(loaded.calibrators) == {"conversion", "unsubscription"}


def test_linear_head_snapshot_continues_learning_identically() -> None:
    head = _linear()
    copy = BayesianLinearHead.from_bytes(head.to_bytes())
    x = np.array([1.0, 2.0, -1.0, 0.5])
    head.update(x, 1.0)
    copy.update(x, 1.0)
    assert np.array_equal(head.mean, copy.mean)


def _valid() -> bytes:
    return _linear().to_bytes(name="m", version=1, created_at_ms=0)


def _reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"", "too short"),
        (lambda b: b[:-1], "checksum"),
        (lambda b: b[: len(b) // 2], "checksum"),
        (lambda b: b"XXXXXXXX" + b[8:], "magic"),
        (lambda b: b[:40] + bytes([b[40] ^ 0x01]) + b[41:], "checksum"),
        (lambda b: b[:-5] + bytes([b[-5] ^ 0x80]) + b[-4:], "checksum"),
        (lambda b: _reseal(MAGIC + struct.pack("<H", 99) + b[10:-4]), "format version 99"),
        (lambda b: _reseal(MAGIC + struct.pack("<HI", 1, 5) + b"{nope"), "malformed snapshot header"),
        (lambda b: encode_snapshot(SnapshotHeader(kind="no_such_kind"), {}), "unknown snapshot kind"),
        (
            lambda b: encode_snapshot(
                SnapshotHeader(kind="linear_head", config={"dim": 4}),
                {"precision": np.eye(3), "b": np.zeros(3), "n_obs": np.array(0)},
            ),
            "does not fit",
        ),
        (lambda b: "not bytes", "must be bytes"),
    ],
)
def test_bad_bytes_raise_snapshot_error(mutate, message) -> None:
    with pytest.raises(SnapshotError, match=message):
        load_snapshot(mutate(_valid()))


def test_array_table_overrunning_the_payload_is_refused() -> None:
    data = _valid()
    prefix = len(MAGIC) + 6
    (head_len,) = struct.unpack_from("<I", data, len(MAGIC) + 2)
    doc = json.loads(data[prefix : prefix + head_len])
    doc["arrays"][0]["nbytes"] *= 1000
    doc["arrays"][0]["shape"] = [doc["arrays"][0]["shape"][0] * 1000]
    head = json.dumps(doc).encode()
    forged = _reseal(MAGIC + struct.pack("<HI", 1, len(head)) + head + data[prefix + head_len : -4])
    with pytest.raises(SnapshotError, match="does not fit the payload"):
        decode_snapshot(forged)


def test_wrong_class_and_unsupported_dtype() -> None:
    with pytest.raises(SnapshotError, match="expected BayesianLogisticHead"):
        BayesianLogisticHead.from_bytes(_valid())
    with pytest.raises(SnapshotError, match="unsupported dtype"):
        encode_snapshot(SnapshotHeader(kind="x"), {"a": np.array(["text"])})


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10**6), flip=st.integers(1, 255))
def test_any_single_byte_corruption_is_detected(position: int, flip: int) -> None:
    data = bytearray(_VALID)
    position %= len(data)
    data[position] ^= flip
    with pytest.raises(SnapshotError):
        load_snapshot(bytes(data))


_VALID = _valid()
