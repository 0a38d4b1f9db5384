"""Cost pacing in the scorer: a snapshot's ``cost_scale`` multiplies the outcome's calibrated
draws, samples and means exactly, clipped to [0, 1], and changes nothing else; the decision
context keeps the unpaced mean (the cost the plan budgeted), and the scores record the paced one.

The truth is the same model scored without a factor, with the same generator: paced =
clip(factor x unpaced), element for element."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ModelInputError
from streams.learn.context_slots import ContextIndex
from streams.learn.update import DecisionContext
from streams.learn.user_state import UserState
from streams.records import CandidatesRecord, ScoresRecord
from streams.score.batch import score_records
from streams.score.model import ScoringModel
from streams.train.trainer import fit_model
from tests import factories
from tests.factories import SERDE

D = 5


@pytest.fixture(scope="module")
def plain() -> ScoringModel:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, D)).astype(np.float32)
    converted = (rng.random(800) < 1 / (1 + np.exp(-(X[:, 0] - 2.0)))).astype(float)
    unsubscribed = (rng.random(800) < 0.02 + 0.04 * (X[:, 1] > 1)).astype(float)
    value = np.exp(X[:, 2] * 0.3)
    m = fit_model(X, converted, unsubscribed, value, seed=0)
    return ScoringModel.from_snapshot("email", 3, m.to_bytes(name="email", version=3))


def paced(plain: ScoringModel, scale: dict[str, float]) -> ScoringModel:
    return ScoringModel(plain.name, plain.version, plain.model, scale)


@pytest.mark.parametrize("factor", [0.6, 1.35, 40.0], ids=["down", "up", "clipping"])
def test_the_factor_multiplies_the_unsubscription_outcome_exactly_and_clips(plain: ScoringModel, factor: float) -> None:
    X = np.random.default_rng(1).normal(size=(400, D)).astype(np.float32)
    want = plain.score(X, 1.0, np.random.default_rng(7), n_draws=3)
    got = paced(plain, {"unsubscription": factor}).score(X, 1.0, np.random.default_rng(7), n_draws=3)
    expected_draws = np.clip(want.draws["unsubscription"] * factor, 0.0, 1.0)
    np.testing.assert_array_equal(got.draws["unsubscription"], expected_draws)
    np.testing.assert_array_equal(got.samples["unsubscription"], expected_draws[0])
    np.testing.assert_array_equal(got.means["unsubscription"], np.clip(want.means["unsubscription"] * factor, 0, 1))
    np.testing.assert_array_equal(got.budgeted_unsubscription, want.means["unsubscription"])
    np.testing.assert_array_equal(got.budgeted_unsubscription, want.budgeted_unsubscription)
    if factor == 40.0:  # some draws clip, some do not
        clipped = want.draws["unsubscription"] * factor >= 1.0
        assert clipped.any() and (~clipped).any() and np.all(got.draws["unsubscription"][clipped] == 1.0)
    for outcome in ("conversion", "value", "reward"):
        np.testing.assert_array_equal(got.draws[outcome], want.draws[outcome])
        np.testing.assert_array_equal(got.means[outcome], want.means[outcome])
    for outcome, std in want.stds.items():  # logit-scale stds before calibration: left as they are
        np.testing.assert_array_equal(got.stds[outcome], std)


def test_a_conversion_factor_paces_the_reward_built_from_it(plain: ScoringModel) -> None:
    X = np.random.default_rng(2).normal(size=(200, D)).astype(np.float32)
    want = plain.score(X, 0.5, np.random.default_rng(3))
    got = paced(plain, {"conversion": 0.5}).score(X, 0.5, np.random.default_rng(3))
    conversion = np.clip(want.means["conversion"] * 0.5, 0.0, 1.0)
    np.testing.assert_array_equal(got.means["conversion"], conversion)
    np.testing.assert_array_equal(got.means["reward"], conversion * np.maximum(want.means["value"], 0.0))
    np.testing.assert_array_equal(got.means["unsubscription"], want.means["unsubscription"])


@pytest.mark.parametrize(
    "scale",
    [{"unsubscription": 0.0}, {"unsubscription": -1.0}, {"unsubscription": float("nan")}, {"value": 2.0}],
    ids=["zero", "negative", "nan", "value"],
)
def test_a_factor_that_is_not_positive_or_of_no_probability_is_refused(plain: ScoringModel, scale: dict) -> None:
    with pytest.raises(ModelInputError):
        paced(plain, scale)


def _records(n_users: int) -> list[CandidatesRecord]:
    rng = np.random.default_rng(4)
    return [
        CandidatesRecord.from_avro(
            SERDE.decode("candidates", SERDE.encode("candidates", factories.candidates_value(u, 3 + u % 4, rng, d=D)))
        )
        for u in range(n_users)
    ]


@pytest.mark.parametrize("taus", [1.0, "per-user"], ids=["one-tau", "two-taus"])
def test_the_context_keeps_the_unpaced_mean_and_the_scores_the_paced_one(plain: ScoringModel, taus: object) -> None:
    records = _records(6)
    tau = np.array([0.5, 1.5] * 3) if taus == "per-user" else 1.0
    index = ContextIndex(8, {}.get)
    factor = 1.25
    scored = score_records(
        records,
        lambda i, k: UserState.prior(k, 25.0),
        paced(plain, {"unsubscription": factor}),
        tau,
        np.random.default_rng(5),
        lambda i: index.claim(0, records[i].user_id, records[i].batch_id),
    )
    unpaced = plain.score(np.concatenate([r.features for r in records]), 1.0, np.random.default_rng(0)).means
    start = 0
    for rec, value, (_, data) in zip(records, scored.values, scored.contexts, strict=True):
        n = len(rec.item_ids)
        context = DecisionContext.decode(data)
        assert context.p_unsub is not None
        # one tau: the same pass, bit for bit; per-user taus score each tau's pairs in a pass of
        # their own, where float32 matrix products round differently (~1e-7)
        np.testing.assert_allclose(context.p_unsub, unpaced["unsubscription"][start : start + n], rtol=1e-6, atol=0)
        if taus == 1.0:
            np.testing.assert_array_equal(context.p_unsub, unpaced["unsubscription"][start : start + n])
        means = ScoresRecord.from_avro(SERDE.decode("scores", SERDE.encode("scores", value))).means
        np.testing.assert_array_equal(means["unsubscription"], np.clip(factor * context.p_unsub, 0.0, 1.0))
        start += n


def test_the_untrained_prior_has_no_calibrated_cost_and_stores_none() -> None:
    records = _records(2)
    index = ContextIndex(8, {}.get)
    scored = score_records(
        records,
        lambda i, k: UserState.prior(k, 25.0),
        ScoringModel.prior("email", D),
        1.0,
        np.random.default_rng(5),
        lambda i: index.claim(0, records[i].user_id, records[i].batch_id),
    )
    assert all(DecisionContext.decode(data).p_unsub is None for _, data in scored.contexts)
