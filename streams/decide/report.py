"""The ``allocation-reports`` value of one batch: objective, duals, usage, violations, solver stats,
what the fallback decided, and the batch's item estimates (the next batches' fallback memory)."""

from __future__ import annotations

import numpy as np

from streams.avro.serde import AvroSerde
from streams.decide.batch_lp import BatchLP
from streams.decide.estimates import Estimates
from streams.decide.fallback_batch import FallbackDecided
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
    fallback: FallbackDecided | None = None,
    estimates: Estimates | None = None,
    names_kept: int = 1_000,
) -> bytes:
    """Encode the batch's allocation report (``sol`` None: rejected, zero allocation).

    ``now`` is the worker's clock when the decisions are encoded: ``window_seconds`` runs from
    CLOSED to then. ``n_users`` counts every user decided (the LP's and ``fallback``'s); the
    fallback's own figures are beside the LP's (``n_fallback``, ``fallback_users``, each budget's
    ``fallback_used`` and provider's ``fallback_exposure``, on the fallback's estimates), and a
    provider minimum the two together leave short is named in the status. Every row of the LP is
    a ``budgets`` entry: the batch's budgets (``used`` on the picked plan's draw), their
    ``"<name>@mean"`` twins when the LP has them (``used`` on the posterior means, ``fallback_used``
    the budget's), then the per-arm rows.
    """
    x = sol.x if sol is not None else np.zeros(lp.n_pairs)
    used, exposure, _ = lp.usage(x)
    bd = sol.budget_dual if sol is not None else np.zeros(len(lp.budget))
    pdual = sol.provider_dual if sol is not None else np.zeros(len(lp.provider_names))
    base_status = status if status is not None else (sol.status if sol is not None else "rejected")
    if window.closed is None:
        base_status += f" (never closed: decided after the {open_timeout_s:g} s open timeout)"
    n_fallback = len(fallback.user_ids) if fallback is not None else 0
    if fallback is not None:
        base_status += f"; fallback: {n_fallback} users, {fallback.sends} sends"
        if fallback.deficit:
            short = ", ".join(f"{p} by {d:.3g}" for p, d in sorted(fallback.deficit.items()))
            base_status += f"; provider minimum short: {short}"
    f_used = fallback.budget_used if fallback is not None else {}
    # a mean twin reports its budget's fallback use: the fallback costs its sends on estimates alone
    n0 = lp.n_budgets
    base = [lp.budget_names[b - n0 if lp.mean_rows and n0 <= b < 2 * n0 else b] for b in range(len(lp.budget))]
    f_exposure = fallback.exposure if fallback is not None else {}
    return serde.encode(
        "allocation-reports",
        {
            "batch_id": window.batch_id,
            "status": base_status,
            "solver": sol.solver if sol is not None else "none",
            "objective": float(lp.reward @ x) if lp.n_pairs else 0.0,
            "n_users": (lp.n_users if sol is not None else 0) + n_fallback,
            "n_pairs": lp.n_pairs,
            # named when batch-control lists the batch's users; otherwise the count alone
            "missing_users": window.missing_users(),
            "n_missing": window.n_missing,
            "n_fallback": n_fallback,
            "fallback_users": fallback.user_ids[:names_kept] if fallback is not None else [],
            "budgets": [
                {
                    "name": lp.budget_names[b],
                    "dual": float(bd[b]),
                    "used": float(used[b]),
                    "limit": float(lp.budget[b]),
                    "fallback_used": f_used.get(base[b], 0.0),
                }
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
                    "fallback_exposure": f_exposure.get(lp.provider_names[p], 0.0),
                }
                for p in range(lp.n_constrained)
            ],
            "max_violation": sol.max_violation if sol is not None else 0.0,
            "max_relative_violation": sol.max_relative_violation if sol is not None else 0.0,
            "iterations": sol.iterations if sol is not None else 0,
            "solve_seconds": sol.seconds if sol is not None else 0.0,
            "window_seconds": max(0.0, now - (window.closed_at if window.closed_at is not None else now)),
            "decided_at_ms": decided_at,
            "item_means": estimates.to_avro() if estimates is not None else [],
        },
    )
