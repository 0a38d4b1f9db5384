"""The allocator worker: batch windows -> one LP per batch -> decisions, exactly once.

Reads ``batch-control`` (1 partition) and ``scores`` (keyed by batch_id) with a
``read_committed`` consumer and, for every batch whose window has closed, solves the
allocation LP, rounds it per user and publishes, in ONE Kafka transaction, one ``decisions``
record per (batch, user), one ``allocation-reports`` record, the pending dead letters and the
consumer offsets. Downstream ``read_committed`` consumers therefore see each decision once.

Why it is exactly once across crashes
-------------------------------------
- Offsets are committed inside the transaction that publishes the decisions. For each
  partition we commit the smallest offset of any record still held in memory for an undecided
  batch (else the position), so a crash never loses a buffered record (``OffsetTracker``).
- Committing below the position means a restarted worker re-reads records it has already
  used. Each commit therefore carries the true position as the offset's metadata string
  (``pos=N``, committed atomically with the offset). On (re)start, records below ``pos`` were
  fully handled by a committed transaction unless they belong to a batch that is still
  undecided; records of decided batches there are skipped silently (``skipped_replayed``),
  while a record of a decided batch *beyond* ``pos`` is a genuinely late record and goes to
  dead-letters ("scores for decided batch"). The exception: the scorers run at-least-once, so
  a user re-scored after their rebalance may reach us after the batch was decided; scores
  for a user this worker decided in one of its last ``DECIDED_USERS_KEPT`` batches are that
  replay and are skipped (``skipped_duplicates``).
- Which batches are decided is loaded once at startup by reading ``allocation-reports`` from
  the beginning (read_committed, until the end offsets), after ``init_transactions`` has
  fenced a zombie with the same ``transactional.id`` and aborted its open transaction.
- LP users are ordered by user_id (not arrival order, which depends on how the 4 scores
  partitions interleave), and the rounding generator is seeded by a hash of (seed, batch_id),
  so a batch re-decided after a crash gets the same decisions.
- On any transactional error we abort, drop all in-memory state and rewind the consumer to
  the committed offsets (the same path as a restart): simple, and correct by the above.

Library code reads no environment; ``main()`` parses flags and builds the config.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.dead_letters import dead_letter
from streams.avro.decisions import DecisionColumns
from streams.errors import DecodeError, StreamError, ValidationError
from streams.records import BatchControlRecord, ScoresRecord
from streams.avro.serde import AvroSerde
from streams.kafka.topics import TopicNames

log = logging.getLogger("banditlp.allocator_worker")

TP = tuple[str, int]
"""A (topic, partition) pair."""

CONSUMER_NAME = "allocator"
# Decided batches whose user sets are kept to tell a scorer's replay from a late record
# (~60 B per user: 32 batches of 10,000 users take ~20 MB).
DECIDED_USERS_KEPT = 32
_POS_PREFIX = "pos="


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocatorWorkerConfig:
    """Everything the worker needs; built once by the entry point.

    Attributes:
        bootstrap: Kafka bootstrap servers.
        topics: maps base topic names to real ones (prefix).
        group_id: consumer group holding the committed offsets (``<prefix>banditlp-allocator``).
        transactional_id: fixed per group, so a restarted worker fences its zombie.
        highs_threshold: LP pairs at or below which HiGHS is used; above it, the dual solver
            (bench/results/allocator-cpu-2core.json: 5.7x faster than HiGHS at 1e5 pairs).
        rounding: ``"sample"`` (systematic sampling, propensity x_e) or ``"top"`` (top-cap by x,
            propensity 1).
        seed: mixed with each batch_id to seed its rounding.
        poll_timeout_s: consumer poll timeout.
        dead_letter_flush_s: longest time pending dead letters (and advanced offsets) wait for
            a batch transaction before a transaction of their own is committed.
        unknown_batch_timeout_s: how long scores for a batch with no OPENED are buffered
            before they are dead-lettered ("unknown batch").
        open_timeout_s: how long a batch OPENED but never CLOSED is held before it is decided
            with the users scored so far (its report's status says so).
        max_relative_violation: largest relative constraint violation of the LP's x accepted
            from a solver before falling back (dual -> HiGHS -> elastic).
        stats_interval_s: period of the stats log line.
        transaction_timeout_s: blocking timeout of transactional calls.
        debug_sleep_before_commit_s: sleep inside the open transaction before committing it
            (crash tests only; 0 in production).
        schema_registry_url: a Confluent Schema Registry, or None for the local one.
    """

    bootstrap: str
    topics: TopicNames
    group_id: str
    transactional_id: str
    highs_threshold: int = 50_000
    rounding: str = "sample"
    seed: int = 0
    poll_timeout_s: float = 0.2
    dead_letter_flush_s: float = 1.0
    unknown_batch_timeout_s: float = 300.0
    open_timeout_s: float = 3600.0
    max_relative_violation: float = 1e-6
    stats_interval_s: float = 30.0
    transaction_timeout_s: float = 60.0
    debug_sleep_before_commit_s: float = 0.0
    schema_registry_url: str | None = None

    def __post_init__(self) -> None:
        if self.rounding not in ("sample", "top"):
            raise ValueError(f"rounding must be 'sample' or 'top', not {self.rounding!r}")
        if self.highs_threshold < 0:
            raise ValueError("highs_threshold must be >= 0")

    @classmethod
    def for_prefix(cls, bootstrap: str, prefix: str = "", **overrides: Any) -> "AllocatorWorkerConfig":
        """The default config of the topic namespace ``prefix``."""
        return cls(bootstrap=bootstrap, topics=TopicNames(prefix), group_id=f"{prefix}banditlp-allocator",
                   transactional_id=f"{prefix}banditlp-allocator-tx", **overrides)


# --------------------------------------------------------------------------------------------
# Pure bookkeeping: batch windows and committable offsets (unit-tested without Kafka)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRecord:
    """Where a record came from and its original bytes (kept only while it may be dead-lettered)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class BatchWindow:
    """What one undecided batch has received so far; pure, the clock is passed in.

    A window is ready when its batch is OPENED and CLOSED and either every expected user is
    scored or ``timeout_ms`` has passed since CLOSED was seen; or when it was OPENED and never
    CLOSED for ``open_timeout_s`` (a producer that died mid-batch must not pin the allocator's
    offsets forever: the users scored so far are decided). Scores may arrive before OPENED
    (other topic, other partitions); their raw bytes are kept until OPENED so they can be
    dead-lettered if the batch never opens.
    """

    def __init__(self, batch_id: str, first_seen: float) -> None:
        self.batch_id = batch_id
        self.first_seen = first_seen
        self.opened: BatchControlRecord | None = None
        self.closed: BatchControlRecord | None = None
        self.closed_at: float | None = None
        self.opened_at: float | None = None
        self.scores: dict[str, ScoresRecord] = {}  # user_id -> first scores record
        self.unopened_raw: dict[str, RawRecord] = {}  # user_id (or "#CLOSED") -> raw, before OPENED
        self._required: tuple[str, ...] = ()  # required_outcomes(), fixed by OPENED

    # -- events ------------------------------------------------------------------------------

    def open(self, record: BatchControlRecord, now: float | None = None) -> tuple[bool, list[tuple[RawRecord, str]]]:
        """Apply OPENED (seen at ``now``, the start of the open timeout). Returns (applied, rejected): applied is False for a repeated OPENED
        (the first one wins); rejected lists buffered scores lacking an outcome the batch needs,
        removed from the window, with the reason."""
        if self.opened is not None:
            return False, []
        self.opened, self.opened_at = record, now
        self._required = (record.reward_outcome,) + tuple(b.outcome for b in record.budgets)
        rejected: list[tuple[RawRecord, str]] = []
        for user_id in list(self.scores):
            reason = self.missing_outcomes(self.scores[user_id])
            if reason:
                del self.scores[user_id]
                raw = self.unopened_raw.get(user_id)
                if raw is not None:
                    rejected.append((raw, reason))
        self.unopened_raw.clear()  # only needed to dead-letter an unknown batch
        return True, rejected

    def close(self, record: BatchControlRecord, now: float, raw: RawRecord | None = None) -> bool:
        """Apply CLOSED at time ``now``; False for a repeated CLOSED (the first one wins)."""
        if self.closed is not None:
            return False
        self.closed, self.closed_at = record, now
        if self.opened is None and raw is not None:
            self.unopened_raw["#CLOSED"] = raw
        return True

    def add(self, record: ScoresRecord, raw: RawRecord | None = None) -> str:
        """Add one user's scores. Returns ``"added"``, ``"duplicate"`` (a (batch, user) already
        scored: the first record is kept) or a rejection reason (an outcome the batch needs
        is missing from the samples)."""
        if record.user_id in self.scores:
            return "duplicate"
        if self.opened is not None:
            reason = self.missing_outcomes(record)
            if reason:
                return reason
        elif raw is not None:
            self.unopened_raw[record.user_id] = raw
        self.scores[record.user_id] = record
        return "added"

    # -- queries -----------------------------------------------------------------------------

    def required_outcomes(self) -> tuple[str, ...]:
        """The sampled outcomes the LP reads: the reward and every budget's cost (none before OPENED)."""
        return self._required

    def missing_outcomes(self, record: ScoresRecord) -> str:
        """A rejection reason when ``record`` lacks an outcome the batch needs, else ``""``."""
        samples = record.samples
        for o in self._required:
            if o not in samples:
                missing = [o for o in self._required if o not in samples]
                return f"scores lack outcome(s) {missing} that batch {self.batch_id} needs"
        return ""

    @property
    def expected_users(self) -> int:
        """CLOSED's count when seen (written after the last candidate, so final), else OPENED's."""
        rec = self.closed or self.opened
        return rec.expected_users if rec is not None else 0

    @property
    def n_missing(self) -> int:
        return max(0, self.expected_users - len(self.scores))

    def missing_users(self, limit: int = 1_000) -> list[str]:
        """Ids of listed users (``user_ids`` of CLOSED, else OPENED) with no scores, sorted,
        at most ``limit``; empty when the producer gave a count only."""
        rec = self.closed if self.closed is not None and self.closed.user_ids is not None else self.opened
        if rec is None or rec.user_ids is None:
            return []
        return sorted(set(rec.user_ids) - set(self.scores))[:limit]

    def is_ready(self, now: float, open_timeout_s: float = math.inf) -> bool:
        """Opened and closed, and all expected users in or the timeout since CLOSED passed;
        or opened, never closed, for ``open_timeout_s``."""
        if self.opened is None:
            return False
        if self.closed_at is None:
            return self.opened_at is not None and now - self.opened_at >= open_timeout_s
        if len(self.scores) >= self.expected_users:
            return True
        return now - self.closed_at >= self.opened.timeout_ms / 1000.0

    def is_unknown_expired(self, now: float, limit_s: float) -> bool:
        """Never opened, and the first record was seen more than ``limit_s`` ago."""
        return self.opened is None and now - self.first_seen >= limit_s


class OffsetTracker:
    """Per partition: the consumer position and the smallest offset held per undecided batch.

    ``committable()`` never passes a held record: committing it there means a crash re-reads,
    rather than loses, every record still needed.
    """

    def __init__(self) -> None:
        self._position: dict[TP, int] = {}
        self._held: dict[TP, dict[str, int]] = {}

    def seen(self, tp: TP, offset: int) -> None:
        """A record at ``offset`` was consumed (held, used or rejected)."""
        if offset + 1 > self._position.get(tp, -1):
            self._position[tp] = offset + 1

    def hold(self, batch_id: str, tp: TP, offset: int) -> None:
        """``batch_id`` needs the record at ``offset`` until it is decided."""
        held = self._held.setdefault(tp, {})
        if offset < held.get(batch_id, offset + 1):
            held[batch_id] = offset
        self.seen(tp, offset)

    def release(self, batch_id: str) -> None:
        """``batch_id`` is decided (or dropped): its records are no longer needed."""
        for held in self._held.values():
            held.pop(batch_id, None)

    def position(self, tp: TP) -> int | None:
        return self._position.get(tp)

    def committable(self) -> dict[TP, tuple[int, int]]:
        """``{tp: (offset to commit, position)}`` for every partition consumed from."""
        out: dict[TP, tuple[int, int]] = {}
        for tp, pos in self._position.items():
            held = self._held.get(tp)
            low = min(held.values()) if held else pos
            out[tp] = (min(low, pos), pos)
        return out


# --------------------------------------------------------------------------------------------
# The LP of one batch, its solution checks and the rounding seed (vectorised over pairs)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BatchLP:
    """The allocation LP of one batch, pairs flattened user-major.

    ``E`` pairs, ``n`` users, ``L`` budgets, ``P`` providers (the batch's constrained
    providers first, then every other provider seen, bounded by ``[0, inf)``).

    Attributes:
        user_ids: ``(n,)`` user ids, sorted (the LP's user order).
        records: ``(n,)`` the scores records in that order.
        starts: ``(n + 1,)`` int64; user ``u``'s pairs are ``starts[u]:starts[u + 1]``.
        user: ``(E,)`` int64 user index of each pair.
        item: ``(E,)`` int64 index of each pair's item in ``item_names``.
        item_names: ``(I,)`` the batch's distinct item ids, sorted.
        reward: ``(E,)`` float64 sampled reward (objective coefficient).
        cost: ``(L, E)`` float64 sampled cost of each budget's outcome.
        budget: ``(L,)`` float64 limits.
        budget_names: ``(L,)`` names.
        provider: ``(E,)`` int64 provider index of each pair.
        provider_names: ``(P,)`` provider ids.
        provider_min, provider_max: ``(P,)`` float64 exposure bounds (``inf`` allowed).
        n_constrained: providers ``0..n_constrained-1`` are the batch's constrained ones.
        user_cap: ``(n,)`` float64 most items per user.
    """

    user_ids: list[str]
    records: list[ScoresRecord]
    starts: np.ndarray
    user: np.ndarray
    item: np.ndarray
    item_names: list[str]
    reward: np.ndarray
    cost: np.ndarray
    budget: np.ndarray
    budget_names: list[str]
    provider: np.ndarray
    provider_names: list[str]
    provider_min: np.ndarray
    provider_max: np.ndarray
    n_constrained: int
    user_cap: np.ndarray

    @property
    def n_pairs(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @classmethod
    def build(cls, control: BatchControlRecord, scores: dict[str, ScoresRecord]) -> "BatchLP":
        """Flatten one batch's scores into LP arrays.

        The per-user list comprehensions only gather each record's arrays; every per-pair
        quantity is then built by one ``np.concatenate`` / ``np.repeat``, and the ids become
        indices through one dict lookup per pair in C (``map``), each distinct id sorted once.
        """
        user_ids = sorted(scores)  # deterministic order: a re-decided batch gets the same LP
        records = [scores[u] for u in user_ids]
        counts = np.fromiter((len(r.item_ids) for r in records), dtype=np.int64, count=len(records))
        starts = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        n_pairs = int(starts[-1])
        user = np.repeat(np.arange(len(records), dtype=np.int64), counts)

        def cat(outcome: str) -> np.ndarray:
            if not records:
                return np.zeros(0)
            return np.concatenate([r.samples[outcome] for r in records]).astype(np.float64, copy=False)

        reward = cat(control.reward_outcome)
        cost = (np.stack([cat(b.outcome) for b in control.budgets]) if control.budgets
                else np.zeros((0, n_pairs)))
        budget = np.array([b.limit for b in control.budgets], dtype=np.float64)

        def indices(ids: list[str], index: dict[str, int]) -> np.ndarray:
            return np.fromiter(map(index.__getitem__, ids), dtype=np.int64, count=len(ids))

        pair_items = list(chain.from_iterable(r.item_ids for r in records))  # (E,)
        pair_providers = list(chain.from_iterable(r.provider_ids for r in records))  # (E,)
        item_names = sorted(dict.fromkeys(pair_items))  # one step per distinct item, not per pair
        item = indices(pair_items, {name: i for i, name in enumerate(item_names)})
        # Providers: the constrained ones keep the batch's order (0..C-1), the rest follow, sorted.
        names = [p.provider_id for p in control.providers]
        index = {name: i for i, name in enumerate(names)}
        for name in sorted(dict.fromkeys(pair_providers)):
            if name not in index:
                index[name] = len(names)
                names.append(name)
        provider = indices(pair_providers, index)
        n_c = len(control.providers)
        provider_min = np.zeros(len(names))
        provider_max = np.full(len(names), np.inf)
        provider_min[:n_c] = [p.min_exposure for p in control.providers]
        provider_max[:n_c] = [p.max_exposure for p in control.providers]
        user_cap = np.fromiter((control.default_user_cap if r.user_cap is None else r.user_cap
                                for r in records), dtype=np.float64, count=len(records))
        return cls(user_ids, records, starts, user, item, item_names, reward, cost, budget,
                   [b.name for b in control.budgets], provider, names, provider_min, provider_max, n_c,
                   user_cap)

    def to_problem(self) -> Any:
        """The ``allocator.problem.AllocationProblem`` of this batch (needs ``n_pairs > 0``).

        Raises:
            ProblemValidationError: malformed arrays (cannot happen for validated records).
        """
        from allocator.problem import AllocationProblem

        return AllocationProblem(user=self.user, item=self.item, reward=self.reward, cost=self.cost,
                                 budget=self.budget, provider=self.provider, provider_min=self.provider_min,
                                 provider_max=self.provider_max, user_cap=self.user_cap)

    # -- checks on a solution ----------------------------------------------------------------

    def usage(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cost @ x (L,), provider exposure (P,), per-user sum of x (n,))`` of ``x (E,)``."""
        used = self.cost @ x if self.cost.shape[0] else np.zeros(0)
        exposure = np.bincount(self.provider, weights=x, minlength=len(self.provider_names))
        per_user = np.bincount(self.user, weights=x, minlength=self.n_users)
        return used, exposure, per_user

    def violations(self, x: np.ndarray) -> tuple[float, float]:
        """Largest absolute and relative violation of every constraint by ``x (E,)``.

        Relative: the violation over ``max(|rhs|, 1)`` (a row with rhs 0, such as an unset
        provider minimum, is measured in its own units).
        """
        used, exposure, per_user = self.usage(x)
        hi_p = np.where(np.isfinite(self.provider_max), self.provider_max, np.inf)
        parts = [
            (np.maximum(used - self.budget, 0.0), self.budget),
            (np.maximum(self.provider_min - exposure, 0.0), self.provider_min),
            (np.maximum(exposure - hi_p, 0.0), np.where(np.isfinite(hi_p), hi_p, 1.0)),
            (np.maximum(per_user - self.user_cap, 0.0), self.user_cap),
            (np.maximum(-x, 0.0), np.ones_like(x)),
            (np.maximum(x - 1.0, 0.0), np.ones_like(x)),
        ]
        abs_v = max((float(v.max()) for v, _ in parts if v.size), default=0.0)
        rel_v = max((float((v / np.maximum(np.abs(r), 1.0)).max()) for v, r in parts if v.size), default=0.0)
        return abs_v, rel_v


def batch_seed(seed: int, batch_id: str) -> int:
    """A 64-bit seed from (seed, batch_id): stable across processes (unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{batch_id}".encode()).digest()[:8], "big")


# --------------------------------------------------------------------------------------------
# Solving: the allocator package, with the worker's fallback chain
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Solved:
    """A solved batch LP as the worker publishes it.

    Attributes:
        x: ``(E,)`` values in [0, 1]. budget_dual: ``(L,)``. provider_dual: ``(P,)``.
    """

    x: np.ndarray
    objective: float
    budget_dual: np.ndarray
    provider_dual: np.ndarray
    status: str
    solver: str
    iterations: int
    seconds: float
    max_violation: float
    max_relative_violation: float


class AllocationRejected(StreamError):
    """The LP could not be solved into a publishable allocation (the batch is reported, not decided)."""


@dataclass
class DualMemory:
    """The duals of the last batch the dual solver decided, by constraint name.

    Consecutive batches have the same budgets and mostly the same providers, so the last
    batch's prices are a good start for the next solve (``solve_dual(dual_start=...)``:
    ~2.5x fewer iterations on 10,000 users x 20 candidates). Names absent from the memory
    start at 0; the solver drops a start that is worse than zero, so a stale one costs little.
    """

    budget: dict[str, float] = field(default_factory=dict)
    provider: dict[str, float] = field(default_factory=dict)

    def start_for(self, lp: "BatchLP") -> tuple[np.ndarray, np.ndarray] | None:
        """``(budget_dual (L,), provider_dual (P,))`` for ``lp``'s rows, or None before any batch."""
        if not self.budget and not self.provider:
            return None
        return (np.array([self.budget.get(n, 0.0) for n in lp.budget_names]),
                np.array([self.provider.get(n, 0.0) for n in lp.provider_names]))

    def remember(self, lp: "BatchLP", solved: Solved) -> None:
        self.budget = dict(zip(lp.budget_names, map(float, solved.budget_dual)))
        self.provider = dict(zip(lp.provider_names, map(float, solved.provider_dual)))


def solve_batch(lp: BatchLP, cfg: AllocatorWorkerConfig, problem: Any | None = None,
                memory: DualMemory | None = None) -> Solved:
    """Solve ``lp``: HiGHS at or below ``highs_threshold`` pairs, else the dual solver.

    Fallbacks: when the first solver fails (``AllocatorError``) or returns an ``x`` that
    violates a constraint by more than ``max_relative_violation``, the other one solves; when
    both do, or the LP is infeasible (``InfeasibleAllocation``), it is solved in elastic mode
    (solver ``"<name>+elastic"``, status ``"elastic"`` when a constraint had to give way).

    ``memory``: the dual solver starts from its duals, and it learns this batch's when the
    dual solver's answer is published.

    Raises:
        AllocationRejected: no publishable solution (every solve, elastic included, failed).
    """
    from allocator.errors import AllocatorError, InfeasibleAllocation

    t0 = time.perf_counter()
    zeros = np.zeros(lp.n_pairs)
    if lp.n_pairs == 0:
        return Solved(zeros, 0.0, np.zeros(len(lp.budget)), np.zeros(len(lp.provider_names)), "empty",
                      "none", 0, 0.0, *lp.violations(zeros))
    problem = problem if problem is not None else lp.to_problem()
    # The other solver is the fallback of the first: for a solution out of tolerance, and for
    # a solver failure (e.g. HiGHS ending with status "Unknown").
    attempts = ["highs", "dual"] if lp.n_pairs <= cfg.highs_threshold else ["dual", "highs"]
    failures: list[str] = []
    for name in attempts:
        start = memory.start_for(lp) if memory is not None and name == "dual" else None
        try:
            res = _solver(name)(problem) if start is None else _solver(name)(problem, dual_start=start)
        except InfeasibleAllocation as exc:
            log.warning("batch LP infeasible (%s); solving elastic", exc)
            return _elastic(problem, lp, t0, cfg)
        except AllocatorError as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            log.warning("%s failed (%s); falling back", name, exc)
            continue
        x = np.clip(np.asarray(res.x, dtype=np.float64), 0.0, 1.0)
        abs_v, rel_v = lp.violations(x)
        if rel_v <= cfg.max_relative_violation:
            solved = Solved(x, float(lp.reward @ x), np.asarray(res.budget_dual, dtype=np.float64),
                            np.asarray(res.provider_dual, dtype=np.float64), str(res.status),
                            str(res.solver), int(res.iterations), time.perf_counter() - t0, abs_v, rel_v)
            if memory is not None and name == "dual":
                memory.remember(lp, solved)
            return solved
        failures.append(f"{name}: solution violates a constraint by {rel_v:.3g} (relative)")
        log.warning("%s; falling back", failures[-1])
    log.warning("no solver gave a solution within tolerance (%s); solving elastic", "; ".join(failures))
    try:
        return _elastic(problem, lp, t0, cfg)
    except AllocationRejected as exc:
        raise AllocationRejected("; ".join(failures + [str(exc)])) from exc


def _solver(name: str) -> Callable[..., Any]:
    """``allocator.solve(problem, solver=name, **options)`` (a seam the unit tests replace)."""
    from allocator import solve

    return lambda problem, **options: solve(problem, solver=name, **options)


def _elastic(problem: Any, lp: BatchLP, t0: float, cfg: AllocatorWorkerConfig) -> Solved:
    """The allocator's elastic solve (budgets and provider minimums give way at a penalty; user
    caps and [0, 1] stay hard), with the solver the batch's size picks."""
    from allocator import solve
    from allocator.errors import AllocatorError

    name = "highs" if lp.n_pairs <= cfg.highs_threshold else "dual"
    try:
        res = solve(problem, solver=name, elastic=True)
    except AllocatorError as exc:
        raise AllocationRejected(f"elastic solve failed: {type(exc).__name__}: {exc}") from exc
    x = np.clip(np.asarray(res.x, dtype=np.float64), 0.0, 1.0)
    abs_v, rel_v = lp.violations(x)
    _, _, per_user = lp.usage(x)
    if np.any(per_user > lp.user_cap * (1 + 1e-6) + 1e-9):
        raise AllocationRejected("elastic solution breaks a user cap")
    return Solved(x, float(lp.reward @ x), np.asarray(res.budget_dual, dtype=np.float64),
                  np.asarray(res.provider_dual, dtype=np.float64), str(res.status), f"{res.solver}+elastic",
                  int(res.iterations), time.perf_counter() - t0, abs_v, rel_v)


# --------------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------------


@dataclass
class WorkerStats:
    """Counters logged periodically (and returned by ``run``)."""

    records: int = 0
    batches_decided: int = 0
    batches_rejected: int = 0
    decisions: int = 0
    dead_letters: int = 0
    skipped_duplicates: int = 0
    skipped_replayed: int = 0
    transactions: int = 0
    aborts: int = 0


@dataclass
class _Pending:
    """What the next transaction carries besides decisions: dead letters ``(key, value)``."""

    dead_letters: list[tuple[bytes, bytes]] = field(default_factory=list)
    since: float | None = None


class AllocatorWorker:
    """Consumes batch-control + scores, decides batches, publishes transactionally.

    Use ``run(stop_event=..., max_seconds=...)``; it returns the stats when stopped.
    """

    def __init__(self, config: AllocatorWorkerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = config
        self.clock = clock
        self.serde = AvroSerde(None if config.schema_registry_url is None else _registry(config.schema_registry_url))
        self.stats = WorkerStats()
        t = config.topics
        self.control_topic, self.scores_topic = t("batch-control"), t("scores")
        self.decisions_topic, self.reports_topic = t("decisions"), t("allocation-reports")
        self.dead_topic = t("dead-letters")
        self.decided: set[str] = set()
        # batch_id -> the users it decided, for this process's last DECIDED_USERS_KEPT batches
        self.decided_users: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.windows: dict[str, BatchWindow] = {}
        self.tracker = OffsetTracker()
        self.duals = DualMemory()  # warm start of the next batch's dual solve
        self.horizon: dict[TP, int] = {}  # replay horizon: the committed position of each partition
        self.committed: dict[TP, int] = {}
        self.pending = _Pending()
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _start(self) -> None:
        cfg = self.cfg
        self.producer = Producer({
            "bootstrap.servers": cfg.bootstrap, "transactional.id": cfg.transactional_id,
            "enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4",
            "transaction.timeout.ms": 120_000,
        })
        # Fences a zombie with our transactional.id and aborts its open transaction, so the
        # reports read next and the offsets fetched after are final.
        self.producer.init_transactions(cfg.transaction_timeout_s)
        self.decided = self._load_decided()
        log.info("allocator worker: %d batches already decided", len(self.decided))
        self.consumer = Consumer({
            "bootstrap.servers": cfg.bootstrap, "group.id": cfg.group_id,
            "isolation.level": "read_committed", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": False,
        })
        self._assign_committed()

    def _partitions(self, topic: str) -> list[int]:
        assert self.consumer is not None or self.producer is not None
        md = (self.consumer or self.producer).list_topics(topic, timeout=30)  # type: ignore[union-attr]
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"topic {topic} not found"))
        return sorted(meta.partitions)

    def _assign_committed(self) -> None:
        """(Re)assign every input partition at its committed offset; read the replay horizons.

        Manual assignment (not a group subscription): one worker must see every scores
        partition and the batch-control partition, and a second instance is fenced by the
        shared transactional.id, so there is nothing to rebalance.
        """
        assert self.consumer is not None
        tps = [TopicPartition(t, p) for t in (self.control_topic, self.scores_topic) for p in self._partitions(t)]
        committed = self.consumer.committed(tps, timeout=self.cfg.transaction_timeout_s)
        self.horizon.clear()
        self.committed.clear()
        assign = []
        for tp in committed:
            key = (tp.topic, tp.partition)
            if tp.offset >= 0:
                self.committed[key] = tp.offset
                meta = tp.metadata or ""
                self.horizon[key] = int(meta[len(_POS_PREFIX):]) if meta.startswith(_POS_PREFIX) else tp.offset
                assign.append(TopicPartition(tp.topic, tp.partition, tp.offset))
            else:
                assign.append(TopicPartition(tp.topic, tp.partition, -2))  # OFFSET_BEGINNING
        self.consumer.assign(assign)
        log.info("assigned %s", {f"{t.topic}[{t.partition}]": t.offset for t in assign})

    def _load_decided(self) -> set[str]:
        """batch_ids of every committed allocation report (read from the beginning to the end)."""
        c = Consumer({"bootstrap.servers": self.cfg.bootstrap, "group.id": f"{self.cfg.group_id}-loader",
                      "isolation.level": "read_committed", "enable.auto.commit": False,
                      "enable.partition.eof": True})
        decided: set[str] = set()
        try:
            parts = [p for p in sorted(c.list_topics(self.reports_topic, timeout=30)
                                       .topics[self.reports_topic].partitions)]
            todo = set()
            assign = []
            for p in parts:
                lo, hi = c.get_watermark_offsets(TopicPartition(self.reports_topic, p), timeout=30)
                if hi > lo:
                    todo.add(p)
                    assign.append(TopicPartition(self.reports_topic, p, -2))
            if not todo:
                return decided
            c.assign(assign)
            deadline = time.monotonic() + 120
            while todo and time.monotonic() < deadline:
                for msg in c.consume(1000, 0.5):
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            todo.discard(msg.partition())
                        continue
                    try:
                        decided.add(self.serde.decode("allocation-reports", msg.value(), topic=msg.topic(),
                                                      partition=msg.partition(), offset=msg.offset())["batch_id"])
                    except DecodeError as exc:
                        log.warning("unreadable allocation report ignored: %s", exc)
            if todo:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "could not read allocation-reports to its end"))
        finally:
            c.close()
        return decided

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self.producer is not None:
            self.producer.flush(10)
            self.producer = None

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop_event: threading.Event | None = None, max_seconds: float | None = None) -> WorkerStats:
        """Consume, decide and publish until ``stop_event`` is set or ``max_seconds`` pass.

        Transactions are synchronous, so a stop request is honoured between them: the current
        one is committed (or aborted on error) before returning.
        """
        stop_event = stop_event or threading.Event()
        start = time.monotonic()
        self._start()
        assert self.consumer is not None
        last_stats = last_commit = time.monotonic()
        try:
            while not stop_event.is_set():
                if max_seconds is not None and time.monotonic() - start >= max_seconds:
                    break
                for msg in self.consumer.consume(1000, self.cfg.poll_timeout_s):
                    self._on_message(msg)
                now = self.clock()
                self._expire_unknown(now)
                ready = [w for w in self.windows.values() if w.is_ready(now, self.cfg.open_timeout_s)]
                for window in ready:  # one batch per transaction: bounded transaction size
                    if stop_event.is_set():  # undecided windows are re-read by the next start
                        break
                    ok = self._transact([window])
                    last_commit = time.monotonic()
                    if not ok:  # aborted and rewound: the other ready windows are gone too
                        break
                flush_due = time.monotonic() - last_commit >= self.cfg.dead_letter_flush_s
                if not ready and flush_due and (self.pending.dead_letters or self._offsets_advanced()):
                    self._transact([])
                    last_commit = time.monotonic()
                if time.monotonic() - last_stats >= self.cfg.stats_interval_s:
                    self._log_stats()
                    last_stats = time.monotonic()
        finally:
            self._log_stats()
            self.close()
        return self.stats

    def _log_stats(self) -> None:
        log.info("allocator stats: %s; open windows %d", asdict(self.stats), len(self.windows))

    def _offsets_advanced(self) -> bool:
        return any(self.committed.get(tp, -1) < off for tp, (off, _) in self.tracker.committable().items())

    # -- records -----------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error: %s", err)
            return
        self.stats.records += 1
        topic, partition, offset, value = msg.topic(), msg.partition(), msg.offset(), msg.value()
        tp = (topic, partition)
        raw = RawRecord(topic, partition, offset, msg.key(), value)
        try:
            if topic == self.control_topic:
                control = BatchControlRecord.from_avro(self.serde.decode(
                    "batch-control", value, topic=topic, partition=partition, offset=offset))
                self._on_control(control, raw)
            else:
                scores = ScoresRecord.from_avro(self.serde.decode(
                    "scores", value, topic=topic, partition=partition, offset=offset))
                self._on_scores(scores, raw)
        except (DecodeError, ValidationError) as exc:
            self._dead_letter(raw, exc)
        except (KeyError, TypeError, ValueError) as exc:  # a decoded dict that breaks a record invariant
            self._dead_letter(raw, ValidationError(f"malformed record: {type(exc).__name__}: {exc}"))
        self.tracker.seen(tp, offset)

    def _on_control(self, control: BatchControlRecord, raw: RawRecord) -> None:
        bid = control.batch_id
        if bid in self.decided:
            self._dead_letter(raw, ValidationError(f"{control.event} for decided batch {bid}"))
            return
        window = self.windows.get(bid) or self.windows.setdefault(bid, BatchWindow(bid, self.clock()))
        if control.event == "OPENED":
            applied, rejected = window.open(control, self.clock())
            for rraw, reason in rejected:
                self._dead_letter(rraw, ValidationError(reason))
        else:
            applied = window.close(control, self.clock(), raw)
        if applied:
            self.tracker.hold(bid, (raw.topic, raw.partition), raw.offset)
        else:
            self.stats.skipped_duplicates += 1

    def _on_scores(self, scores: ScoresRecord, raw: RawRecord) -> None:
        bid = scores.batch_id
        if bid in self.decided:
            users = self.decided_users.get(bid)
            if users is not None and scores.user_id in users:  # a scorer's replay of a decided user
                self.stats.skipped_duplicates += 1
                return
            late = "" if users is None else f"; user {scores.user_id} was not scored before it was decided"
            self._dead_letter(raw, ValidationError(f"scores for decided batch {bid}{late}"))
            return
        window = self.windows.get(bid) or self.windows.setdefault(bid, BatchWindow(bid, self.clock()))
        outcome = window.add(scores, raw)
        if outcome == "added":
            self.tracker.hold(bid, (raw.topic, raw.partition), raw.offset)
        elif outcome == "duplicate":
            self.stats.skipped_duplicates += 1
        else:
            self._dead_letter(raw, ValidationError(outcome))

    def _expire_unknown(self, now: float) -> None:
        """Dead-letter the records of batches that never opened within the limit."""
        for bid in [b for b, w in self.windows.items()
                    if w.is_unknown_expired(now, self.cfg.unknown_batch_timeout_s)]:
            window = self.windows.pop(bid)
            for raw in window.unopened_raw.values():
                self._dead_letter(raw, ValidationError(
                    f"unknown batch {bid}: no OPENED within {self.cfg.unknown_batch_timeout_s:g} s"),
                    replay_aware=False)
            self.tracker.release(bid)

    def _dead_letter(self, raw: RawRecord, exc: BaseException, replay_aware: bool = True) -> None:
        """Queue a dead letter for the next transaction.

        A record below its partition's replay horizon was consumed before the last committed
        transaction, which carried every dead letter queued up to then: it is skipped
        (``skipped_replayed``), not dead-lettered twice. Dead letters queued later than the
        record's consumption (unknown-batch expiry) pass ``replay_aware=False``.
        """
        if replay_aware and raw.offset < self.horizon.get((raw.topic, raw.partition), 0):
            self.stats.skipped_replayed += 1
            return
        value = dead_letter(self.serde, source_topic=raw.topic, partition=raw.partition, offset=raw.offset,
                            key=raw.key, value=raw.value, error=exc, consumer=CONSUMER_NAME)
        self.pending.dead_letters.append((raw.topic.encode(), value))  # key: the source topic
        if self.pending.since is None:
            self.pending.since = time.monotonic()
        log.debug("dead letter %s[%d]@%d: %s", raw.topic, raw.partition, raw.offset, exc)

    # -- deciding and publishing -------------------------------------------------------------

    def _decide(self, window: BatchWindow) -> tuple[list[tuple[bytes, bytes]], bytes, int, str]:
        """Solve, round and encode one batch: ``(decisions [(key, value)], report, n_decisions, status)``."""
        assert window.opened is not None
        control = window.opened
        lp = BatchLP.build(control, window.scores)
        decided_at = int(time.time() * 1000)
        from allocator.errors import AllocatorError
        from allocator.rounding import round_allocation

        try:
            problem = lp.to_problem() if lp.n_pairs else None
            sol = solve_batch(lp, self.cfg, problem, self.duals)
            x = sol.x
            chosen, propensity = np.zeros(lp.n_pairs, dtype=bool), np.zeros(lp.n_pairs)
            if problem is not None:
                # Seeded by (seed, batch_id): a batch re-decided after a crash draws the same U_u.
                rng = np.random.default_rng(batch_seed(self.cfg.seed, window.batch_id))
                r = round_allocation(problem, x, mode=self.cfg.rounding, rng=rng)  # type: ignore[arg-type]
                chosen[r.pairs] = True
                propensity[r.pairs] = r.propensity
            # Never publish an invalid decision: the rounded counts must respect the caps.
            n_chosen = np.bincount(lp.user, weights=chosen, minlength=lp.n_users)
            if np.any(n_chosen > lp.user_cap):
                raise AllocationRejected("rounding gave a user more items than its cap")
        except (AllocationRejected, AllocatorError) as exc:
            # The batch is closed with a report saying why and no decisions: its records are
            # released (a stuck batch would pin the offsets forever) and monitoring sees it.
            log.error("batch %s not decided: %s", window.batch_id, exc)
            report = self._report(window, lp, None, decided_at, self.clock(), status=f"rejected: {exc}"[:500])
            return [], report, 0, "rejected"
        # One record per user, the whole batch encoded at once (streams.avro.decisions).
        values = self.serde.encode_decisions(DecisionColumns(
            window.batch_id, lp.user_ids, lp.starts, lp.item, lp.item_names, lp.provider, lp.provider_names,
            x, chosen, propensity, [r.model_name for r in lp.records], [r.model_version for r in lp.records],
            [r.parameter_version for r in lp.records], sol.solver, self.cfg.rounding, decided_at))
        records = [(user.encode(), value) for user, value in zip(lp.user_ids, values)]
        # window_seconds ends here: the decisions are encoded and go to the producer next.
        return records, self._report(window, lp, sol, decided_at, self.clock()), len(records), sol.status

    def _report(self, window: BatchWindow, lp: BatchLP, sol: Solved | None, decided_at: int, now: float,
                status: str | None = None) -> bytes:
        """Encode the batch's allocation report (``sol`` None: rejected, zero allocation)."""
        x = sol.x if sol is not None else np.zeros(lp.n_pairs)
        used, exposure, _ = lp.usage(x)
        bd = sol.budget_dual if sol is not None else np.zeros(len(lp.budget))
        pdual = sol.provider_dual if sol is not None else np.zeros(len(lp.provider_names))
        n_missing = window.n_missing
        return self.serde.encode("allocation-reports", {
            "batch_id": window.batch_id,
            "status": (status or sol.status) + ("" if window.closed is not None  # type: ignore[union-attr]
                                                 else f" (never closed: decided after the {self.cfg.open_timeout_s:g} s open timeout)"),
            "solver": sol.solver if sol is not None else "none",
            "objective": float(lp.reward @ x) if lp.n_pairs else 0.0,
            "n_users": lp.n_users, "n_pairs": lp.n_pairs,
            # named when batch-control lists the batch's users; otherwise the count alone
            "missing_users": window.missing_users(),
            "n_missing": n_missing,
            "budgets": [{"name": lp.budget_names[l], "dual": float(bd[l]), "used": float(used[l]),
                         "limit": float(lp.budget[l])} for l in range(len(lp.budget))],
            # allocator.result's provider dual is > 0 when the maximum binds; the report's
            # schema is the other way round (positive: the minimum binds), hence the minus.
            "providers": [{"provider_id": lp.provider_names[p], "dual": float(-pdual[p]),
                           "exposure": float(exposure[p]), "min_exposure": float(lp.provider_min[p]),
                           "max_exposure": None if np.isinf(lp.provider_max[p]) else float(lp.provider_max[p])}
                          for p in range(lp.n_constrained)],
            "max_violation": sol.max_violation if sol is not None else 0.0,
            "max_relative_violation": sol.max_relative_violation if sol is not None else 0.0,
            "iterations": sol.iterations if sol is not None else 0,
            "solve_seconds": sol.seconds if sol is not None else 0.0,
            "window_seconds": max(0.0, now - (window.closed_at if window.closed_at is not None else now)),
            "decided_at_ms": decided_at,
        })

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        assert self.producer is not None
        while True:
            try:
                self.producer.produce(topic, value=value, key=key)
                return
            except BufferError:  # local queue full: let librdkafka send, then retry
                self.producer.poll(0.05)

    def _transact(self, windows: list[BatchWindow]) -> bool:
        """Publish ``windows``' decisions and reports, pending dead letters and offsets in one
        transaction. Returns True when committed; on an abortable or retriable error the
        transaction is aborted and the worker rewinds to its committed offsets."""
        assert self.producer is not None and self.consumer is not None
        p = self.producer
        outcomes = []
        try:
            p.begin_transaction()
            for w in windows:
                records, report, n, status = self._decide(w)
                for key, value in records:
                    self._produce(self.decisions_topic, key, value)
                self._produce(self.reports_topic, w.batch_id.encode(), report)
                outcomes.append((w, n, status))
            for key, value in self.pending.dead_letters:
                self._produce(self.dead_topic, key, value)
            for w in windows:
                self.tracker.release(w.batch_id)
            offsets = self.tracker.committable()
            p.send_offsets_to_transaction(
                [TopicPartition(t, part, off, f"{_POS_PREFIX}{pos}") for (t, part), (off, pos) in offsets.items()],
                self.consumer.consumer_group_metadata(), self.cfg.transaction_timeout_s)
            if self.cfg.debug_sleep_before_commit_s > 0:
                log.warning("debug: transaction open (%d batches), sleeping %.1f s before commit",
                            len(windows), self.cfg.debug_sleep_before_commit_s)
                sys.stderr.flush()
                time.sleep(self.cfg.debug_sleep_before_commit_s)
            self._commit(p)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise  # fenced by a newer instance, or the producer is unusable: stop
            log.warning("transaction failed (%s); aborting and rewinding to committed offsets", exc)
            self._abort_and_rewind()
            return False
        except BaseException:
            # A bug (not a bad record: those never reach here). Leave nothing half-open.
            log.exception("unexpected error inside a transaction; aborting")
            self._abort_and_rewind()
            raise
        # Committed: make it visible to the in-memory state.
        self.stats.transactions += 1
        self.stats.dead_letters += len(self.pending.dead_letters)
        self.pending = _Pending()
        for w, n, status in outcomes:
            self.decided.add(w.batch_id)
            self.decided_users[w.batch_id] = frozenset(w.scores)
            while len(self.decided_users) > DECIDED_USERS_KEPT:
                self.decided_users.popitem(last=False)
            self.windows.pop(w.batch_id, None)
            self.stats.decisions += n
            if status == "rejected":
                self.stats.batches_rejected += 1
            else:
                self.stats.batches_decided += 1
            log.info("batch %s decided: %d decisions (%s)", w.batch_id, n, status)
        self.committed.update({tp: off for tp, (off, _) in offsets.items()})
        return True

    def _commit(self, p: Producer) -> None:
        """commit_transaction, retried while the error is retriable (confluent-kafka's recipe)."""
        while True:
            try:
                p.commit_transaction(self.cfg.transaction_timeout_s)
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.retriable() and not err.txn_requires_abort():
                    log.warning("commit_transaction retriable error, retrying: %s", err)
                    continue
                raise

    def _abort_and_rewind(self) -> None:
        """Abort the open transaction, drop every in-memory batch and re-read from the
        committed offsets (the same state as a fresh restart)."""
        assert self.producer is not None
        try:
            self.producer.abort_transaction(self.cfg.transaction_timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise
            log.warning("abort_transaction: %s", exc)
        self.stats.aborts += 1
        self.windows.clear()
        self.tracker = OffsetTracker()
        self.pending = _Pending()
        self._assign_committed()


def _registry(url: str) -> Any:
    from streams.avro.registry import make_registry

    return make_registry(url)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m streams.decide.worker",
                                 description="BanditLP allocator worker (transactional, exactly once).")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers.")
    ap.add_argument("--prefix", default="", help="Topic name prefix.")
    ap.add_argument("--group-id", default=None, help="Default: <prefix>banditlp-allocator.")
    ap.add_argument("--transactional-id", default=None, help="Default: <prefix>banditlp-allocator-tx.")
    ap.add_argument("--highs-threshold", type=int, default=50_000, help="Pairs up to which HiGHS solves.")
    ap.add_argument("--rounding", choices=("sample", "top"), default="sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--poll-timeout", type=float, default=0.2, help="Seconds.")
    ap.add_argument("--dead-letter-flush", type=float, default=1.0, help="Seconds.")
    ap.add_argument("--unknown-batch-timeout", type=float, default=300.0, help="Seconds.")
    ap.add_argument("--open-timeout", type=float, default=3600.0,
                    help="Seconds a batch may stay OPENED without CLOSED before it is decided.")
    ap.add_argument("--stats-interval", type=float, default=30.0, help="Seconds.")
    ap.add_argument("--schema-registry-url", default=None)
    ap.add_argument("--max-seconds", type=float, default=None, help="Stop after this long.")
    ap.add_argument("--debug-sleep-before-commit", type=float, default=0.0,
                    help="Crash tests: sleep this long inside each open transaction.")
    ap.add_argument("--log-level", default="INFO")
    return ap.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m streams.decide.worker --bootstrap HOST:PORT --prefix P``; SIGTERM stops cleanly."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {}
    if args.group_id:
        overrides["group_id"] = args.group_id
    if args.transactional_id:
        overrides["transactional_id"] = args.transactional_id
    cfg = AllocatorWorkerConfig.for_prefix(
        args.bootstrap, args.prefix, highs_threshold=args.highs_threshold, rounding=args.rounding,
        seed=args.seed, poll_timeout_s=args.poll_timeout, dead_letter_flush_s=args.dead_letter_flush,
        unknown_batch_timeout_s=args.unknown_batch_timeout, open_timeout_s=args.open_timeout, stats_interval_s=args.stats_interval,
        debug_sleep_before_commit_s=args.debug_sleep_before_commit,
        schema_registry_url=args.schema_registry_url, **overrides)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the current transaction and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        AllocatorWorker(cfg).run(stop_event=stop, max_seconds=args.max_seconds)
    except KafkaException as exc:
        log.error("fatal Kafka error: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
