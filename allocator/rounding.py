"""From a fractional allocation to the items actually sent: per user, at most ``k_u`` items.

Two modes:

- ``"sample"`` — systematic sampling, one uniform ``U_u`` per user: walk the user's pairs in a
  fixed order with cumulative sums ``S_e`` of ``x`` and choose pair ``e`` when an integer lies in
  ``(S_{e-1} - U_u, S_e - U_u]``. Each pair is chosen with probability exactly ``x_e`` (as
  ``x_e <= 1`` no pair is chosen twice) and the user gets ``floor`` or ``ceil`` of ``sum_u x``
  items, never more than ``k_u`` because the cumulative sums are clipped at ``k_u`` (which only
  matters for rounding noise when ``sum_u x`` is a hair above an integer cap). The propensity
  logged for off-policy evaluation is ``x_e``, the exact inclusion probability.
- ``"top"`` — deterministic: the user's ``floor(k_u)`` pairs with the largest ``x_e > 0`` (ties:
  larger reward, then lower index). The propensity is 1: the choice is a deterministic function of
  the LP's inputs, so these decisions carry no exploration of their own (all exploration then
  comes from the Thompson samples that built the LP).

Caps are read as integers (``floor(k_u)``): a cap of 1.5 allows one item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from allocator.errors import ProblemValidationError
from allocator.problem import AllocationProblem
from banditlp.arrays import FloatArray, IntArray


@dataclass(frozen=True, eq=False)
class Rounding:
    """The chosen pairs of one rounding.

    Attributes:
        pairs: (n_chosen,) int64 indices into the problem's pairs, sorted by user.
        propensity: (n_chosen,) float64 probability with which each was chosen.
    """

    pairs: IntArray
    propensity: FloatArray


def round_allocation(
    problem: AllocationProblem,
    x: ArrayLike,
    *,
    mode: Literal["sample", "top"] = "sample",
    rng: np.random.Generator | None = None,
) -> Rounding:
    """Choose at most ``floor(k_u)`` pairs per user from the fractional allocation ``x``.

    Args:
        problem: the LP ``x`` solves (for users, caps and rewards).
        x: (n_pairs,) allocation in ``[0, 1]`` with ``sum_u x <= k_u`` (up to rounding noise).
        mode: ``"sample"`` (systematic sampling, propensity ``x_e``) or ``"top"`` (propensity 1).
        rng: the generator for ``"sample"`` (required there, so every draw is seeded by the caller).

    Returns:
        A :class:`Rounding`.

    Raises:
        ProblemValidationError: ``x`` has the wrong shape, NaN, or values outside ``[0, 1]``
            beyond 1e-9; ``rng`` missing in sample mode.
    """
    xa = np.asarray(x, dtype=np.float64)
    if xa.shape != (problem.n_pairs,):
        raise ProblemValidationError(f"x: expected shape ({problem.n_pairs},), got {xa.shape}")
    if not np.isfinite(xa).all() or (xa < -1e-9).any() or (xa > 1 + 1e-9).any():
        raise ProblemValidationError("x: every entry must be finite and in [0, 1]")
    xa = np.clip(xa, 0.0, 1.0)
    order, off = problem.user_order, problem.user_offsets
    deg = np.diff(off)
    users_sorted = np.repeat(np.arange(problem.n_users), deg)
    caps = np.floor(problem.caps + 1e-9)
    xs = xa[order]
    if mode == "sample":
        if rng is None:
            raise ProblemValidationError("rng: sample mode needs a seeded numpy Generator")
        u = rng.random(problem.n_users)
        # within-user cumulative sums, without a global cumsum's drift: subtract each user's base
        cs = np.cumsum(xs)
        base = np.concatenate(([0.0], cs))[off[:-1]]
        inclusive = cs - base[users_sorted]
        cap_e = caps[users_sorted]
        hi = np.minimum(inclusive, cap_e)
        lo = np.minimum(np.maximum(inclusive - xs, 0.0), cap_e)
        shift = u[users_sorted]
        # number of integers m with lo < m + U <= hi: 0 or 1 since hi - lo <= x_e <= 1
        chosen = (np.floor(hi - shift) - np.floor(lo - shift)) >= 1.0
        chosen &= xs > 0
        pairs = order[chosen]
        return Rounding(pairs=pairs, propensity=xa[pairs])
    if mode == "top":
        key = np.lexsort((np.arange(problem.n_pairs), -problem.reward, -xa, problem.user))
        start = off[:-1][problem.user[key]]
        rank = np.arange(problem.n_pairs) - start
        pick = key[(rank < caps[problem.user[key]]) & (xa[key] > 0)]
        return Rounding(pairs=pick, propensity=np.ones(pick.size))
    raise ProblemValidationError(f"mode: expected 'sample' or 'top', got {mode!r}")
