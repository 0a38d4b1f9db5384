"""A send batch of the email world and its allocations: the candidates, the constraints' right-hand
sides, what an allocation earns and spends, and the greedy and exact-LP allocations of a batch.

Pure values and functions over flat pair arrays (``E`` pairs, user-major), shared by the world
(:mod:`evaluation.email_world`), the experiment's methods and the health monitor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

import allocator
from allocator import AllocationProblem, AllocatorError, InfeasibleAllocation, ProblemValidationError, Status
from banditlp.arrays import Float32Array, FloatArray, IntArray, weighted_bincount
from evaluation.errors import EvaluationInputError, OracleInfeasible

_S = TypeVar("_S", bound=np.generic)


@dataclass(frozen=True, eq=False)
class CandidateBatch:
    """One send batch: every user with its candidate items, as flat pair arrays.

    Pairs are grouped by user (user-major) and items are sorted within a user. ``E`` is
    ``n_users * candidates_per_user``. Arrays are read-only.

    Attributes:
        batch_id: ``"email-s{seed}-b{batch_index:06d}"``; the Kafka key of batch-control.
        batch_index: The index this batch was generated from.
        user_ids: ``(n_users,)`` int64, ``0 .. n_users - 1``; a user's id is also its index
            into :attr:`BatchConstraints.user_cap`.
        pair_user: ``(E,)`` int64 user id of each pair.
        pair_item: ``(E,)`` int64 item id of each pair.
        pair_provider: ``(E,)`` int64 provider id of each pair's item.
        features: ``(E, feature_dim)`` float32 pair features (see :meth:`EmailWorld.pair_features`).
    """

    batch_id: str
    batch_index: int
    user_ids: IntArray
    pair_user: IntArray
    pair_item: IntArray
    pair_provider: IntArray
    features: Float32Array

    @property
    def n_pairs(self) -> int:
        """Number of (user, item) pairs ``E`` in the batch."""
        return int(self.pair_user.shape[0])


@dataclass(frozen=True, eq=False)
class BatchConstraints:
    """Right-hand sides of one batch's constraints (the LP rows of every allocator).

    Attributes:
        budget: ``(L,)`` platform budgets; ``L = 1`` here, row 0 on expected unsubscriptions.
            ``inf`` means no budget.
        provider_min: ``(P,)`` minimum expected exposure (sum of x) per provider; 0 for none.
        provider_max: ``(P,)`` maximum exposure per provider; ``inf`` for none.
        user_cap: ``(n_users,)`` int64 most items per user, indexed by user id.
        budget_names: ``(L,)`` what each budget row limits.
    """

    budget: FloatArray
    provider_min: FloatArray
    provider_max: FloatArray
    user_cap: IntArray
    budget_names: tuple[str, ...] = ("expected_unsubscriptions",)


@dataclass(frozen=True, eq=False)
class OracleResult:
    """An allocation of one batch and what it earns and spends under the true model.

    Attributes:
        x: ``(E,)`` float64 in [0, 1]: the (possibly fractional) send weight of each pair.
        objective: ``sum(x * reward)``: expected reward of the allocation.
        expected_cost: ``(L,)`` ``cost.T @ x``; here expected unsubscriptions.
        provider_exposure: ``(P,)`` ``sum(x)`` per provider.
    """

    x: FloatArray
    objective: float
    expected_cost: FloatArray
    provider_exposure: FloatArray


def greedy_allocation(reward: ArrayLike, pair_user: ArrayLike, user_cap: ArrayLike) -> FloatArray:
    """Each user's ``user_cap`` highest-reward pairs (those with positive reward), vectorised.

    Args:
        reward: ``(E,)`` reward of each pair.
        pair_user: ``(E,)`` int user index of each pair (into ``user_cap``); lists may be ragged.
        user_cap: ``(n_users,)`` most pairs per user.

    Returns:
        ``(E,)`` float64 0/1 allocation.
    """
    reward = np.asarray(reward, dtype=float)
    pair_user = np.asarray(pair_user, dtype=np.int64)
    # Sort by user, then by reward descending; a pair's rank within its user is its position
    # minus the position of its user's first pair.
    order = np.lexsort((-reward, pair_user))
    sorted_user = pair_user[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_user, sorted_user, side="left")
    x = np.zeros(order.size)
    x[order] = (rank < np.asarray(user_cap)[sorted_user]) & (reward[order] > 0)
    return x


def solve_allocation_lp(
    reward: ArrayLike,
    cost: ArrayLike,
    pair_user: ArrayLike,
    pair_provider: ArrayLike,
    constraints: BatchConstraints,
) -> OracleResult:
    """Solve the BanditLP allocation LP exactly with the allocator's HiGHS solver.

    ``max reward @ x`` s.t. ``sum_{e in user u} x_e <= user_cap[u]``,
    ``cost[:, l] @ x <= budget[l]`` (finite budgets only),
    ``provider_min[p] <= sum_{e in provider p} x_e <= provider_max[p]`` (positive minimums and
    finite maximums only), ``0 <= x <= 1``. The LP is an :class:`allocator.AllocationProblem`
    solved with ``allocator.solve(..., "highs")`` (interior point with crossover, so ``x`` is an
    optimal vertex).

    Args:
        reward: ``(E,)`` objective coefficients.
        cost: ``(E, L)`` budget coefficients.
        pair_user: ``(E,)`` int user index of each pair (into ``constraints.user_cap``).
        pair_provider: ``(E,)`` int provider index of each pair (into the provider bounds).
        constraints: Right-hand sides.

    Returns:
        The optimal allocation, its objective, costs and exposures.

    Raises:
        EvaluationInputError: on inconsistent shapes, or inputs the LP rejects (no pairs, ids out
            of range, NaN or infinite coefficients, a negative cap).
        OracleInfeasible: if the LP has no feasible point, or HiGHS does not reach an optimum.
    """
    reward = np.asarray(reward, dtype=float)
    cost = np.asarray(cost, dtype=float)
    n_pairs = reward.shape[0]
    n_providers = constraints.provider_min.shape[0]
    if (
        reward.ndim != 1
        or cost.shape != (n_pairs, constraints.budget.shape[0])
        or np.shape(pair_user) != (n_pairs,)
        or np.shape(pair_provider) != (n_pairs,)
        or constraints.provider_max.shape != (n_providers,)
    ):
        raise EvaluationInputError(
            f"inconsistent LP shapes: reward {reward.shape}, cost {cost.shape}, "
            f"budget {constraints.budget.shape}, pair_user {np.shape(pair_user)}, "
            f"pair_provider {np.shape(pair_provider)}, provider bounds "
            f"{constraints.provider_min.shape}/{constraints.provider_max.shape}"
        )
    # Only the rows that can bind are written: finite budgets, positive minimums, finite maximums.
    has_budget = np.isfinite(constraints.budget)
    provider_min = np.where(constraints.provider_min > 0, constraints.provider_min, -np.inf)
    provider_max = np.where(np.isfinite(constraints.provider_max), constraints.provider_max, np.inf)
    context = (
        f"budgets {constraints.budget.tolist()}, provider minimum total "
        f"{float(constraints.provider_min.sum()):.3f}, user cap total {int(constraints.user_cap.sum())}"
    )
    if np.any(short := provider_min > provider_max):
        p = int(np.flatnonzero(short)[0])
        raise OracleInfeasible(
            f"allocation LP is infeasible: provider {p} has minimum {provider_min[p]} > maximum "
            f"{provider_max[p]}; {context}"
        )
    try:
        problem = AllocationProblem(
            user=np.asarray(pair_user),
            item=np.arange(n_pairs),
            reward=reward,
            cost=cost[:, has_budget].T,
            budget=constraints.budget[has_budget],
            provider=np.asarray(pair_provider),
            provider_min=provider_min,
            provider_max=provider_max,
            user_cap=np.asarray(constraints.user_cap, dtype=float),
        )
    except ProblemValidationError as exc:
        raise EvaluationInputError(f"invalid allocation LP: {exc}") from exc
    try:
        result = allocator.solve(problem, "highs", crossover=True)
    except InfeasibleAllocation as exc:
        raise OracleInfeasible(f"{exc}; {context}") from exc
    except AllocatorError as exc:
        raise OracleInfeasible(f"allocation LP not solved: {exc}; {context}") from exc
    if result.status not in (Status.OPTIMAL, Status.OPTIMAL_PRIMAL):
        raise OracleInfeasible(f"allocation LP not solved to optimality (status {result.status}); {context}")
    return allocation_result(result.x, reward, cost, np.asarray(pair_provider), n_providers)


def allocation_result(
    x: FloatArray, reward: FloatArray, cost: FloatArray, pair_provider: IntArray, n_providers: int
) -> OracleResult:
    """What allocation ``x`` ``(E,)`` earns (``reward`` ``(E,)``), spends (``cost`` ``(E, L)``) and
    exposes per provider."""
    return OracleResult(
        x=read_only(x),
        objective=float(reward @ x),
        expected_cost=read_only(cost.T @ x),
        provider_exposure=read_only(weighted_bincount(pair_provider, x, n_providers)),
    )


def read_only(array: NDArray[_S]) -> NDArray[_S]:
    """``array``, made read-only in place: arrays held by frozen records are, so the records really
    are immutable."""
    array.flags.writeable = False
    return array
