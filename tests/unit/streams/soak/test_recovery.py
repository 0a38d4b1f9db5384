"""The recovery tracker: a fault recovers when the backlog at its moment is committed and a new decision is read."""

from __future__ import annotations

import numpy as np

from streams.soak.recovery import RecoveryTracker

A = ("g", "candidates", 0)
B = ("g", "candidates", 1)


def test_needs_the_backlog_drained_and_a_new_decision() -> None:
    t = RecoveryTracker(bound_s=100.0)
    t.fault("kill x", 10.0, {A: 50, B: 0})  # B was empty at the fault: nothing to drain there
    t.observe(11.0, {A: 49}, last_decision_at=10.5)  # not drained
    t.observe(12.0, {A: 50}, last_decision_at=9.0)  # drained, but the last decision is older than the fault
    assert t.recovered == [] and len(t.pending) == 1
    t.observe(13.5, {A: 60}, last_decision_at=13.0)
    assert t.recovered == [("kill x", 10.0, 3.5)] and t.pending == []


def test_overlapping_faults_and_the_bound() -> None:
    t = RecoveryTracker(bound_s=5.0)
    t.fault("first", 0.0, {A: 10})
    t.fault("second", 1.0, {A: 20})
    t.observe(2.0, {A: 10}, last_decision_at=1.5)  # the first is drained, the second not
    assert [r[0] for r in t.recovered] == ["first"]
    t.expire(6.5)
    assert t.unrecovered == [("second", 1.0)] and t.pending == []


def test_summary_is_numpy_percentiles() -> None:
    t = RecoveryTracker(bound_s=100.0)
    times = [1.0, 2.5, 3.0, 10.0, 40.0]
    for i, r in enumerate(times):
        t.fault(f"f{i}", float(i), {})
        t.observe(i + r, {}, last_decision_at=i + r)
    s = t.summary()
    assert s == {"p50": round(float(np.percentile(times, 50)), 2), "p99": round(float(np.percentile(times, 99)), 2)}
    assert RecoveryTracker(1.0).summary() == {"p50": None, "p99": None}
