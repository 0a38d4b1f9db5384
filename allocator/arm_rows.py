"""Per-arm budget rows of the allocation LP: each tuner arm's users spend at most their share of a budget.

The rule the streamed allocator applies for an arm's ``budget_scale`` knob
(``streams.decide.arm_knobs``) and the offline ``banditlp_tuned_budget`` method
(``evaluation.experiment.methods.tuned_budget``) uses, in one place: one more row per arm group,
the group's pairs' costs only, limited to ``s_g * B * n_g / n``. The batch's own rows are kept by
the callers, so the platform's limit ``B`` still holds.
"""

from __future__ import annotations

import numpy as np

from banditlp.arrays import FloatArray, IntArray


def arm_budget_rows(
    cost: FloatArray, budget: FloatArray, pair_group: IntArray, group_users: FloatArray, scale: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The per-arm rows of the scaled budgets.

    Args:
        cost: ``(K, L_s, E)`` the scaled budgets' cost draws.
        budget: ``(L_s,)`` their limits.
        pair_group: ``(E,)`` int64 group of each pair's user.
        group_users: ``(G,)`` scored users per group.
        scale: ``(G,)`` each group's ``budget_scale``.

    Returns:
        ``(rows (K, L_s * G, E), limits (L_s * G,))``, budget-major: row ``l * G + g`` is budget l's
        cost on group g's pairs (0 elsewhere), limited to ``scale_g * budget_l * group_users_g / n``.
    """
    n_groups = group_users.shape[0]
    mask = pair_group[None, :] == np.arange(n_groups)[:, None]  # (G, E)
    rows = cost[:, :, None, :] * mask[None, None, :, :]  # (K, L_s, G, E)
    share = scale * group_users / max(int(group_users.sum()), 1)  # (G,)
    limits = budget[:, None] * share[None, :]  # (L_s, G)
    k, n_budgets, _, e = rows.shape
    out: tuple[FloatArray, FloatArray] = (rows.reshape(k, n_budgets * n_groups, e), limits.reshape(-1))
    return out
