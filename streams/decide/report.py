"""The ``allocation-reports`` value of one batch: objective, duals, usage, violations, solver stats."""

from __future__ import annotations

import numpy as np

from streams.avro.serde import AvroSerde
from streams.decide.batch_lp import BatchLP
from streams.decide.solve import Solved
from streams.decide.window import BatchWindow


def encode_report(
    serde: AvroSerde,
    window: BatchWindow,
    lp: BatchLP,
    sol: Solved | None,
    decided_at: int,
    now: float,
    open_timeout_s: float,
    status: str | None = None,
) -> bytes:
    """Encode the batch's allocation report (``sol`` None: rejected, zero allocation).

    ``now`` is the worker's clock when the decisions are encoded: ``window_seconds`` runs from
    CLOSED to then.
    """
    x = sol.x if sol is not None else np.zeros(lp.n_pairs)
    used, exposure, _ = lp.usage(x)
    bd = sol.budget_dual if sol is not None else np.zeros(len(lp.budget))
    pdual = sol.provider_dual if sol is not None else np.zeros(len(lp.provider_names))
    base_status = status if status is not None else (sol.status if sol is not None else "rejected")
    if window.closed is None:
        base_status += f" (never closed: decided after the {open_timeout_s:g} s open timeout)"
    return serde.encode(
        "allocation-reports",
        {
            "batch_id": window.batch_id,
            "status": base_status,
            "solver": sol.solver if sol is not None else "none",
            "objective": float(lp.reward @ x) if lp.n_pairs else 0.0,
            "n_users": lp.n_users,
            "n_pairs": lp.n_pairs,
            # named when batch-control lists the batch's users; otherwise the count alone
            "missing_users": window.missing_users(),
            "n_missing": window.n_missing,
            "budgets": [
                {"name": lp.budget_names[b], "dual": float(bd[b]), "used": float(used[b]), "limit": float(lp.budget[b])}
                for b in range(len(lp.budget))
            ],
            # allocator's provider dual is > 0 when the maximum binds; the report's schema is the
            # other way round (positive: the minimum binds), hence the minus.
            "providers": [
                {
                    "provider_id": lp.provider_names[p],
                    "dual": float(-pdual[p]),
                    "exposure": float(exposure[p]),
                    "min_exposure": float(lp.provider_min[p]),
                    "max_exposure": None if np.isinf(lp.provider_max[p]) else float(lp.provider_max[p]),
                }
                for p in range(lp.n_constrained)
            ],
            "max_violation": sol.max_violation if sol is not None else 0.0,
            "max_relative_violation": sol.max_relative_violation if sol is not None else 0.0,
            "iterations": sol.iterations if sol is not None else 0,
            "solve_seconds": sol.seconds if sol is not None else 0.0,
            "window_seconds": max(0.0, now - (window.closed_at if window.closed_at is not None else now)),
            "decided_at_ms": decided_at,
        },
    )
