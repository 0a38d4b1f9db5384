"""The scorer's per-user τ: a user served an arm at τ = 0 gets samples equal to its means (the
global model's and its random effect's), a user at τ > 0 does not; the means do not depend on τ;
one τ for all users as an array gives the scalar path's numbers; each scores record names its arm."""

from __future__ import annotations

import numpy as np
import pytest

from models.random_effects import RandomEffectConfig
from streams.learn.context_slots import ContextIndex
from streams.learn.state_codec import unpack
from streams.learn.user_state import UserState
from streams.records import CandidatesRecord
from streams.score.batch import ScoredBatch, score_records
from streams.score.model import ScoringModel
from tests import factories
from tests.factories import SERDE

D, K = 7, 3


def run(tau: float | np.ndarray, n_draws: int = 2, versions: list[str] | None = None) -> ScoredBatch:
    rng = np.random.default_rng(4)
    records = [
        CandidatesRecord.from_avro(
            SERDE.decode("candidates", SERDE.encode("candidates", factories.candidates_value(u, n, rng, d=D, k=K)))
        )
        for u, n in enumerate([5, 1, 8, 3, 4, 6])
    ]
    A, b = RandomEffectConfig(K, 25.0).prior()
    b = b + 0.3  # a user with some feedback: its effect's mean is not zero

    def user_state(i: int, k: int) -> UserState:
        return UserState(A, b, np.zeros(0, "<u8"), 0)

    table: dict[bytes, bytes] = {}
    index = ContextIndex(8, table.get)
    return score_records(
        records,
        user_state,
        ScoringModel.prior("m", D, seed=1),
        tau,
        np.random.default_rng(9),
        lambda i: index.claim(0, records[i].user_id, records[i].batch_id),
        n_draws=n_draws,
        parameter_versions=versions,
    )


def columns(scored: ScoredBatch, u: int, part: str) -> dict[str, np.ndarray]:
    items = list(scored.values[u]["items"])
    return {o: np.array([it[part][o] for it in items]) for o in ("conversion", "unsubscription", "value", "reward")}


def test_users_at_tau_zero_are_scored_at_their_means_and_the_others_are_not() -> None:
    taus = np.array([0.0, 1.5, 0.0, 0.7, 1.5, 0.0])
    versions = [f"exp@3:{'greedy' if t == 0 else t}" for t in taus]
    mixed = run(taus, versions=versions)
    single = run(1.0)
    for u, t in enumerate(taus):
        samples, means = columns(mixed, u, "samples"), columns(mixed, u, "means")
        for outcome in means:
            np.testing.assert_allclose(means[outcome], columns(single, u, "means")[outcome], rtol=0, atol=1e-12)
            if t == 0:
                np.testing.assert_array_equal(samples[outcome], means[outcome])
                for draw in mixed.values[u]["items"]:
                    assert all(d[outcome] == draw["means"][outcome] for d in draw["draws"])
        if t > 0:
            assert not np.allclose(samples["conversion"], means["conversion"])
        assert mixed.values[u]["tau"] == t and mixed.values[u]["parameter_version"] == versions[u]
        assert unpack(mixed.contexts[u][1])[1]["parameter_version"] == versions[u]


def test_one_tau_for_every_user_as_an_array_is_the_scalar_path() -> None:
    a, b = run(0.8), run(np.full(6, 0.8))
    for u in range(6):
        for part in ("samples", "means", "stds"):
            for outcome, values in columns(a, u, part).items():
                np.testing.assert_array_equal(values, columns(b, u, part)[outcome])
        assert a.values[u]["parameter_version"] == "default" == b.values[u]["parameter_version"]


@pytest.mark.parametrize("n_draws", [1, 3])
def test_the_draws_count_holds_with_mixed_taus(n_draws: int) -> None:
    scored = run(np.array([0.0, 1.0, 0.0, 1.0, 2.0, 0.0]), n_draws=n_draws)
    assert all(len(it["draws"]) == n_draws - 1 for v in scored.values for it in v["items"])
