"""The scorer's vectorised path against the straightforward one it replaced: one pass of the
model gives the three separate calls' numbers bit for bit, score_records writes the bytes the
per-pair dicts gave, and records decode from columns as from dicts (values and errors)."""

from __future__ import annotations

import io

import fastavro
import numpy as np
import pytest
import torch

from models.random_effects import RandomEffectConfig
from streams.avro.scores import ScoredItems
from streams.errors import ValidationError
from streams.learn.context_slots import ContextIndex
from streams.learn.state_codec import unpack
from streams.learn.user_state import UserState
from streams.records import CandidatesRecord, ScoresRecord
from streams.score.batch import score_records
from streams.score.model import BERNOULLI, ScoringModel
from streams.settings import Settings
from streams.train.trainer import fit_model
from tests import factories

FAST = Settings().serde()
REFERENCE = Settings().serde(columnar=False)
D, K = 7, 3  # pair features; the per-user head's item features are their first K


@pytest.fixture(scope="module")
def model() -> ScoringModel:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, D)).astype(np.float32)
    p = 1 / (1 + np.exp(-(X[:, 0] - 2.0)))
    converted = (rng.random(1500) < p).astype(float)
    unsubscribed = (rng.random(1500) < 0.05).astype(float)
    value = np.exp(X[:, 1] * 0.3) + rng.random(1500)
    m = fit_model(X, converted, unsubscribed, value, seed=0)
    assert set(BERNOULLI) <= set(m.calibrators)  # calibration is part of what is compared
    return ScoringModel.from_snapshot("email", 3, m.to_bytes(name="email", version=3))


def three_calls(
    model: ScoringModel,
    X: np.ndarray,
    tau: float,
    rng: np.random.Generator,
    effect: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, dict[str, np.ndarray]]:
    """ScoringModel.score done the slow way: sample_scores, mean_scores and predictive_std separately."""
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    nt = model.model
    samples = {k: np.asarray(v, dtype=np.float64) for k, v in nt.sample_scores(X, tau=tau, generator=generator).items()}
    means = {k: np.asarray(v, dtype=np.float64) for k, v in nt.mean_scores(X).items()}
    stds = {k: np.asarray(v, dtype=np.float64) for k, v in nt.predictive_std(X).items()}
    if effect is not None:
        samples["conversion"] = np.clip(samples["conversion"] + effect[0], 0.0, 1.0)
        means["conversion"] = np.clip(means["conversion"] + effect[1], 0.0, 1.0)
    for outcome in BERNOULLI:
        samples[outcome] = nt.calibrators[outcome].apply(samples[outcome])
        means[outcome] = nt.calibrators[outcome].apply(means[outcome])
    samples["reward"] = samples["conversion"] * np.maximum(samples["value"], 0.0)
    means["reward"] = means["conversion"] * np.maximum(means["value"], 0.0)
    stds["reward"] = np.zeros_like(means["reward"])
    return {"samples": samples, "means": means, "stds": stds}


@pytest.mark.parametrize("tau", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("with_effect", [False, True])
def test_one_pass_equals_the_three_calls_bit_for_bit(model: ScoringModel, tau: float, with_effect: bool) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, D)).astype(np.float32)
    effect = (rng.normal(0, 0.05, 300), rng.normal(0, 0.05, 300)) if with_effect else None
    got = model.score(X, tau, np.random.default_rng(11), conversion_effect=effect)
    want = three_calls(model, X, tau, np.random.default_rng(11), effect)
    for part in ("samples", "means", "stds"):
        for outcome, values in want[part].items():
            np.testing.assert_array_equal(getattr(got, part)[outcome], values, err_msg=f"{part}[{outcome}]")


def candidates_value(u: int, n: int, rng: np.random.Generator, **changes: object) -> dict:
    return factories.candidates_value(u, n, rng, d=D, k=K, **changes)


def test_score_records_writes_the_bytes_of_the_per_pair_dicts(model: ScoringModel) -> None:
    rng = np.random.default_rng(2)
    records = [
        CandidatesRecord.from_avro(FAST.decode("candidates", FAST.encode("candidates", candidates_value(u, n, rng))))
        for u, n in enumerate([5, 1, 8, 3])
    ]
    A, b = RandomEffectConfig(K, 25.0).prior()
    b = b + 0.3  # a user with some feedback, so the effect is not zero

    def user_state(i: int, k: int) -> UserState:
        return UserState(A, b, np.zeros(0, "<u8"), 0)

    index = ContextIndex(8, {}.get)
    scored = score_records(
        records,
        user_state,
        model,
        1.0,
        np.random.default_rng(9),
        lambda i: index.claim(0, records[i].user_id, records[i].batch_id),
    )
    assert scored.n_pairs == 17
    for rec, (key, context) in zip(records, scored.contexts):
        arrays, meta = unpack(context)
        assert key == f"{rec.user_id}/0".encode() and meta["batch_id"] == rec.batch_id and meta["seq"] == 0
        np.testing.assert_array_equal(arrays["features"], rec.features)
    for rec, value in zip(records, scored.values):
        items = value["items"]
        assert items.item_ids == rec.item_ids and items.provider_ids == rec.provider_ids
        # The reference: a dict per item with one float per outcome in each map, written by fastavro.
        old = {
            **value,
            "items": [
                {
                    "item_id": it["item_id"],
                    "provider_id": it["provider_id"],
                    "features": rec.features.tolist()[j],
                    "samples": dict(it["samples"]),
                    "means": dict(it["means"]),
                    "stds": dict(it["stds"]),
                }
                for j, it in enumerate(items.rows())
            ],
        }
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, FAST.registry.current("scores")[1], old)
        data = FAST.encode("scores", {**value, "items": items})
        assert data[5:] == buf.getvalue()
        decoded = FAST.decode("scores", data)
        assert isinstance(decoded["items"], ScoredItems) and decoded["items"].features.dtype == np.float32
        np.testing.assert_array_equal(decoded["items"].features, rec.features)  # the pair features scored
        back = ScoresRecord.from_avro(decoded)
        ref = ScoresRecord.from_avro(REFERENCE.decode("scores", data))
        assert back.item_ids == ref.item_ids and back.provider_ids == ref.provider_ids
        assert back.samples.keys() == ref.samples.keys() == {"conversion", "unsubscription", "value", "reward"}
        for k in ref.samples:
            np.testing.assert_array_equal(back.samples[k], ref.samples[k])
            np.testing.assert_array_equal(back.means[k], ref.means[k])


