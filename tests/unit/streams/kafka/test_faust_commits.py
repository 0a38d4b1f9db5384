"""faust's offset-to-commit rule against ours, on a real faust consumer (built, never started)."""

from __future__ import annotations

from typing import Any

from streams.kafka.faust_commits import commit_whole_runs, install_commit_whole_runs


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
    consumer._acked[tp] = [105, 106, 110]  # a gap 107-109 the fetcher saw (control records) fills the hole
    consumer._acked_index[tp] = {105, 106, 110}
    consumer._gap[tp].addi(107, 110)
    assert consumer._new_offset(tp) == 111
    assert not consumer._gap[tp]


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
