"""The auditor's decision counts on hand-built runs."""

from __future__ import annotations

from streams.soak.audit import DecisionRecord, audit_decisions, missing


def d(batch: str, user: str, policy: str = "banditlp") -> DecisionRecord:
    return DecisionRecord(batch, user, policy)


def test_counts() -> None:
    closed = {"b0": frozenset({"u0", "u1", "u2"}), "b1": frozenset()}  # b1's CLOSED names nobody
    candidates = [("b0", "u0"), ("b0", "u1"), ("b1", "u5"), ("b1", "u6"), ("b2", "u0")]  # b2 never closed
    decisions = [
        d("b0", "u0"),
        d("b0", "u0"),  # a duplicate
        d("b0", "u0"),  # and another
        d("b0", "u1", "fallback"),
        d("b1", "u5"),
        d("b1", "u9"),  # nobody published u9 for b1
    ]
    a = audit_decisions({"b0", "b1", "b2"}, closed, candidates, decisions)
    assert a.decisions == 6
    assert a.duplicated == 2
    assert a.fallback_decisions == 1
    # b0/u2 (named by CLOSED, never published as a candidate) and b1/u6 (a candidate); b2 owes nothing
    assert a.undecided_users == 2
    assert set(a.undecided_examples) == {("b0", "u2"), ("b1", "u6")}
    assert a.unexpected == 1
    assert (a.closed_batches, a.open_batches) == (2, 1)


def test_clean_run() -> None:
    closed = {"b0": frozenset({"u0", "u1"})}
    a = audit_decisions({"b0"}, closed, [("b0", "u0"), ("b0", "u1")], [d("b0", "u0"), d("b0", "u1")])
    assert (a.decisions, a.duplicated, a.undecided_users, a.unexpected, a.open_batches) == (2, 0, 0, 0, 0)


def test_missing() -> None:
    assert missing([("b", "u0"), ("b", "u1"), ("b", "u1")], {("b", "u0")}) == 1
    assert missing(["f1", "f2"], ["f1", "f2", "f3"]) == 0
