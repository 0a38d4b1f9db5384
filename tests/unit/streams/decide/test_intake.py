"""What the allocator reads of ``candidates`` (``streams.decide.intake``), without a broker: each
record's ids filed in its batch's window and its offset held, bad ones dead-lettered, those of a
decided batch skipped; late scores of a user the fallback decided still dead-lettered."""

from __future__ import annotations

import numpy as np

from streams.decide.config import AllocatorWorkerConfig
from streams.decide.intake import Intake, WorkerStats
from streams.decide.window import RawRecord
from tests.factories import SERDE, candidates_value, opened_value, scores_value

CFG = AllocatorWorkerConfig.for_prefix("t-")
CANDIDATES, SCORES, CONTROL = CFG.topics("candidates"), CFG.topics("scores"), CFG.topics("batch-control")


def intake() -> Intake:
    return Intake(CFG, SERDE, lambda: 0.0, WorkerStats())


def record(topic: str, offset: int, value: bytes, partition: int = 0) -> RawRecord:
    return RawRecord(topic, partition, offset, b"k", value)


def candidates(u: int, batch: str = "b1", **changes: object) -> bytes:
    return SERDE.encode("candidates", candidates_value(u, 4, np.random.default_rng(u), batch_id=batch, **changes))


def reasons(i: Intake) -> list[str]:
    return [SERDE.decode("dead-letters", v)["reason"] for _, v in i.pending.dead_letters]


def test_a_candidates_record_lists_its_user_and_holds_its_offset_until_the_batch_is_decided() -> None:
    i = intake()
    i.on_record(record(CONTROL, 0, SERDE.encode("batch-control", opened_value("b1", 2))))
    i.on_record(record(CANDIDATES, 7, candidates(1), partition=2))
    i.on_record(record(CANDIDATES, 8, candidates(1), partition=2))  # the same user again: the first kept
    window = i.windows["b1"]
    assert list(window.listings) == ["u1"] and window.listings["u1"].item_ids == tuple(
        f"i{(1 + j) % 11}" for j in range(4)
    )
    assert window.listings["u1"].user_cap == 1 and window.unscored() == ["u1"]
    assert i.tracker.committable()[(CANDIDATES, 2)] == (7, 9) and i.stats.skipped_duplicates == 1
    i.decided_batch(window)
    i.tracker.release("b1")
    assert i.tracker.committable()[(CANDIDATES, 2)] == (9, 9)
    i.on_record(record(CANDIDATES, 9, candidates(5), partition=2))  # read after its batch was decided
    assert i.stats.skipped_candidates == 1 and i.pending.dead_letters == [] and "b1" not in i.windows


def test_bad_candidates_records_are_dead_lettered_with_their_reason() -> None:
    i = intake()
    i.on_record(record(CANDIDATES, 0, b"not avro"))
    i.on_record(record(CANDIDATES, 1, candidates(2, user_cap=-1)))
    dup = candidates_value(3, 2, np.random.default_rng(0), batch_id="b1")
    dup["candidates"][1]["item_id"] = dup["candidates"][0]["item_id"]
    i.on_record(record(CANDIDATES, 2, SERDE.encode("candidates", dup)))
    i.on_record(record(CANDIDATES, 3, candidates(4, candidates=[])))
    got = reasons(i)
    assert len(got) == 4 and "magic byte" in got[0] and "user_cap -1 is negative" in got[1]
    assert "duplicate item_id" in got[2] and "has no candidates" in got[3]
    assert all(SERDE.decode("dead-letters", v)["consumer"] == "allocator" for _, v in i.pending.dead_letters)
    assert i.windows == {}  # nothing filed


def test_late_scores_of_a_user_the_fallback_decided_are_dead_lettered() -> None:
    i = intake()
    i.on_record(record(CONTROL, 0, SERDE.encode("batch-control", opened_value("b1", 2))))
    i.on_record(record(CANDIDATES, 0, candidates(1)))
    rng = np.random.default_rng(1)
    i.on_record(record(SCORES, 0, SERDE.encode("scores", scores_value("b1", 0, rng))))
    i.decided_batch(i.windows["b1"])  # user-00000 by the LP, u1 by the fallback
    i.on_record(record(SCORES, 1, SERDE.encode("scores", scores_value("b1", 0, rng))))  # a scorer's replay
    late = scores_value("b1", 0, rng)
    late["user_id"] = "u1"
    i.on_record(record(SCORES, 2, SERDE.encode("scores", late)))
    assert i.stats.skipped_duplicates == 1
    assert reasons(i) == ["scores for decided batch b1; user u1 was not scored before it was decided"]


def test_candidates_of_a_batch_never_opened_are_dead_lettered_with_its_scores() -> None:
    i = intake()
    i.on_record(record(CANDIDATES, 5, candidates(1, batch="ghost")))
    i.expire_unknown(CFG.unknown_batch_timeout_s)
    assert reasons(i) == [f"unknown batch ghost: no OPENED within {CFG.unknown_batch_timeout_s:g} s"]
    assert i.tracker.committable()[(CANDIDATES, 0)] == (6, 6)
