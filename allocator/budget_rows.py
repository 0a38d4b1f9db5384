"""Budget rows on the posterior means beside the sampled ones: a plan must fit its budget twice.

A Thompson plan is chosen on sampled costs, and the LP prefers the pairs whose cost draw came
out low, so the plan's sampled cost under-states what it spends. The guard adds, for each budget,
a second row with the calibrated posterior mean costs and the same limit: the plan meets the
budget under its own draw (exploration) and under the means (which its selection did not pick
for being low). One LP, no re-solves; the streamed allocator (``streams.decide.batch_lp``) and
the offline ``banditlp`` method build the rows here.
"""

from __future__ import annotations

import numpy as np

from allocator.errors import ProblemValidationError
from banditlp.arrays import FloatArray


def mean_budget_rows(
    cost_draws: FloatArray, cost_means: FloatArray, budget: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Every draw's budget rows followed by the mean rows.

    Args:
        cost_draws: ``(K, L, E)`` sampled costs of the L budgets, one slice per Thompson draw.
        cost_means: ``(L, E)`` the same costs' posterior means.
        budget: ``(L,)`` the limits.

    Returns:
        ``(rows (K, 2L, E), limits (2L,))``: row ``l`` is budget l on the draw, row ``L + l`` the
        same budget on the means (identical in every draw), both limited to ``budget[l]``.

    Raises:
        ProblemValidationError: on mismatched shapes or non-finite means.
    """
    draws = np.asarray(cost_draws, dtype=np.float64)
    means = np.asarray(cost_means, dtype=np.float64)
    limits = np.asarray(budget, dtype=np.float64)
    if draws.ndim != 3 or means.shape != draws.shape[1:] or limits.shape != (draws.shape[1],):
        raise ProblemValidationError(
            f"cost_draws (K, L, E), cost_means (L, E) and budget (L,) disagree: "
            f"{draws.shape}, {means.shape}, {limits.shape}"
        )
    if not np.all(np.isfinite(means)):
        raise ProblemValidationError("cost_means must be finite")
    k = draws.shape[0]
    rows = np.concatenate([draws, np.broadcast_to(means, (k, *means.shape))], axis=1)
    return rows, np.concatenate([limits, limits])
