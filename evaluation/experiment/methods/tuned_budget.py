"""``banditlp_tuned_budget``: ``banditlp_tuned`` whose arms also set a per-arm unsubscription budget scale.

An arm is a setting ``(τ, s)``. Its users' pairs are scored at τ, as in ``banditlp_tuned``; in the
batch LP they get one more unsubscription row beside the batch's own: that arm's pairs' sampled
costs only, limited to ``s · B · n_a / n`` (``n_a`` the arm's users in the batch, ``n`` all its
users). It is the streamed allocator's ``budget_scale`` rule, the same function
(:func:`allocator.arm_rows.arm_budget_rows`). The batch's row ``B`` stays, so the platform's limit
holds whatever the scales (with every s ≤ 1 the arm rows bind first).

Why both knobs. ``banditlp_tuned`` (τ alone) overspent the budget for two measured reasons
(README, Tuning): every fixed τ > 0 spends 1.03–1.06 of it, because the cost estimates are low on
the pairs the LP picks; and a mixture of τ in one LP spends more than any τ alone, because the LP
takes the cheapest-looking draws first, most often the high-τ users'. The per-arm rows remove the
second: each arm spends at most its share on its own draws, so an arm's spend no longer depends on
the other arms. The scale s can correct the first: the tuner's guardrail is each arm's realised
unsubscriptions over its unscaled share ``B · n_a / n`` (:func:`~evaluation.experiment.methods.tuned.arm_metrics`),
so an arm whose estimates are low overspends its share and the tuner moves to a smaller s.

Everything else is ``banditlp_tuned``'s (:class:`~evaluation.experiment.methods.tuned.TunedMethod`):
the salted hash, warm-up, chunks of ``chunk_users`` users per cell of the (τ, s) grid as
observations at the chunk's mean setting, the three metrics and guardrails, the GPs and Thompson
sampling over the 2-D box, the relayout of the most probable arms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from allocator.arm_rows import arm_budget_rows
from banditlp.arrays import FloatArray, IntArray
from evaluation.email_batch import BatchConstraints, CandidateBatch
from evaluation.errors import EvaluationInputError
from evaluation.experiment.lp import SolvedLP
from evaluation.experiment.methods.base import MethodContext
from evaluation.experiment.methods.tuned import ArmTotals, TunedConfig, TunedMethod


@dataclass(frozen=True, kw_only=True)
class TunedBudgetConfig(TunedConfig):
    """How ``banditlp_tuned_budget`` tunes (τ, s): :class:`TunedConfig`'s fields, and

    Attributes:
        scale_bounds: The box of the budget scale s.
        warmup_scales: The warm-up arms' s, paired with ``warmup_taus`` (the default pairs are a
            Latin square over the box: every τ level and every s level once).
        scale_bin: Width of the grid cells in s (``tau_bin`` in τ) the observations are pooled in;
            4 × 4 cells over the default box, as many as ``banditlp_tuned``'s 16 τ bins.
        window_batches: Fit on the arm-batches of the last this many fed-back batches only (0: all).
            The overspend the scale corrects falls as the model learns (usage ~1.2 in the first
            batches, ~1.0 from the tenth), so old observations describe another bias.
    """

    scale_bounds: tuple[float, float] = (0.7, 1.1)
    warmup_scales: tuple[float, ...] = (0.9, 1.1, 0.7, 1.0, 0.8)
    tau_bin: float = 0.5
    scale_bin: float = 0.1
    window_batches: int = 0
    experiment: str = "banditlp_tuned_budget"

    def __post_init__(self) -> None:
        """Reject settings that cannot tune.

        Raises:
            EvaluationInputError: naming the field.
        """
        super().__post_init__()
        lo, hi = self.scale_bounds
        checks = (
            (
                math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi,
                f"scale_bounds must be 0 <= lo < hi: {lo}, {hi}",
            ),
            (
                len(self.warmup_scales) == len(self.warmup_taus) and all(lo <= s <= hi for s in self.warmup_scales),
                "warmup_scales must pair with warmup_taus and lie inside scale_bounds",
            ),
            (self.scale_bin > 0, f"scale_bin must be > 0, got {self.scale_bin}"),
            (self.window_batches >= 0, f"window_batches must be >= 0, got {self.window_batches}"),
        )
        for ok, message in checks:
            if not ok:
                raise EvaluationInputError(message)


def batch_arm_rows(
    cost: FloatArray, budget: float, pair_user: IntArray, user_arm: IntArray, scale: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The per-arm unsubscription rows of one batch.

    Args:
        cost: ``(E,)`` the batch row's coefficients (the LP's cost draws).
        budget: The batch's limit B.
        pair_user: ``(E,)`` user of each pair.
        user_arm: ``(U,)`` every user's arm.
        scale: ``(A,)`` each arm's s.

    Returns:
        ``(rows (G, E), limits (G,))``, one row per arm with users in the batch, in arm order: that
        arm's pairs' costs (0 elsewhere), limited to ``s_a · B · n_a / n``, where ``n_a`` counts the
        arm's users among the batch's and ``n`` the batch's users (those with a pair).
    """
    users = np.unique(pair_user)
    present, group_of_user = np.unique(user_arm[users], return_inverse=True)  # (G,), (n,)
    group_users = np.bincount(group_of_user, minlength=present.size).astype(np.float64)
    group_of_arm = np.full(scale.shape[0], -1, dtype=np.int64)
    group_of_arm[present] = np.arange(present.size)
    pair_group = group_of_arm[user_arm[pair_user]]
    rows, limits = arm_budget_rows(
        np.asarray(cost, dtype=np.float64)[None, None, :],
        np.array([budget], dtype=np.float64),
        pair_group,
        group_users,
        np.asarray(scale, dtype=np.float64)[present],
    )
    return rows[0], limits


