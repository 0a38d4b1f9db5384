"""The allocator's pure bookkeeping: batch windows and committable offsets (no Kafka)."""

from __future__ import annotations

import numpy as np
import pytest

from streams.decide.window import BatchWindow, OffsetTracker
from streams.records import BatchControlRecord
from tests.factories import control_record as control
from tests.factories import raw_record as raw
from tests.factories import scores_record as scores


def test_window_closes_when_every_expected_user_is_in() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.open(control(expected=2))
    assert w.add(scores("u1")) == "added"
    w.close(control("CLOSED", expected=2), now=1.0)
    assert not w.is_ready(now=1.0)  # one of two users
    assert w.add(scores("u2")) == "added"
    assert w.is_ready(now=1.0) and w.n_missing == 0


def test_window_closes_on_timeout_after_closed_and_counts_missing() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.open(control(expected=3, timeout_ms=5_000))
    w.add(scores("u1"))
    assert not w.is_ready(now=100.0)  # never CLOSED: the timeout runs from CLOSED only
    w.close(control("CLOSED", expected=3), now=100.0)
    assert not w.is_ready(now=104.999)
    assert w.is_ready(now=105.0)
    assert w.n_missing == 2


def test_missing_users_are_named_when_the_producer_lists_them() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.open(control(expected=3))
    w.add(scores("u2"))
    w.close(control("CLOSED", expected=3, user_ids=("u3", "u2", "u1")), now=0.0)
    assert w.is_ready(now=5.0) and w.n_missing == 2
    assert w.missing_users() == ["u1", "u3"] and w.missing_users(limit=1) == ["u1"]
    counted = BatchWindow("b2", first_seen=0.0)
    counted.open(control(expected=3))
    assert counted.missing_users() == [] and counted.n_missing == 3  # a count only: no names to give


def test_a_batch_never_closed_is_decided_after_the_open_timeout() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.open(control(expected=3), now=10.0)
    w.add(scores("u1"))
    assert not w.is_ready(now=1e9)  # no open timeout given: held until CLOSED
    assert not w.is_ready(now=69.999, open_timeout_s=60.0)
    assert w.is_ready(now=70.0, open_timeout_s=60.0) and w.n_missing == 2


def test_batch_control_user_ids_must_match_the_count() -> None:
    from streams.errors import ValidationError

    value = {**control(expected=2).to_avro(), "user_ids": ["u1", "u2"]}
    assert BatchControlRecord.from_avro(value).user_ids == ("u1", "u2")
    with pytest.raises(ValidationError, match="distinct users"):
        BatchControlRecord.from_avro({**value, "user_ids": ["u1", "u1"]})


def test_window_is_not_ready_without_opened_even_when_closed() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.add(scores("u1"), raw(1))
    w.close(control("CLOSED", expected=1), now=0.0, raw=raw(2, "batch-control"))
    assert not w.is_ready(now=1e9)
    assert w.is_unknown_expired(now=10.0, limit_s=10.0) and not w.is_unknown_expired(now=9.9, limit_s=10.0)
    assert set(w.unopened_raw) == {"u1", "#CLOSED"}  # both dead-lettered if it never opens


def test_duplicate_user_keeps_the_first_record() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    first, second = scores("u1", seed=1), scores("u1", seed=2)
    assert w.add(first) == "added"
    assert w.add(second) == "duplicate"
    assert w.scores["u1"] is first


def test_repeated_control_records_are_ignored() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    assert w.open(control(expected=2))[0]
    assert not w.open(control(expected=9))[0]
    assert w.close(control("CLOSED", expected=2), now=1.0)
    assert not w.close(control("CLOSED", expected=2), now=50.0)
    assert w.closed_at == 1.0 and w.opened is not None and w.opened.expected_users == 2


