"""The allocation LP of one batch, flattened from its scores records (vectorised over pairs).

Budget rows, in order: the batch's ``L0`` budgets on each Thompson draw's sampled costs; with
``mean_rows`` their twins on the calibrated posterior means (``allocator.budget_rows``, names
``"<budget>@mean"``, the same limits); then any per-arm rows (``streams.decide.arm_knobs``).
Why the twins: each plan is chosen on one draw, and the LP favours the pairs whose cost draw came
out low, so a plan's sampled cost under-states what it spends (the optimizer's curse); a plan that
also fits the budget on the means, which its selection did not pick for being low, does not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from itertools import chain

import numpy as np

from allocator import AllocationProblem, violations
from allocator.budget_rows import mean_budget_rows
from streams.records import BatchControlRecord, ScoresRecord

#: Suffix of a budget row's twin on the posterior means.
MEAN_SUFFIX = "@mean"


@dataclass(frozen=True, eq=False)
class BatchLP:
    """The allocation LP of one batch, pairs flattened user-major.

    ``E`` pairs, ``n`` users, ``L`` budgets, ``P`` providers (the batch's constrained
    providers first, then every other provider seen, bounded by ``[0, inf)``).

    Attributes:
        user_ids: ``(n,)`` user ids, sorted (the LP's user order).
        records: ``(n,)`` the scores records in that order.
        starts: ``(n + 1,)`` int64; user ``u``'s pairs are ``starts[u]:starts[u + 1]``.
        user: ``(E,)`` int64 user index of each pair.
        item: ``(E,)`` int64 index of each pair's item in ``item_names``.
        item_names: ``(I,)`` the batch's distinct item ids, sorted.
        reward: ``(E,)`` float64 sampled reward (objective coefficient) of draw 0.
        cost: ``(L, E)`` float64 sampled cost of each budget's outcome, draw 0.
        reward_draws: ``(K, E)``, cost_draws: ``(K, L, E)``: every Thompson draw's reward and
            costs; ``K`` is the smallest number of draws any user's scores carry, so each plan
            uses a draw every user has.
        budget: ``(L,)`` float64 limits.
        budget_names: ``(L,)`` names.
        cost_means: ``(L0, E)`` float64 posterior mean cost of each of the batch's ``L0`` budgets
            (the record's calibrated ``means``, else the mean of the pair's K draws).
        mean_rows: rows ``L0..2 L0 - 1`` are the twins of rows ``0..L0 - 1`` on ``cost_means``.
        provider: ``(E,)`` int64 provider index of each pair.
        provider_names: ``(P,)`` provider ids.
        provider_min, provider_max: ``(P,)`` float64 exposure bounds (``inf`` allowed).
        n_constrained: providers ``0..n_constrained-1`` are the batch's constrained ones.
        user_cap: ``(n,)`` float64 most items per user.

    ``L`` counts every budget row: the batch's ``L0`` budgets, their ``L0`` twins when
    ``mean_rows``, then the per-arm rows that ``streams.decide.arm_knobs.with_arm_knobs`` appends.
    """

    user_ids: list[str]
    records: list[ScoresRecord]
    starts: np.ndarray
    user: np.ndarray
    item: np.ndarray
    item_names: list[str]
    reward: np.ndarray
    cost: np.ndarray
    budget: np.ndarray
    budget_names: list[str]
    provider: np.ndarray
    provider_names: list[str]
    provider_min: np.ndarray
    provider_max: np.ndarray
    n_constrained: int
    user_cap: np.ndarray
    reward_draws: np.ndarray
    cost_draws: np.ndarray
    cost_means: np.ndarray
    mean_rows: bool

    @property
    def n_pairs(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_draws(self) -> int:
        return int(self.reward_draws.shape[0])

    def draw(self, k: int) -> BatchLP:
        """The LP of Thompson draw ``k`` (its reward and costs; everything else shared)."""
        return replace(self, reward=self.reward_draws[k], cost=self.cost_draws[k])

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_budgets(self) -> int:
        """``L0``: the batch's own budgets (rows ``0..L0 - 1``)."""
        return int(self.cost_means.shape[0])

    def batch_row_duals(self, budget_dual: np.ndarray) -> np.ndarray:
        """``(L0,)`` the price of each of the batch's budgets from the duals of every row ``(L,)``:
        its draw row's plus its mean twin's (both rows charge the same outcome, and where they
        coincide the solver may split the price between them in any proportion)."""
        b = self.n_budgets
        duals = np.asarray(budget_dual, dtype=np.float64)
        return duals[:b] + duals[b : 2 * b] if self.mean_rows else duals[:b].copy()

    @classmethod
    def build(cls, control: BatchControlRecord, scores: dict[str, ScoresRecord], mean_rows: bool = False) -> BatchLP:
        """Flatten one batch's scores into LP arrays; ``mean_rows``: each budget gets its twin on
        the posterior means (module docstring; ``AllocatorWorkerConfig.mean_budget_rows``).

        The per-user list comprehensions only gather each record's arrays; every per-pair
        quantity is then built by one ``np.concatenate`` / ``np.repeat``, and the ids become
        indices through one dict lookup per pair in C (``map``), each distinct id sorted once.
        """
        user_ids = sorted(scores)  # deterministic order: a re-decided batch gets the same LP
        records = [scores[u] for u in user_ids]
        counts = np.fromiter((len(r.item_ids) for r in records), dtype=np.int64, count=len(records))
        starts = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        n_pairs = int(starts[-1])
        user = np.repeat(np.arange(len(records), dtype=np.int64), counts)

        n_draws = min((r.n_draws for r in records), default=1)

        def cat(outcome: str) -> np.ndarray:
            """``(K, E)`` the outcome's draws over all pairs."""
            if not records:
                return np.zeros((n_draws, 0))
            return np.concatenate([r.draws[outcome][:n_draws] for r in records], axis=1).astype(np.float64, copy=False)

        reward_draws = cat(control.reward_outcome)
        cost_draws = (
            np.stack([cat(b.outcome) for b in control.budgets], axis=1)
            if control.budgets
            else np.zeros((n_draws, 0, n_pairs))
        )
        budget = np.array([b.limit for b in control.budgets], dtype=np.float64)
        budget_names = [b.name for b in control.budgets]

        cost_means = (
            np.stack([pair_means(records, spec.outcome, cost_draws[:, b, :]) for b, spec in enumerate(control.budgets)])
            if control.budgets
            else np.zeros((0, n_pairs))
        )
        if mean_rows and control.budgets:
            cost_draws, budget = mean_budget_rows(cost_draws, cost_means, budget)
            budget_names = [*budget_names, *(f"{name}{MEAN_SUFFIX}" for name in budget_names)]
        reward, cost = reward_draws[0], cost_draws[0]

        def indices(ids: list[str], index: dict[str, int]) -> np.ndarray:
            return np.fromiter(map(index.__getitem__, ids), dtype=np.int64, count=len(ids))

        pair_items = list(chain.from_iterable(r.item_ids for r in records))  # (E,)
        pair_providers = list(chain.from_iterable(r.provider_ids for r in records))  # (E,)
        item_names = sorted(dict.fromkeys(pair_items))  # one step per distinct item, not per pair
        item = indices(pair_items, {name: i for i, name in enumerate(item_names)})
        # Providers: the constrained ones keep the batch's order (0..C-1), the rest follow, sorted.
        names = [p.provider_id for p in control.providers]
        index = {name: i for i, name in enumerate(names)}
        for name in sorted(dict.fromkeys(pair_providers)):
            if name not in index:
                index[name] = len(names)
                names.append(name)
        provider = indices(pair_providers, index)
        n_c = len(control.providers)
        provider_min = np.zeros(len(names))
        provider_max = np.full(len(names), np.inf)
        provider_min[:n_c] = [p.min_exposure for p in control.providers]
        provider_max[:n_c] = [p.max_exposure for p in control.providers]
        user_cap = np.fromiter(
            (control.default_user_cap if r.user_cap is None else r.user_cap for r in records),
            dtype=np.float64,
            count=len(records),
        )
        return cls(
            user_ids,
            records,
            starts,
            user,
            item,
            item_names,
            reward,
            cost,
            budget,
            budget_names,
            provider,
            names,
            provider_min,
            provider_max,
            n_c,
            user_cap,
            reward_draws,
            cost_draws,
            cost_means,
            bool(mean_rows and control.budgets),
        )

    def to_problem(self) -> AllocationProblem:
        """The ``allocator.AllocationProblem`` of this batch (needs ``n_pairs > 0``).

        Raises:
            ProblemValidationError: malformed arrays (cannot happen for validated records).
        """
        return AllocationProblem(
            user=self.user,
            item=self.item,
            reward=self.reward,
            cost=self.cost,
            budget=self.budget,
            provider=self.provider,
            provider_min=self.provider_min,
            provider_max=self.provider_max,
            user_cap=self.user_cap,
        )

    # -- checks on a solution ----------------------------------------------------------------

    def usage(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cost @ x (L,), provider exposure (P,), per-user sum of x (n,))`` of ``x (E,)``."""
        used = self.cost @ x if self.cost.shape[0] else np.zeros(0)
        exposure = np.bincount(self.provider, weights=x, minlength=len(self.provider_names))
        per_user = np.bincount(self.user, weights=x, minlength=self.n_users)
        return used, exposure, per_user

    def violations(self, x: np.ndarray) -> tuple[float, float]:
        """Largest absolute and relative violation of every constraint by ``x (E,)``, as
        ``allocator.violations`` measures them (0 for an empty batch)."""
        if not self.n_pairs:
            return 0.0, 0.0
        v = violations(self.to_problem(), x)
        return v.max_violation, v.max_relative_violation


def pair_means(records: list[ScoresRecord], outcome: str, draws: np.ndarray) -> np.ndarray:
    """``(E,)`` every pair's calibrated mean of ``outcome`` (the records' ``means``, in their order),
    or the mean of its ``draws (K, E)`` where a record gives none."""
    if not records:
        return np.zeros(0)
    means = np.concatenate(
        [np.asarray(r.means.get(outcome, np.full(len(r.item_ids), np.nan)), np.float64) for r in records]
    )
    return np.where(np.isfinite(means), means, draws.mean(axis=0))


def batch_seed(seed: int, batch_id: str) -> int:
    """A 64-bit seed from (seed, batch_id): stable across processes (unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{batch_id}".encode()).digest()[:8], "big")
