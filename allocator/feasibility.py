"""Cheap certificates of infeasibility, checked before (and reported beside) any solve.

Both checks relax the LP, so a conflict they find is a proof that the LP is infeasible; they
do not find every infeasibility (the solvers then report the rest).
"""

from __future__ import annotations

import numpy as np

from allocator.errors import ConstraintViolation
from allocator.problem import AllocationProblem
from banditlp.arrays import FloatArray, IntArray, weighted_bincount


def _cheapest_units(key: FloatArray, group: IntArray, need: FloatArray, n_groups: int) -> FloatArray:
    """Least total ``key`` of ``need[g]`` units from group ``g`` (each pair gives at most 1 unit).

    Args:
        key: (n_pairs,) nonnegative price of one unit of each pair.
        group: (n_pairs,) group of each pair.
        need: (n_groups,) units needed (>= 0; may exceed the group's size: then all of it).
        n_groups: number of groups.

    Returns:
        (n_groups,) least cost, the fractional last unit priced pro rata.
    """
    # sort by key, then a stable sort by group (radix sort when the ids fit in 16 bits): the
    # same order as lexsort((key, group)), several times faster at 1e6+ pairs
    by_key = np.argsort(key)
    gk = group[by_key]
    if n_groups <= np.iinfo(np.int16).max:
        gk = gk.astype(np.int16)
    order = by_key[np.argsort(gk, kind="stable")]
    g, k = group[order], key[order]
    start = np.searchsorted(g, np.arange(n_groups))
    pos = np.arange(g.shape[0]) - start[g]  # 0-based rank within the group
    take = np.clip(need[g] - pos, 0.0, 1.0)  # full units first, then the fraction
    return weighted_bincount(g, take * k, n_groups)


def precheck(problem: AllocationProblem) -> tuple[ConstraintViolation, ...]:
    """Conflicts that make ``problem`` infeasible, found by two relaxations.

    1. A provider minimum above what its pairs can carry, ``lo_p > sum_{e of p} min(1, k_u)``.
    2. A budget row with nonnegative costs below the cheapest way to meet every provider
       minimum (user caps dropped, so the bound is valid).

    Returns:
        The conflicts, each with the amount by which the constraint would have to give way.
    """
    lo = np.where(np.isfinite(problem.provider_min), np.maximum(problem.provider_min, 0.0), 0.0)
    out: list[ConstraintViolation] = []
    carry = np.bincount(
        problem.provider, weights=np.minimum(1.0, problem.caps[problem.user]), minlength=problem.n_providers
    )
    for p in np.flatnonzero(lo > carry * (1 + 1e-12) + 1e-12):
        gap = float(lo[p] - carry[p])
        out.append(
            ConstraintViolation(
                "provider_min",
                int(p),
                gap,
                gap / max(lo[p], 1.0),
                f"minimum {lo[p]:.6g} exceeds the {carry[p]:.6g} its pairs can carry",
            )
        )
    if lo.any():
        for row in range(problem.n_budgets):
            c = problem.cost[row]
            if (c < 0).any():
                continue
            need = float(_cheapest_units(c, problem.provider, lo, problem.n_providers).sum())
            b = float(problem.budget[row])
            if need > b + 1e-9 * max(abs(b), 1.0):
                out.append(
                    ConstraintViolation(
                        "budget",
                        row,
                        need - b,
                        (need - b) / max(abs(b), float(c.max()), 1e-300),
                        f"provider minimums need at least {need:.6g} of budget {row}, which is {b:.6g}",
                    )
                )
    out.sort(key=lambda v: -v.relative)
    return tuple(out)
