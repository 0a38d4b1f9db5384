"""The auditor's decision checks, pure: per (batch, user), exactly one decision, none missing.

Its inputs are plain records the auditor read itself (read_committed) from ``batch-control``,
``candidates`` and ``decisions``; nothing here asks the workers what they did. What a batch
owes is judged from what its producer published: the users named by its CLOSED record and the
users it published candidates for. Batches never CLOSED (the run stopped mid-batch) owe
nothing yet and are only counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

Key = tuple[str, str]  # (batch_id, user_id)


@dataclass(frozen=True)
class DecisionRecord:
    """One committed ``decisions`` record as the auditor needs it."""

    batch_id: str
    user_id: str
    policy: str


@dataclass(frozen=True)
class DecisionAudit:
    """Counts over every (batch, user) of the run.

    Attributes:
        decisions: committed decision records.
        duplicated: records beyond the first for a (batch, user): ``sum(n - 1)``.
        undecided_users: (batch, user) of a CLOSED batch, published as a candidate or named by
            the CLOSED record, with no decision at all.
        fallback_decisions: decision records whose policy is ``"fallback"``.
        unexpected: decisions of a (batch, user) the producer never published (a bug or garbage).
        closed_batches, open_batches: batches with a CLOSED record, and OPENED ones without.
        undecided_examples: up to 10 undecided (batch, user), for the report.
    """

    decisions: int
    duplicated: int
    undecided_users: int
    fallback_decisions: int
    unexpected: int
    closed_batches: int
    open_batches: int
    undecided_examples: tuple[Key, ...] = ()


def audit_decisions(
    opened: Iterable[str],
    closed: dict[str, frozenset[str]],
    candidates: Iterable[Key],
    decisions: Iterable[DecisionRecord],
) -> DecisionAudit:
    """Count the decisions of a run.

    Args:
        opened: batch ids with an OPENED record.
        closed: batch id -> the user ids its CLOSED record names (empty when it names none).
        candidates: (batch, user) of every candidates record (repeats allowed).
        decisions: every committed decision record.
    """
    published = set(candidates)
    owed = {(b, u) for b, users in closed.items() for u in users} | {k for k in published if k[0] in closed}
    counts: Counter[Key] = Counter()
    fallback = 0
    for d in decisions:
        counts[(d.batch_id, d.user_id)] += 1
        fallback += d.policy == "fallback"
    undecided = sorted(owed - counts.keys())
    known = owed | published
    return DecisionAudit(
        decisions=sum(counts.values()),
        duplicated=sum(n - 1 for n in counts.values()),
        undecided_users=len(undecided),
        fallback_decisions=fallback,
        unexpected=sum(1 for k in counts if k not in known),
        closed_batches=len(closed),
        open_batches=len(set(opened) - closed.keys()),
        undecided_examples=tuple(undecided[:10]),
    )


def missing(expected: Iterable[object], found: Iterable[object]) -> int:
    """How many of ``expected`` are not in ``found``: records a client saw acknowledged or
    committed during the run that the topic no longer holds at the end (lost)."""
    present = set(found)
    return sum(1 for e in set(expected) if e not in present)