def test_score_records_without_copying_features_writes_empty_arrays(model: ScoringModel) -> None:
    rng = np.random.default_rng(6)
    records = [
        CandidatesRecord.from_avro(FAST.decode("candidates", FAST.encode("candidates", candidates_value(u, 3, rng))))
        for u in range(2)
    ]
    index = ContextIndex(8, {}.get)

    def scored(copy_features: bool) -> list[dict]:
        return score_records(
            records,
            lambda i, k: UserState.prior(k, 25.0),
            model,
            1.0,
            np.random.default_rng(1),
            lambda i: index.claim(0, records[i].user_id, records[i].batch_id),
            copy_features=copy_features,
        ).values

    for with_features, without in zip(scored(True), scored(False), strict=True):
        assert with_features["items"].features.shape == (3, D) and without["items"].features.shape == (3, 0)
        assert [it["features"] for it in without["items"]] == [[]] * 3
        np.testing.assert_array_equal(with_features["items"].values, without["items"].values)
        data = FAST.encode("scores", without)
        assert data == REFERENCE.encode("scores", {**without, "items": without["items"].rows()})
        assert FAST.decode("scores", data)["items"].features.shape == (3, 0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({}, None),
        ({"user_cap": -1}, "negative"),
        ({"candidates": "duplicate"}, "duplicate item_id"),
        ({"candidates": "nan"}, "NaN"),
        ({"candidates": "no-features"}, "features are empty"),
        ({"candidates": "too-many"}, "exceed the limit"),
    ],
)
def test_candidates_from_columns_as_from_dicts(changes: dict, match: str | None) -> None:
    value = candidates_value(4, 6, np.random.default_rng(3))
    cands = value["candidates"]
    kind = changes.pop("candidates", None)
    if kind == "duplicate":
        cands[2]["item_id"] = cands[0]["item_id"]
    elif kind == "nan":
        cands[1]["features"][3] = float("nan")
    elif kind == "no-features":
        for c in cands:
            c["features"] = []
    value.update(changes)
    max_candidates = 5 if kind == "too-many" else 1_000
    data = FAST.encode("candidates", value)
    outcomes = []
    for serde in (FAST, REFERENCE):
        try:
            outcomes.append(CandidatesRecord.from_avro(serde.decode("candidates", data), max_candidates))
        except ValidationError as exc:
            outcomes.append(str(exc))
    fast, ref = outcomes
    if match is not None:
        assert isinstance(fast, str) and match in fast and fast == ref
        return
    assert (fast.batch_id, fast.user_id, fast.user_cap, fast.item_ids, fast.provider_ids) == (
        ref.batch_id,
        ref.user_id,
        ref.user_cap,
        ref.item_ids,
        ref.provider_ids,
    )
    for name in ("features", "item_features"):
        got, want = getattr(fast, name), getattr(ref, name)
        assert got.dtype == want.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)


def test_scores_with_a_nan_sample_are_rejected_from_columns_as_from_dicts(model: ScoringModel) -> None:
    rng = np.random.default_rng(4)
    rec = CandidatesRecord.from_avro(FAST.decode("candidates", FAST.encode("candidates", candidates_value(1, 4, rng))))
    index = ContextIndex(8, {}.get)
    value = score_records(
        [rec],
        lambda i, k: UserState.prior(k, 25.0),
        model,
        1.0,
        rng,
        lambda i: index.claim(0, rec.user_id, rec.batch_id),
    ).values[0]
    items = value["items"]
    with pytest.raises(ValueError, match="read-only"):
        items.values[2, 1] = np.nan
    values = items.values.copy()
    values[2, 1] = np.nan  # samples["unsubscription"] of the third item
    value["items"] = ScoredItems(items.item_ids, items.provider_ids, items.keys, values)
    data = FAST.encode("scores", value)
    errors = []
    for serde in (FAST, REFERENCE):
        with pytest.raises(ValidationError) as info:
            ScoresRecord.from_avro(serde.decode("scores", data))
        errors.append(str(info.value))
    assert errors[0] == errors[1] == "samples[unsubscription] holds a NaN or infinite value at index [2]"