class TunedBudgetMethod(TunedMethod):
    """``banditlp_tuned_budget`` (see the module docstring); speaks
    :class:`~evaluation.experiment.methods.base.Method`.

    Args:
        config: The tuning settings.
        context: The world's sizes.
    """

    config: TunedBudgetConfig

    def __init__(self, config: TunedBudgetConfig, context: MethodContext) -> None:
        super().__init__(config, context)

    def _fitted_history(self) -> list[tuple[tuple[float, ...], ArmTotals]]:
        """The arm-batches of the last ``window_batches`` fed-back batches (all with 0)."""
        w = self.config.window_batches
        if w == 0 or len(self.batch_starts) <= w:
            return self.history
        return self.history[self.batch_starts[-w] :]

    def _warmup_points(self) -> FloatArray:
        return np.column_stack([self.config.warmup_taus, self.config.warmup_scales]).astype(float)

    def _bounds(self) -> tuple[tuple[float, float], ...]:
        return (self.config.tau_bounds, self.config.scale_bounds)

    def _bin_widths(self) -> tuple[float, ...]:
        return (self.config.tau_bin, self.config.scale_bin)

    def _solve(
        self,
        batch: CandidateBatch,
        constraints: BatchConstraints,
        reward: FloatArray,
        cost: FloatArray,
        mean_cost: FloatArray,
        user_arm: IntArray,
    ) -> SolvedLP:
        """The batch's LP with one unsubscription row per arm (on the paced draws,
        :func:`batch_arm_rows`, and with ``banditlp``'s mean row their twins on the paced means)
        beside the batch's rows as ``banditlp`` has them."""
        budget = float(constraints.budget[0])
        if not math.isfinite(budget):  # no budget, nothing to share
            return self.inner.solve(batch, constraints, reward, cost, mean_cost)
        assert self.distribution is not None
        scale = np.array([p[1] for p in self.distribution.points], dtype=float)
        rho = self.inner.cost_factor()
        rows, limits = batch_arm_rows(rho * cost, budget, batch.pair_user, user_arm, scale)
        if self.config.model.budget_on == "mean_row":
            # each arm's row gets its twin on the means, as in the streamed allocator: a pooled
            # mean row alone would let the arms trade budget again
            twins, twin_limits = batch_arm_rows(rho * mean_cost, budget, batch.pair_user, user_arm, scale)
            rows, limits = np.vstack([rows, twins]), np.concatenate([limits, twin_limits])
        return self.inner.solve(batch, constraints, reward, cost, mean_cost, extra_rows=(rows, limits))

    def policy(self) -> dict[str, float]:
        """``banditlp_tuned``'s scalars, and ``scale_mean`` and ``arm{k}_scale`` (the arms in the same
        order of τ as ``arm{k}_tau``; nan past the last arm)."""
        out = super().policy()
        assert self.distribution is not None
        taus = np.asarray(self.distribution.taus)
        scales = np.array([p[1] for p in self.distribution.points])
        probs = np.asarray(self.distribution.probs)
        order = np.argsort(taus, kind="stable")
        out["scale_mean"] = float(scales @ probs)
        for k in range(self.config.max_arms):
            out[f"arm{k}_scale"] = float(scales[order[k]]) if k < order.size else math.nan
        return out