def test_scores_missing_a_needed_outcome_are_rejected_before_and_after_opened() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    early = raw(3)
    assert w.add(scores("u1", outcomes=("reward",)), early) == "added"  # unknown needs before OPENED
    applied, rejected = w.open(control())
    assert applied and [r for r, _ in rejected] == [early] and "unsubscription" in rejected[0][1]
    assert "u1" not in w.scores
    assert "unsubscription" in w.add(scores("u2", outcomes=("reward",)))
    assert w.unopened_raw == {}  # raw bytes are not kept once the batch is open


def test_committable_offset_never_passes_a_held_record() -> None:
    t = OffsetTracker()
    tp = ("scores", 0)
    t.hold("b1", tp, 10)
    t.hold("b2", tp, 11)
    t.hold("b1", tp, 12)
    t.seen(tp, 13)  # e.g. a dead-lettered record
    assert t.committable()[tp] == (10, 14)
    t.release("b1")
    assert t.committable()[tp] == (11, 14)
    t.release("b2")
    assert t.committable()[tp] == (14, 14)


def test_offsets_are_tracked_per_partition_and_hold_keeps_the_smallest() -> None:
    t = OffsetTracker()
    t.hold("b1", ("scores", 1), 7)
    t.hold("b1", ("scores", 1), 5)  # out of order within a batch: the smallest wins
    t.seen(("scores", 2), 40)
    t.hold("b1", ("batch-control", 0), 0)
    assert t.committable() == {("scores", 1): (5, 8), ("scores", 2): (41, 41), ("batch-control", 0): (0, 1)}


@pytest.mark.parametrize("seed", range(5))
def test_committable_is_the_minimum_over_live_holds_for_random_histories(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = OffsetTracker()
    tp = ("scores", 0)
    live: dict[str, list[int]] = {}
    for off in range(300):
        batch = f"b{rng.integers(6)}"
        if rng.random() < 0.8:
            t.hold(batch, tp, off)
            live.setdefault(batch, []).append(off)
        else:
            t.seen(tp, off)
        if rng.random() < 0.1 and live:
            gone = str(rng.choice(sorted(live)))
            t.release(gone)
            live.pop(gone)
        expect = min((min(v) for v in live.values()), default=off + 1)
        assert t.committable()[tp] == (expect, off + 1)


# -- the batch's users: listed by candidates, named by batch-control, scored ----------------------


def listing(user: str, batch: str = "b1", n: int = 2):
    from streams.decide.listing import CandidateListing

    return CandidateListing(batch, user, None, tuple(f"i{j}" for j in range(n)), tuple(f"p{j}" for j in range(n)))


def test_the_unscored_users_are_the_listed_and_named_ones_without_scores() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.open(control(expected=4))
    assert w.list_user(listing("u3")) == "added" and w.list_user(listing("u1")) == "added"
    assert w.list_user(listing("u1", n=5)) == "duplicate" and len(w.listings["u1"].item_ids) == 2  # the first kept
    w.add(scores("u1"))
    w.add(scores("u9"))  # scored without a listing read (yet): a user of the batch all the same
    assert w.unscored() == ["u3"]
    w.close(control("CLOSED", expected=4, user_ids=("u1", "u2", "u3", "u9")), now=0.0)
    assert w.named_users() == ("u1", "u2", "u3", "u9")
    assert w.unscored() == ["u2", "u3"]  # u2: named by CLOSED, no candidates read
    assert w.n_missing == 2 and not w.is_ready(now=1.0) and w.is_ready(now=5.0)


def test_a_listing_before_opened_is_kept_to_be_dead_lettered_and_a_listing_never_makes_a_window_ready() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    early = raw(4, "candidates")
    assert w.list_user(listing("u1"), early) == "added"
    assert w.unopened_raw == {"#candidates/u1": early}
    w.open(control(expected=1))
    assert w.unopened_raw == {} and w.unscored() == ["u1"]
    w.close(control("CLOSED", expected=1), now=0.0)
    assert not w.is_ready(now=4.9)  # listed is not scored: the window waits for the timeout
    w.add(scores("u1"))
    assert w.is_ready(now=0.0) and w.unscored() == []
