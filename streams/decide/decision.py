"""Deciding one batch, without Kafka: its LP solved, rounded per user, and encoded as decisions and a report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from allocator import AllocatorError, round_allocation
from streams.avro.decisions import DecisionColumns
from streams.avro.serde import AvroSerde
from streams.decide.batch_lp import BatchLP, batch_seed
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.report import encode_report
from streams.decide.solve import AllocationRejected, DualMemory, solve_batch
from streams.decide.window import BatchWindow

log = logging.getLogger("banditlp.allocator")


@dataclass(frozen=True, eq=False)
class DecidedBatch:
    """What one batch's transaction publishes.

    Attributes:
        records: ``(user key, decisions value)`` per decided user, in the LP's user order.
        report: the ``allocation-reports`` value.
        status: the solver's status, or ``"rejected"`` (no publishable allocation: no decisions,
            and the report says why).
    """

    records: list[tuple[bytes, bytes]]
    report: bytes
    status: str


def decide_batch(
    window: BatchWindow, cfg: AllocatorWorkerConfig, serde: AvroSerde, duals: DualMemory, clock: Callable[[], float]
) -> DecidedBatch:
    """Solve, round and encode one batch.

    ``clock`` (the worker's monotonic clock) dates the report's ``window_seconds``; ``duals`` starts
    the dual solver and learns this batch's prices.
    """
    assert window.opened is not None
    control = window.opened
    lp = BatchLP.build(control, window.scores)
    decided_at = int(time.time() * 1000)
    try:
        problem = lp.to_problem() if lp.n_pairs else None
        sol = solve_batch(lp, cfg, problem, duals)
        x = sol.x
        chosen, propensity = np.zeros(lp.n_pairs, dtype=bool), np.zeros(lp.n_pairs)
        if problem is not None:
            # Seeded by (seed, batch_id): a batch re-decided after a crash draws the same U_u.
            rng = np.random.default_rng(batch_seed(cfg.seed, window.batch_id))
            r = round_allocation(problem, x, mode=cfg.rounding, rng=rng)
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
        report = encode_report(
            serde,
            window,
            lp,
            None,
            decided_at,
            clock(),
            cfg.open_timeout_s,
            status=f"rejected: {exc}"[:500],
        )
        return DecidedBatch([], report, "rejected")
    # One record per user, the whole batch encoded at once (streams.avro.decisions).
    values = serde.encode_decisions(
        DecisionColumns(
            window.batch_id,
            lp.user_ids,
            lp.starts,
            lp.item,
            lp.item_names,
            lp.provider,
            lp.provider_names,
            x,
            chosen,
            propensity,
            [r.model_name for r in lp.records],
            [r.model_version for r in lp.records],
            [r.parameter_version for r in lp.records],
            sol.solver,
            cfg.rounding,
            decided_at,
        )
    )
    records = [(user.encode(), value) for user, value in zip(lp.user_ids, values)]
    # window_seconds ends here: the decisions are encoded and go to the producer next.
    return DecidedBatch(
        records, encode_report(serde, window, lp, sol, decided_at, clock(), cfg.open_timeout_s), sol.status
    )
