"""The auditor's closed-form replay of the users table against a brute-force learner.

The brute force is a learner written out by hand: records delivered in a random order with
redeliveries, each absorbed once per feedback id by a sequential rank-1 update
(``models.random_effects.update``), the digests of the absorbed ids kept in a bounded window.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.random_effects import update
from streams.learn.user_state import feedback_digest
from streams.soak.audit_posterior import FeedbackFact, StoredHead, check_head, closed_form, digest

LAMBDA, S2, K = 25.0, 0.25, 4


def facts(rng: np.random.Generator, n: int, certain: bool = True, versions: int = 1) -> list[FeedbackFact]:
    return [
        FeedbackFact(
            f"b{i}/u0#i{rng.integers(20)}",
            rng.normal(size=K),
            float(rng.random() < 0.3),
            tuple(float(p) for p in rng.random(versions)),
            certain,
        )
        for i in range(n)
    ]


def learner(
    fs: list[FeedbackFact], rng: np.random.Generator, window: int = 256, version: int = 0, shuffle: bool = True
) -> StoredHead:
    """Brute force: a delivery with redeliveries (shuffled, or each right after the first, as
    Kafka redelivers the records after the last commit), absorbed once per id, in sequence."""
    deliveries = [f for f in fs for _ in range(int(rng.integers(1, 4)))]
    if shuffle:
        rng.shuffle(deliveries)
    A, b = LAMBDA * np.eye(K), np.zeros(K)
    seen: list[int] = []
    for f in deliveries:
        d = digest(f.feedback_id)
        if d in seen:
            continue
        A, b = update(A, b, f.z[None, :], np.array([f.y - f.p_options[version]]), S2)
        seen = (seen + [d])[-window:]
    return StoredHead(A, b, frozenset(seen), len({f.feedback_id for f in fs}))


def test_digest_is_the_tables() -> None:
    for fid in ("sim-0/u1#i3", "x", "b/ü#i"):
        assert digest(fid) == int(feedback_digest(fid))


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_closed_form_equals_sequential_updates(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    z, r = rng.normal(size=(n, K)), rng.normal(size=n)
    A, b = LAMBDA * np.eye(K), np.zeros(K)
    for i in rng.permutation(n):
        A, b = update(A, b, z[i : i + 1], r[i : i + 1], S2)
    A2, b2 = closed_form(z, r, LAMBDA, S2)
    np.testing.assert_allclose(A2, A, rtol=1e-10)
    np.testing.assert_allclose(b2, b, rtol=1e-9, atol=1e-12)


def test_a_correct_head_matches() -> None:
    rng = np.random.default_rng(0)
    fs = facts(rng, 30)
    v = check_head(learner(fs, rng), fs, LAMBDA, S2, 256)
    assert v.ok and v.absorbed == 30, v


def test_any_version_that_scored_the_batch_is_accepted() -> None:
    rng = np.random.default_rng(1)
    fs = facts(rng, 16, versions=2)  # 2^16 combinations, the learner's is the last one
    assert check_head(learner(fs, rng, version=1), fs, LAMBDA, S2, 256).ok


def test_an_overwritten_version_is_tried_last() -> None:
    rng = np.random.default_rng(9)
    fs = facts(rng, 6, versions=2)
    head = learner(fs, rng, version=1)
    split = [FeedbackFact(f.feedback_id, f.z, f.y, f.p_options[:1], True, f.p_options[1:]) for f in fs]
    assert check_head(head, split, LAMBDA, S2, 256).ok
    alone = [FeedbackFact(f.feedback_id, f.z, f.y, f.p_options[:1], True) for f in fs]
    assert not check_head(head, alone, LAMBDA, S2, 256).ok


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda h, fs: StoredHead(h.A, h.b + 1e-3, h.seen, h.n), "b differs"),
        (lambda h, fs: StoredHead(h.A * 1.001, h.b, h.seen, h.n), "A differs"),
        (lambda h, fs: StoredHead(h.A, h.b, h.seen, h.n + 1), "count"),
        (lambda h, fs: StoredHead(h.A, h.b, h.seen | {digest("nowhere")}, h.n), "does not hold"),
    ],
)
def test_a_wrong_head_is_caught(break_it, reason: str) -> None:
    rng = np.random.default_rng(2)
    fs = facts(rng, 12)
    v = check_head(break_it(learner(fs, rng), fs), fs, LAMBDA, S2, 256)
    assert not v.ok and reason in v.reason, v


def test_a_missed_certain_record_is_caught() -> None:
    rng = np.random.default_rng(3)
    fs = facts(rng, 12)
    head = learner(fs[:-1], rng)  # the learner lost the last record
    v = check_head(head, fs, LAMBDA, S2, 256)
    assert not v.ok and "not absorbed" in v.reason
    assert not check_head(None, fs, LAMBDA, S2, 256).ok  # no head at all


def test_ambiguous_records_may_be_absorbed_or_not() -> None:
    rng = np.random.default_rng(4)
    sure, late = facts(rng, 8), facts(rng, 3, certain=False)
    late = [FeedbackFact(f"late{i}", f.z, f.y, f.p_options, False) for i, f in enumerate(late)]
    both = sure + late
    assert check_head(learner(sure, rng), both, LAMBDA, S2, 256).ok
    v = check_head(learner(sure + late[:2], rng), both, LAMBDA, S2, 256)
    assert v.ok and v.ambiguous_absorbed == 2
    assert check_head(None, late, LAMBDA, S2, 256).ok  # a user only ever decided late: no head is right


def test_a_record_never_scored_must_not_be_absorbed() -> None:
    rng = np.random.default_rng(5)
    fs = facts(rng, 5)
    ghost = FeedbackFact("ghost", rng.normal(size=K), 1.0, (0.1,), False)
    head = learner(fs + [ghost], rng)
    unscored = FeedbackFact("ghost", ghost.z, ghost.y, (), False)
    v = check_head(head, fs + [unscored], LAMBDA, S2, 256)
    assert not v.ok and "never scored" in v.reason


def test_a_window_that_overflowed() -> None:
    rng = np.random.default_rng(6)
    fs = facts(rng, 40)
    head = learner(fs, rng, window=16, shuffle=False)
    assert len(head.seen) == 16 and head.n == 40
    assert check_head(head, fs, LAMBDA, S2, 16).ok


def test_a_record_absorbed_twice_is_caught() -> None:
    """A redelivery older than the learner's window of ids is absorbed again: A shows it."""
    rng = np.random.default_rng(7)
    fs = facts(rng, 40)
    head = learner(fs + fs[:1], rng, window=16, shuffle=False)  # the first record again, 40 records later
    head = StoredHead(head.A, head.b, head.seen, 40)
    assert not check_head(head, fs, LAMBDA, S2, 16).ok


def test_float32_noise_in_p_passes_and_a_wrong_p_does_not() -> None:
    """p from a float32 network differs in its last bits between batches of rows: within
    tolerance; a p off by 0.002 on one record (another model version) is not."""
    rng = np.random.default_rng(8)
    fs = facts(rng, 20)
    head = learner(fs, rng)
    noisy = [FeedbackFact(f.feedback_id, f.z, f.y, (f.p_options[0] * (1 + 1e-7),), f.certain) for f in fs]
    assert check_head(head, noisy, LAMBDA, S2, 256).ok
    off = [*fs[:-1], FeedbackFact(fs[-1].feedback_id, fs[-1].z, fs[-1].y, (fs[-1].p_options[0] + 0.002,), True)]
    v = check_head(head, off, LAMBDA, S2, 256)
    assert not v.ok and v.b_error > 1.0
    assert f"explained by {fs[-1].feedback_id} alone, had the learner used p = {fs[-1].p_options[0]:.6g}" in v.reason
