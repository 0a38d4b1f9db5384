"""faust's offset-to-commit rule against ours, on a real faust consumer (built, never started)."""

from __future__ import annotations

from typing import Any

from streams.kafka.faust_commits import commit_whole_runs, install_commit_whole_runs
from tests.factories import ManualClock


def _faust_consumer() -> Any:
    """A real faust consumer (built, never started: no broker is needed to choose offsets)."""
    import faust

    app = faust.App("banditlp-test-commit-runs", broker="kafka://127.0.0.1:1", store="memory://")
    return app.consumer


def _leading_run_end(acked: set[int], committed: int) -> int:
    """Brute force: the first offset at or after ``committed`` that is not acked."""
    o = committed
    while o in acked:
        o += 1
    return o


def test_duplicated_acks_commit_the_whole_run_where_faust_moves_one_offset() -> None:
    from faust.types import TP

    tp = TP("feedback", 0)
    processed = set(range(1200, 1400))
    for patched in (False, True):
        consumer = _faust_consumer()
        if patched:
            commit_whole_runs(consumer)
        consumer._committed_offset[tp] = 1200
        # every offset acked twice: a gap's offsets appended, then the same records acked after a seek back
        consumer._acked[tp] = sorted([*processed, *processed])
        consumer._acked_index[tp] = set(processed)
        new = consumer._new_offset(tp)
        if patched:
            assert new == _leading_run_end(processed, 1200) == 1400
            assert consumer._acked[tp] == [] and consumer._acked_index[tp] == set()
        else:  # faust-streaming's own rule: the run breaks at the first duplicate
            assert new == 1201


def test_patched_rule_keeps_holes_markers_and_gaps() -> None:
    from faust.types import TP

    tp = TP("candidates", 1)
    consumer = _faust_consumer()
    commit_whole_runs(consumer)
    consumer._committed_offset[tp] = 100
    consumer._acked[tp] = [103, 104, 105]  # records 100-102 not acked yet: nothing to commit
    consumer._acked_index[tp] = {103, 104, 105}
    assert consumer._new_offset(tp) is None
    assert consumer._acked[tp] == [103, 104, 105]
    consumer._acked[tp] = [100, 101, 103, 104]  # 102 missing: a transaction marker ends the first run
    consumer._acked_index[tp] = {100, 101, 103, 104}
    assert consumer._new_offset(tp) == 102
    consumer._committed_offset[tp] = 102
    assert consumer._new_offset(tp) == 105  # a single missing offset at the head is passed over
    consumer._committed_offset[tp] = 105
    consumer._acked[tp] = [105, 106, 110]  # the first run commits; gaps wait for a hole to last
    consumer._acked_index[tp] = {105, 106, 110}
    consumer._gap[tp].addi(107, 110)
    assert consumer._new_offset(tp) == 107


def test_an_installed_app_builds_its_consumer_with_the_rule() -> None:
    import faust
    from faust.types import TP

    app = faust.App("banditlp-test-commit-install", broker="kafka://127.0.0.1:1", store="memory://")
    install_commit_whole_runs(app)
    tp = TP("candidates", 0)
    consumer = app.consumer
    consumer._committed_offset[tp] = 10
    consumer._acked[tp] = [10, 10, 11, 11, 12]
    consumer._acked_index[tp] = {10, 11, 12}
    assert consumer._new_offset(tp) == 13


def test_a_gap_fills_a_hole_only_after_the_grace_and_gaps_below_the_commit_are_dropped() -> None:
    from faust.types import TP

    tp = TP("metrics", 0)
    consumer, clock = _faust_consumer(), ManualClock(1000.0)
    rule = commit_whole_runs(consumer, hole_grace_s=60.0, clock=clock)
    consumer._committed_offset[tp] = 107
    consumer._acked[tp] = [110, 111]  # 107-109 never delivered: an aborted transaction's records
    consumer._acked_index[tp] = {110, 111}
    consumer._gap[tp].addi(107, 110)
    consumer._gap[tp].addi(20, 30)  # settled long ago
    assert consumer._new_offset(tp) is None
    clock.now += 59.0
    assert consumer._new_offset(tp) is None
    clock.now += 1.0
    assert consumer._new_offset(tp) == 112
    assert not consumer._gap[tp] and rule.hole_since == {}


def test_a_gap_recorded_before_a_seek_back_does_not_commit_records_being_read_again() -> None:
    """The record at 150 was fetched before a seek back to 100 and arrived after it: faust took
    101-150 for a gap. Records 101-149 are read again after 100; until they are acked the commit
    must not pass them (a crash would skip them)."""
    from faust.types import TP

    tp = TP("feedback", 1)
    for patched in (False, True):
        consumer, clock = _faust_consumer(), ManualClock(1000.0)
        if patched:
            commit_whole_runs(consumer, clock=clock)
        consumer._committed_offset[tp] = 100
        consumer._gap[tp].addi(101, 151)
        consumer._acked[tp] = [100, 150]
        consumer._acked_index[tp] = {100, 150}
        first = consumer._new_offset(tp)
        if not patched:  # faust's rule: past 101-149, none of them processed yet
            assert first == 151
            continue
        assert first == _leading_run_end({100, 150}, 100) == 101
        consumer._committed_offset[tp] = 101
        reread = set(range(101, 150))
        consumer._acked[tp].extend(sorted(reread))
        consumer._acked_index[tp].update(reread)
        clock.now += 5.0
        assert consumer._new_offset(tp) == _leading_run_end({150} | reread, 101) == 151
