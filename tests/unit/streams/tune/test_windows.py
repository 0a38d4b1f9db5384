"""The tune-metrics windows without a broker: what one decision or metrics record adds (by hand), the
per-user overlap@K against the health monitor's, redeliveries, and the windows read back from
changelog entries (summed over partitions, tombstones left out, old windows aged out)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from evaluation.health.metrics import overlap_at_k
from streams.tune.job import ArmTotals
from streams.tune.windows import (
    ArmWindow,
    add_to_window,
    already_counted,
    combine,
    decision_increment,
    feedback_increment,
    overlap,
    recent,
    top_k,
)


def decision(user: str, batch: str, props: dict[str, float], version: str = "tau@1:a", **over: Any) -> dict[str, Any]:
    chosen = [{"item_id": i, "provider_id": "p", "propensity": p} for i, p in props.items() if p >= 0.5]
    return {
        "decision_id": f"{batch}/{user}",
        "batch_id": batch,
        "user_id": user,
        "chosen": chosen,
        "allocation": [{"item_id": i, "x": 1.0, "propensity": p} for i, p in props.items()],
        "parameter_version": version,
        "policy": "banditlp",
        **over,
    }


def test_top_k_by_propensity_positive_only_ties_to_the_smaller_id() -> None:
    shares = [{"item_id": i, "x": 0.0, "propensity": p} for i, p in (("c", 0.5), ("a", 0.5), ("b", 0.9), ("d", 0))]
    assert top_k(shares, 2) == ["b", "a"]
    assert top_k(shares, 9) == ["b", "a", "c"]
    assert top_k([{"item_id": "z", "x": 0.7, "propensity": None}], 1) == ["z"]  # x where none is logged


def test_a_decision_adds_its_sends_pairs_variance_and_overlap_by_hand() -> None:
    first = decision_increment(decision("u1", "b1", {"i1": 1.0, "i2": 0.25, "i3": 0.0}), None, 2)
    assert first is not None and first.arm_id == "a"
    # sends: i1 (propensity >= 0.5 in this factory); variance: 0 + 0.25 * 0.75 + 0
    assert first.increment == {
        "decisions": 1.0,
        "sends": 1.0,
        "pairs": 3.0,
        "variance_sum": 0.1875,
        "overlap_sum": 0.0,
        "overlap_users": 0.0,
    }
    assert first.state == {"decision_id": "b1/u1", "arm_id": "a", "top": ["i1", "i2"]}
    # next batch of the same arm: top-2 {i2, i4}; shared {i2}: 1 / min(2, max(2, 2)) = 0.5
    second = decision_increment(decision("u1", "b2", {"i4": 0.9, "i2": 0.6, "i5": 0.1}), first.state, 2)
    assert second is not None and second.increment["overlap_sum"] == 0.5 and second.increment["overlap_users"] == 1
    # the same decision id again (an aborted transaction's copy, then the committed one): skipped
    assert decision_increment(decision("u1", "b2", {"i4": 0.9}), second.state, 2) is None
    # another arm: no overlap counted; the fallback: nothing
    moved = decision_increment(decision("u1", "b3", {"i4": 1.0}, "tau@2:b"), second.state, 2)
    assert moved is not None and moved.arm_id == "b" and moved.increment["overlap_users"] == 0
    assert decision_increment(decision("u1", "b4", {"i4": 1.0}, policy="fallback"), moved.state, 2) is None
    assert decision_increment(decision("u9", "b1", {"i": 1.0}, "default"), None, 1).arm_id == "default"  # type: ignore[union-attr]


def test_per_user_overlap_matches_the_health_monitors_on_one_user() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        k = int(rng.integers(1, 4))
        p0, p1 = rng.choice([0.0, 0.3, 0.6, 1.0], 5), rng.choice([0.0, 0.3, 0.6, 1.0], 5)
        items = np.arange(5)
        ours = overlap(
            top_k([{"item_id": f"i{j}", "x": 0, "propensity": p} for j, p in enumerate(p0)], k),
            top_k([{"item_id": f"i{j}", "x": 0, "propensity": p} for j, p in enumerate(p1)], k),
            k,
        )
        theirs = overlap_at_k((np.zeros(5, np.int64), items, p0), (np.zeros(5, np.int64), items, p1), k)
        assert (ours is None and np.isnan(theirs)) or ours == pytest.approx(theirs)


def test_a_record_at_or_below_its_windows_offset_is_a_redelivery() -> None:
    inc = feedback_increment({"n_feedback": 4, "conversions": 1, "unsubscriptions": 0, "value_sum": 2.5})
    w = add_to_window(None, inc, 7)
    assert w == {"records": 1, "n_feedback": 4, "conversions": 1, "unsubscriptions": 0, "value_sum": 2.5, "offset": 7}
    assert already_counted(w, 7) and already_counted(w, 3) and not already_counted(w, 8)
    assert not already_counted(None, 0)
    w2 = add_to_window(w, inc, 9)
    assert w2["n_feedback"] == 8 and w2["offset"] == 9


def _entry(arm: str, start: float, size: float, **sums: float) -> tuple[bytes, bytes]:
    return json.dumps([arm, [start, start + size - 0.1]]).encode(), json.dumps(sums).encode()


def test_windows_are_summed_over_partitions_and_tables_and_tombstones_left_out() -> None:
    entries = [
        _entry("a", 100.0, 10.0, n_feedback=5, unsubscriptions=1, value_sum=2.0, offset=4),
        _entry("a", 100.0, 10.0, decisions=3, sends=3, overlap_sum=1.5, overlap_users=2, offset=9),  # partition 1
        _entry("a", 100.0, 10.0, decisions=1, sends=2, offset=2),  # partition 3
        _entry("a", 110.0, 10.0, n_feedback=7, value_sum=1.0),
        (json.dumps(["b", [90.0, 99.9]]).encode(), None),  # expired
        (b"not json", b"{}"),
    ]
    windows = combine(entries)
    assert set(windows) == {"a"}
    w0, w1 = windows["a"]
    assert (w0.start_s, w0.size_s, w1.start_s) == (100.0, 10.0, 110.0)
    assert w0.sums["n_feedback"] == 5 and w0.sums["decisions"] == 4 and w0.sums["sends"] == 5
    assert w0.sums["overlap_sum"] == 1.5 and "offset" not in w0.sums
    assert ArmTotals.of_windows(windows["a"]) == ArmTotals(12, 0, 1, 3.0, 1.5, 2)


def test_old_windows_age_out_relative_to_the_newest() -> None:
    def w(arm: str, start: float) -> ArmWindow:
        return ArmWindow(arm, start, start + 9.9, {"n_feedback": 1.0})

    windows = {"a": [w("a", 100), w("a", 110), w("a", 120)], "old": [w("old", 60), w("old", 90)]}
    assert {a: [x.start_s for x in ws] for a, ws in recent(windows, 2).items()} == {"a": [110, 120]}
    assert {a: [x.start_s for x in ws] for a, ws in recent(windows, 4).items()} == {"a": [100, 110, 120], "old": [90]}
    assert recent({}, 3) == {}
