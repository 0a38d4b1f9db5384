"""Which policy serves a user (deterministic, equal shares), the names a worker accepts, the live
states over a table, and the scores record columns a policy replaces (only conversion and reward,
only for its users)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from models.policies.registry import make_policy, policy_names
from models.tuner.assignment import user_positions
from streams.errors import ConfigError, DecodeError
from streams.learn.state_codec import pack
from streams.learn.user_state import feedback_digest
from streams.records import CandidatesRecord
from streams.score.model import ScoreArrays
from streams.score.policy_round import Catalogue, policy_scores
from streams.score.policy_serving import (
    BANDITLP,
    PolicyMix,
    PolicyStates,
    UnknownPolicy,
    check_policies,
    decode_policy_value,
    record_rng,
    serve_policies,
)
from streams.settings import Settings
from tests import factories

torch.set_num_threads(1)
SERDE = Settings().serde()


def test_every_user_is_served_by_one_policy_the_same_in_any_order_and_call() -> None:
    users = [f"u{i}" for i in range(30_000)]
    names = policy_names()
    mix = PolicyMix(names)
    served = mix.assign(users)
    assert served == PolicyMix(tuple(reversed(names))).assign(users) == mix.assign(users)
    # the independent rule: position u in [0, 1) falls in equal intervals of the sorted names
    positions = user_positions(users, "policy")
    want = [sorted(names)[int(np.floor(u * len(names)))] for u in positions]
    assert served == want
    counts = np.array([served.count(n) for n in names])
    # equal shares: a chi-square test of uniformity (30,000 users, 30 cells)
    assert stats.chisquare(counts).pvalue > 1e-3, counts
    assert counts.min() > 0.85 * len(users) / len(names)


def test_one_name_serves_every_user_and_banditlp_alone_is_the_unchanged_path() -> None:
    assert PolicyMix().only_banditlp and PolicyMix().assign(["a", "b"]) == [BANDITLP] * 2
    assert PolicyMix(("linucb",)).assign(["a", "b"]) == ["linucb"] * 2
    assert not PolicyMix(("linucb",)).only_banditlp


def test_names_are_checked_against_the_registry() -> None:
    assert check_policies(["banditlp"]) == ("banditlp",)
    assert check_policies(["linucb", " lints", "linucb"]) == ("linucb", "lints")
    with pytest.raises(UnknownPolicy, match="unknown policy 'nope'; known: banditlp, .*linucb"):
        check_policies(["linucb", "nope"])
    with pytest.raises(UnknownPolicy, match="no policy"):
        check_policies([" ", ""])


def test_states_are_fresh_then_restored_per_partition_and_refuse_another_width() -> None:
    cat = Catalogue(8)
    table: dict[tuple[int, str], bytes] = {}
    states = PolicyStates(cat, seed=5)
    policy = states.get(0, "linucb", 3, lambda: table.get((0, "linucb")))
    assert (policy.n_actions, policy.dim, policy.seed) == (8, 3, 5)
    assert states.get(0, "linucb", 3, lambda: pytest.fail("cached: no read")) is policy
    assert states.get(1, "linucb", 3, lambda: None) is not policy  # another partition, its own state
    policy.update(2, np.ones((8, 3)), 1.0)
    states.mark(0, "linucb", "fb-1")
    [(part, name, snapshot)] = states.dirty()
    assert (part, name) == (0, "linucb") and states.dirty() == []
    table[(0, "linucb")] = snapshot
    states.clear()  # partitions moved: the table is the truth
    restored = states.get(0, "linucb", 3, lambda: table.get((0, "linucb")))
    assert restored is not policy and restored.n_observations == 1
    X = np.random.default_rng(0).normal(size=(8, 3))
    np.testing.assert_array_equal(
        restored.score(X, np.random.default_rng(1)).value, policy.score(X, np.random.default_rng(1)).value
    )
    with pytest.raises(ConfigError, match="8 arms x 3 features, not 8 x 4"):
        states.get(0, "linucb", 4, lambda: None)


def test_a_policy_learns_from_each_feedback_id_once_across_a_restore() -> None:
    """The digests travel in the table value: after a restore, an id absorbed before is refused
    and a new one accepted; the value decodes to the policy's own snapshot bytes."""
    cat = Catalogue(8)
    table: dict[tuple[int, str], bytes] = {}
    states = PolicyStates(cat, seed=5)
    policy = states.get(0, "lints", 3, lambda: None)
    assert states.first_time(0, "lints", "fb-1")
    policy.update(1, np.ones((8, 3)), 1.0)
    states.mark(0, "lints", "fb-1")
    assert not states.first_time(0, "lints", "fb-1") and states.first_time(0, "lints", "fb-2")
    [(_, _, value)] = states.dirty()
    snapshot, seen = decode_policy_value(value)
    assert seen.tolist() == [int(feedback_digest("fb-1"))]
    stored = type(policy).from_bytes(snapshot).snapshot_arrays()  # the bytes also hold a write time
    for key, array in policy.snapshot_arrays().items():
        np.testing.assert_array_equal(stored[key], array)
    table[(0, "lints")] = value
    states.clear()
    states.get(0, "lints", 3, lambda: table.get((0, "lints")))
    assert not states.first_time(0, "lints", "fb-1") and states.first_time(0, "lints", "fb-2")
    states.get(1, "lints", 3, lambda: None)
    assert states.first_time(1, "lints", "fb-1")  # another partition's policy has its own digests
    with pytest.raises(DecodeError):
        decode_policy_value(pack({"A": np.zeros(2)}))


