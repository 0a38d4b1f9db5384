"""Recovery after a fault, pure: from the fault to the pipeline having caught up again.

Definition (the soak's ``recovery_s``): a fault at time ``t`` is recovered at the first moment
``t' > t`` at which both hold:

1. the backlog the fault left is drained: every consumer group on the decision path
   (processors on ``candidates`` and ``feedback``; the allocator on ``scores``, ``candidates``
   and ``batch-control``) has committed offsets at or past the end offsets its input
   partitions had at ``t``;
2. a decision committed after ``t`` has been read (read_committed): the allocator decides again.

``recovery_s = t' - t``. It measures lag returning to zero for the records that existed at the
fault, not the instant lag is 0 (the simulator keeps producing, so lag is seldom exactly 0
while a batch is open). Faults closer together than their recovery overlap: a fault's time then
includes the delay of the next one. A fault not recovered within the bound is reported as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

Position = tuple[str, str, int]  # (group, topic, partition)


@dataclass
class _Pending:
    label: str
    at: float
    ends: Mapping[Position, int]


@dataclass
class RecoveryTracker:
    """Faults waiting to recover, and the recovery time of each one that did.

    ``fault`` registers a fault with the end offsets at its moment; ``observe`` is called with
    each sample of the committed offsets; ``expire`` closes the faults older than the bound.
    """

    bound_s: float
    pending: list[_Pending] = field(default_factory=list)
    recovered: list[tuple[str, float, float]] = field(default_factory=list)  # (label, at, recovery_s)
    unrecovered: list[tuple[str, float]] = field(default_factory=list)  # (label, at)

    def fault(self, label: str, at: float, ends: Mapping[Position, int]) -> None:
        self.pending.append(_Pending(label, at, dict(ends)))

    def observe(self, now: float, committed: Mapping[Position, int], last_decision_at: float | None) -> None:
        """One sample: ``committed`` offsets at ``now`` (a position absent counts as not
        reached); ``last_decision_at``: when the newest committed decision was read."""
        still = []
        for p in self.pending:
            # an empty partition (end 0) has nothing to drain, whatever its group committed
            drained = all(end <= 0 or committed.get(pos, -1) >= end for pos, end in p.ends.items())
            decided = last_decision_at is not None and last_decision_at > p.at
            if drained and decided:
                self.recovered.append((p.label, p.at, now - p.at))
            else:
                still.append(p)
        self.pending = still

    def expire(self, now: float) -> None:
        """Faults pending for longer than ``bound_s`` become unrecovered."""
        late = [p for p in self.pending if now - p.at > self.bound_s]
        self.unrecovered.extend((p.label, p.at) for p in late)
        self.pending = [p for p in self.pending if now - p.at <= self.bound_s]

    def summary(self, quantiles: tuple[int, ...] = (50, 99)) -> dict[str, float | None]:
        """``{"p50": s, "p99": s}`` of the recovery times (linear interpolation; None when no
        fault recovered)."""
        times = np.array([r for _, _, r in self.recovered])
        return {f"p{q}": round(float(np.percentile(times, q)), 2) if times.size else None for q in quantiles}
