"""Exploration floor: mix an LP plan with a spread plan so that every candidate has a send probability.

An LP's plan is a vertex: almost every ``x_e`` is 0 or 1, and a pair the plans of a batch never
choose has propensity 0. Off-policy estimates of another policy then cannot see that pair (the
replay's "unsupported" mass). The floor mixes each plan ``x`` with a plan that spreads every
user's cap over all its candidates, weighted by provider:

    u_e = min(1, k_u w_p(e) / sum_{e' of u} w_p(e'))    (w: provider weights, see below)
    alpha = min(1, min_l B_l / sum_e c_{l,e} u_e, min_p hi_p / sum_{e of p} u_e)
    s = beta x + (1 - beta) alpha u,   beta the least in [0, 1] that meets every provider minimum
    x' = (1 - share) x + share s  =  (1 - w) x + w alpha u,   w = share (1 - beta)

The provider weights start at 1 and are rescaled a few times (iterative proportional fitting)
until the spread meets every provider's minimum and maximum, since an LP's plan typically sits
exactly at the minimums of the providers it would rather not send, and a plain even spread that
falls short of one of them leaves ``beta = 1``: no floor at all. ``alpha u`` meets the user caps,
every budget row and every provider maximum; mixing it with ``x`` keeps those; ``beta`` restores
the provider minimums, which ``x`` meets. So ``x'`` is feasible whenever ``x`` is (every row is
linear and both ends meet it), and every pair gets at least ``w alpha u_e``. What it costs: at
most the fraction ``w`` of the plan's objective, traded for the spread plan's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from allocator.errors import ProblemValidationError
from allocator.problem import AllocationProblem
from banditlp.arrays import FloatArray, weighted_bincount


@dataclass(frozen=True, eq=False)
class FlooredPlan:
    """A plan after the exploration floor.

    Attributes:
        x: ``(E,)`` the mixed plan ``(1 - weight) x + weight * alpha u``.
        weight: ``w``, the share of the spread plan actually mixed in (``share (1 - beta)``).
        alpha: the spread plan's scale (1 when no budget or maximum binds it).
    """

    x: FloatArray
    weight: float
    alpha: float


def spread_plan(problem: AllocationProblem, iterations: int = 50) -> FloatArray:
    """``(E,)`` each user's cap spread over its candidates, provider-weighted towards the bounds.

    ``iterations`` rescalings of the provider weights by ``lo_p / S_p`` (a provider below its
    minimum, aiming 5% above it) or ``hi_p / S_p`` (above its maximum); with no provider bounds
    this is the even spread ``min(1, k_u / n_u)``.
    """
    lo = np.where(np.isfinite(problem.provider_min), problem.provider_min, 0.0)
    hi = problem.provider_max
    weight = np.ones(problem.n_providers)
    u = _weighted_spread(problem, weight)
    for _ in range(iterations):
        s_p = weighted_bincount(problem.provider, u, problem.n_providers)
        low, high = (s_p < lo) & (s_p > 0), s_p > hi
        if not (low.any() or high.any()):
            break
        scale = np.ones_like(weight)
        scale[low] = 1.05 * lo[low] / s_p[low]
        scale[high] = hi[high] / s_p[high]
        weight = weight * scale
        u = _weighted_spread(problem, weight)
    return u


def _weighted_spread(problem: AllocationProblem, provider_weight: FloatArray) -> FloatArray:
    """``u_e = min(1, k_u w_e / sum_{e' of u} w_e')`` with ``w_e`` its provider's weight."""
    w = provider_weight[problem.provider]
    total = weighted_bincount(problem.user, w, problem.n_users)
    return np.minimum(1.0, problem.caps[problem.user] * w / np.maximum(total[problem.user], 1e-300))


def _ratio(limit: FloatArray, used: FloatArray) -> float:
    """``min(1, min_j limit_j / used_j)`` over the rows that ``used`` loads (``used > 0``)."""
    loaded = used > 0
    if not loaded.any():
        return 1.0
    return float(min(1.0, np.min(np.maximum(limit[loaded], 0.0) / used[loaded])))


def with_floor(
    problem: AllocationProblem, x: FloatArray, share: float, spread: FloatArray | None = None
) -> FlooredPlan:
    """Mix ``x`` (a plan of ``problem``) with the spread plan, keeping every row ``x`` keeps.

    Args:
        problem: The LP the plan was solved on (its rows are the ones kept).
        x: ``(E,)`` the plan, in [0, 1].
        share: The floor's share in [0, 1); 0 returns ``x`` unchanged.
        spread: ``spread_plan(problem)`` when the caller has it: it depends on the users, caps and
            provider bounds only, so the K draws of one batch share it (computed here if None).

    Returns:
        The mixed plan, the weight mixed in and the spread plan's scale.

    Raises:
        ProblemValidationError: on a share outside [0, 1) or a plan of the wrong shape.
    """
    if not (math.isfinite(share) and 0.0 <= share < 1.0):
        raise ProblemValidationError(f"exploration floor share must lie in [0, 1), got {share!r}")
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (problem.n_pairs,):
        raise ProblemValidationError(f"plan: expected shape ({problem.n_pairs},), got {x.shape}")
    if share == 0.0:
        return FlooredPlan(x, 0.0, 1.0)
    u = spread_plan(problem) if spread is None else spread
    alpha = _ratio(problem.budget, problem.cost @ u)
    prov_u = weighted_bincount(problem.provider, u, problem.n_providers)
    alpha = min(alpha, _ratio(problem.provider_max, prov_u))
    spread = alpha * u
    # beta_p = (lo_p - S_p) / (X_p - S_p) where the spread falls short of a minimum that x meets.
    s_p = alpha * prov_u
    x_p = weighted_bincount(problem.provider, x, problem.n_providers)
    short = np.isfinite(problem.provider_min) & (s_p < problem.provider_min)
    beta = 0.0
    if short.any():
        gap, need = x_p[short] - s_p[short], problem.provider_min[short] - s_p[short]
        # a minimum x does not exceed the spread's exposure at (gap <= 0) leaves no room: beta = 1
        ratio = np.divide(need, gap, out=np.ones_like(need), where=gap > 0)
        beta = min(1.0, max(0.0, float(ratio.max())))
    weight = share * (1.0 - beta)
    return FlooredPlan((1.0 - weight) * x + weight * spread, weight, alpha)
