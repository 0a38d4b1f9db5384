"""The allocator worker's configuration: one frozen value, built once by the entry point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from streams.kafka.topics import TopicNames

SOLVERS = ("auto", "highs", "dual")


@dataclass(frozen=True)
class AllocatorWorkerConfig:
    """Everything the worker needs besides its connection and serde.

    Attributes:
        topics: maps base topic names to real ones (prefix).
        group_id: consumer group holding the committed offsets (``<prefix>banditlp-allocator``).
        transactional_id: fixed per group, so a restarted worker fences its zombie.
        solver: the first solver of each batch: ``"auto"`` (``allocator.auto_solver``: HiGHS up
            to ``allocator.AUTO_THRESHOLD`` pairs, the dual solver above), ``"highs"`` or
            ``"dual"``; the other one is its fallback.
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
        mean_budget_rows: every budget row of the LP gets a twin on the calibrated posterior
            means with the same limit (``allocator.budget_rows``), so each of the K plans meets
            the budget under its own draw and under the means. Why: a plan chosen on sampled
            costs picks the pairs whose cost draw came out low, so its sampled cost under-states
            what it spends (offline, the expected unsubscriptions under the true probabilities
            averaged 1.06 times the budget); the means were not selected for being low. Off: the
            LP on the draws alone.
        exploration_floor: share in [0, 1) of each plan mixed with a plan that spreads every
            user's cap over all its candidates, scaled to every budget and provider maximum
            (``allocator.exploration``; with ``"sample"`` rounding only): each of the K plans still
            meets every row on its draw, and no candidate has propensity 0, so a replay sees every
            pair a target policy might send. It costs at most that share of the plan's objective.
            0: off.
        stats_interval_s: period of the stats log line.
        transaction_timeout_s: blocking timeout of transactional calls.
        stuck_call_s: a Kafka call of the worker blocked this long ends the process with exit
            code 3 for its supervisor to restart it (``streams.decide.watchdog``: librdkafka can
            block past its own timeout when the group coordinator moves); above
            ``transaction_timeout_s``, so that a call ends by its own timeout first.
        debug_sleep_before_commit_s: sleep inside the open transaction before committing it
            (crash tests only; 0 in production).
    """

    topics: TopicNames
    group_id: str
    transactional_id: str
    solver: str = "auto"
    rounding: Literal["sample", "top"] = "sample"
    seed: int = 0
    poll_timeout_s: float = 0.2
    dead_letter_flush_s: float = 1.0
    unknown_batch_timeout_s: float = 300.0
    open_timeout_s: float = 3600.0
    max_relative_violation: float = 1e-6
    mean_budget_rows: bool = True
    exploration_floor: float = 0.0
    stats_interval_s: float = 30.0
    transaction_timeout_s: float = 60.0
    stuck_call_s: float = 90.0
    debug_sleep_before_commit_s: float = 0.0

    def __post_init__(self) -> None:
        if self.rounding not in ("sample", "top"):
            raise ValueError(f"rounding must be 'sample' or 'top', not {self.rounding!r}")
        if self.stuck_call_s <= 0:
            raise ValueError(f"stuck_call_s must be > 0, not {self.stuck_call_s}")
        if not 0.0 <= self.exploration_floor < 1.0:
            raise ValueError(f"exploration_floor must lie in [0, 1), not {self.exploration_floor!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, not {self.solver!r}")

    @classmethod
    def for_prefix(cls, prefix: str = "", **overrides: Any) -> AllocatorWorkerConfig:
        """The default config of the topic namespace ``prefix``."""
        return cls(
            topics=TopicNames(prefix),
            group_id=f"{prefix}banditlp-allocator",
            transactional_id=f"{prefix}banditlp-allocator-tx",
            **overrides,
        )