def neural_like(n_pairs: int, n_draws: int, rng: np.random.Generator) -> ScoreArrays:
    """Scores of every outcome as the neural model's would be (shapes only matter here)."""
    draws = {o: rng.random((n_draws, n_pairs)) for o in ("conversion", "unsubscription", "value")}
    draws["reward"] = draws["conversion"] * draws["value"]
    means = {o: rng.random(n_pairs) for o in draws}
    return ScoreArrays(
        {o: d[0].copy() for o, d in draws.items()},
        draws,
        means,
        {o: rng.random(n_pairs) for o in draws},
        rng.random(n_pairs),
    )


def test_serve_policies_replaces_conversion_and_reward_of_the_policys_users_only() -> None:
    rng = np.random.default_rng(3)
    records = [
        CandidatesRecord.from_avro(
            SERDE.decode("candidates", SERDE.encode("candidates", factories.candidates_value(u, n, rng, d=4, k=2)))
        )
        for u, n in enumerate([3, 5, 2])
    ]
    offsets = np.array([0, 3, 8, 10])
    out = neural_like(10, 2, rng)
    before = {
        part: {o: v.copy() for o, v in getattr(out, part).items()} for part in ("samples", "draws", "means", "stds")
    }
    cat = Catalogue(8)
    policy = make_policy("lints", 8, 4, seed=1)
    served = [BANDITLP, "lints", BANDITLP]
    serve_policies(out, records, served, offsets, lambda u, name: policy, cat, seed=9, n_draws=2)

    rec = records[1]
    want = policy_scores(policy, rec.features, cat.arms(rec.item_ids), record_rng(9, rec.batch_id, rec.user_id), 2)
    mine, others = slice(3, 8), np.r_[0:3, 8:10]
    np.testing.assert_array_equal(out.draws["conversion"][:, mine], want.draws)
    np.testing.assert_array_equal(out.samples["conversion"][mine], want.draws[0])
    np.testing.assert_array_equal(out.means["conversion"][mine], want.mean)
    np.testing.assert_array_equal(out.stds["conversion"][mine], want.std)
    np.testing.assert_allclose(
        out.draws["reward"][:, mine], want.draws * np.maximum(before["draws"]["value"][:, mine], 0.0), rtol=0, atol=0
    )
    np.testing.assert_array_equal(out.samples["reward"][mine], out.draws["reward"][0, mine])
    np.testing.assert_array_equal(out.means["reward"][mine], want.mean * before["means"]["value"][mine])
    for part, values in before.items():
        for outcome, v in values.items():
            got = getattr(out, part)[outcome]
            np.testing.assert_array_equal(got[..., others], v[..., others], err_msg=f"{part}[{outcome}] of others")
            if outcome in ("unsubscription", "value"):
                np.testing.assert_array_equal(got, v, err_msg=f"{part}[{outcome}]")


def test_a_users_draws_depend_on_seed_batch_and_user_only() -> None:
    a = record_rng(1, "b1", "u1").random(3)
    np.testing.assert_array_equal(a, record_rng(1, "b1", "u1").random(3))
    for other in (record_rng(2, "b1", "u1"), record_rng(1, "b2", "u1"), record_rng(1, "b1", "u2")):
        assert not np.array_equal(a, other.random(3))


def test_the_worker_command_takes_policy_names_and_refuses_an_unknown_one_with_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    import streams.processors.app
    from streams.cli.app import app

    seen: list[Any] = []
    monkeypatch.setattr(streams.processors.app, "run_worker", lambda cfg, *args, **kwargs: seen.append(cfg))
    runner = CliRunner()
    r = runner.invoke(app, ["worker", "processors", "--policy", "linucb,nope"])
    assert r.exit_code == 2 and not seen
    assert "unknown policy 'nope'" in " ".join(r.output.split()) and "linucb" in r.output
    r = runner.invoke(app, ["worker", "processors", "--policy", "linucb,banditlp", "--policy-actions", "8"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["worker", "processors"], env={"BANDITLP_POLICY": "mets"})
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["worker", "processors"])
    assert r.exit_code == 0, r.output
    assert [(cfg.policies, cfg.policy_actions) for cfg in seen] == [
        (("linucb", "banditlp"), 8),
        (("mets",), 64),
        (("banditlp",), 64),
    ]
