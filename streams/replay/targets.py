"""Target policies of a replay: each one's marginal send probability of every logged candidate pair.

A target is what off-policy evaluation estimates the value of: ``probabilities(log)`` gives, for
the ``m`` candidate pairs of a :class:`~streams.replay.log.ReplayLog`, the probability that the
target would have sent each. The registry (:data:`TARGETS`, :func:`register`, :func:`make_target`)
holds them by name; a factory takes the :class:`TargetSettings` of the run.

* ``logged`` — the logging policy itself: the logged propensities (IPS then gives the observed mean).
* ``nn_lp`` — the LP of each batch solved on the logged calibrated means (no Thompson draw) under
  the batch's own constraints (budgets, provider bounds, user caps from its OPENED record), through
  the allocator's own chain (``streams.decide.batch_lp`` and ``solve_batch``: the configured
  solver, the other as fallback, elastic when infeasible). Under systematic-sampling rounding a
  pair is sent with probability exactly its ``x``, so ``x`` is the target.
* ``greedy`` — each user's ``cap`` candidates of highest calibrated mean reward (ties: the earlier
  candidate), with no budget or provider row.
* ``uniform`` — each candidate with probability ``min(cap, n) / n`` for a user of ``n`` candidates.
* ``bts`` — the Open Bandit Dataset's Bernoulli Thompson sampling (``streams.replay.obd``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from banditlp.arrays import FloatArray
from streams.decide.batch_lp import BatchLP
from streams.decide.config import SOLVERS, AllocatorWorkerConfig
from streams.decide.solve import AllocationRejected, solve_batch
from streams.records import ScoresRecord
from streams.replay.errors import ReplayInputError
from streams.replay.log import ReplayLog


@dataclass(frozen=True)
class TargetSettings:
    """What a target may need besides the log.

    Attributes:
        solver: the LP solver of ``nn_lp`` (``"auto"``, ``"highs"``, ``"dual"``), as the allocator's.
        max_relative_violation: the allocator's tolerance before it falls back to another solver.
        dataset_root: the Open Bandit Dataset's folder, for ``bts`` (its prior).
        campaign: the dataset's campaign, for ``bts``.
        n_sim: Monte Carlo draws of ``bts``'s action distribution.
        seed: seed of any randomness a target has (``bts``'s simulation).
    """

    solver: str = "auto"
    max_relative_violation: float = 1e-6
    dataset_root: Path | None = None
    campaign: str = "all"
    n_sim: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ReplayInputError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")


class TargetPolicy(Protocol):
    """A policy whose value a replay estimates."""

    @property
    def name(self) -> str:
        """The policy's name."""
        ...

    def probabilities(self, log: ReplayLog) -> FloatArray:
        """``(m,)`` the probability in [0, 1] that the policy sends each candidate pair of ``log``."""
        ...


TargetFactory = Callable[[TargetSettings], TargetPolicy]
#: The target policies by name.
TARGETS: dict[str, TargetFactory] = {}


def register(name: str, factory: TargetFactory) -> None:
    """Add a target policy under ``name`` (a name already taken is an error)."""
    if name in TARGETS:
        raise ReplayInputError(f"target policy {name!r} is registered already")
    TARGETS[name] = factory


def make_target(name: str, settings: TargetSettings | None = None) -> TargetPolicy:
    """The target policy ``name`` with ``settings`` (defaults when None).

    Raises:
        ReplayInputError: an unknown name.
    """
    if name not in TARGETS:
        raise ReplayInputError(f"unknown target policy {name!r}; known: {', '.join(sorted(TARGETS))}")
    return TARGETS[name](settings or TargetSettings())


def _rank_in_round(log: ReplayLog, score: FloatArray) -> np.ndarray:
    """``(m,)`` each pair's rank (0 = best) by ``score`` within its round; ties keep candidate order."""
    order = np.lexsort((np.arange(log.n_pairs), -score, log.round_index))
    rank = np.empty(log.n_pairs, dtype=np.int64)
    rank[order] = np.arange(log.n_pairs) - log.starts[log.round_index[order]]
    return rank


@dataclass(frozen=True)
class Logged:
    """The logging policy: its own propensities."""

    name: str = "logged"

    def probabilities(self, log: ReplayLog) -> FloatArray:
        return log.propensity.copy()


@dataclass(frozen=True)
class Uniform:
    """Each candidate with probability ``min(cap, n) / n`` (``n`` candidates in the round)."""

    name: str = "uniform"

    def probabilities(self, log: ReplayLog) -> FloatArray:
        n = np.diff(log.starts).astype(np.float64)
        share = np.minimum(log.user_cap.astype(np.float64), n) / n
        return np.asarray(share[log.round_index], dtype=np.float64)


@dataclass(frozen=True)
class Greedy:
    """Each user's ``cap`` candidates of highest calibrated mean reward; no budget or provider rows."""

    name: str = "greedy"

    def probabilities(self, log: ReplayLog) -> FloatArray:
        reward = log.mean("reward")
        if (bad := int(np.count_nonzero(~np.isfinite(reward)))) > 0:
            raise ReplayInputError(f"greedy needs a calibrated mean reward of every pair; {bad} have none")
        rank = _rank_in_round(log, reward)
        return (rank < log.user_cap[log.round_index]).astype(np.float64)


@dataclass(frozen=True)
class NNLP:
    """The batch LP on the logged calibrated means, solved as the allocator solves it.

    Attributes:
        settings: the solver and tolerance (``TargetSettings``).
    """

    settings: TargetSettings
    name: str = "nn_lp"

    def probabilities(self, log: ReplayLog) -> FloatArray:
        """``(m,)`` the LP's ``x`` of every pair, batch by batch (module docstring).

        Raises:
            ReplayInputError: a pair lacks a calibrated mean the batch's LP reads, or no solve
                (elastic included) gave a publishable plan.
        """
        cfg = AllocatorWorkerConfig.for_prefix(
            solver=self.settings.solver, max_relative_violation=self.settings.max_relative_violation
        )
        means = {o: log.mean(o) for o in ("conversion", "unsubscription", "value", "reward")}
        x = np.zeros(log.n_pairs)
        for b, control in enumerate(log.batches):
            rounds = np.flatnonzero(log.round_batch == b)
            if rounds.size == 0:
                continue
            needed = (control.reward_outcome, *(budget.outcome for budget in control.budgets))
            pairs = np.concatenate([np.arange(log.starts[r], log.starts[r + 1]) for r in rounds.tolist()])
            for outcome in needed:
                if outcome not in means:
                    raise ReplayInputError(f"batch {control.batch_id}: no calibrated mean of {outcome!r}")
                if not np.isfinite(means[outcome][pairs]).all():
                    raise ReplayInputError(f"batch {control.batch_id}: pairs without a calibrated mean of {outcome}")
            records = {log.user_ids[r]: self._record(log, control.batch_id, int(r), means) for r in rounds.tolist()}
            lp = BatchLP.build(control, records)
            try:
                solved = solve_batch(lp, cfg)
            except AllocationRejected as exc:
                raise ReplayInputError(f"nn_lp: batch {control.batch_id} could not be solved: {exc}") from exc
            # The LP orders users by id and keeps each user's candidates in order.
            by_user = sorted(rounds.tolist(), key=lambda r: log.user_ids[r])
            lp_pairs = np.concatenate([np.arange(log.starts[r], log.starts[r + 1]) for r in by_user])
            x[lp_pairs] = np.clip(solved.x, 0.0, 1.0)
        return x

    @staticmethod
    def _record(log: ReplayLog, batch_id: str, r: int, means: dict[str, FloatArray]) -> ScoresRecord:
        """Round ``r`` as a scores record whose one Thompson draw is the calibrated means."""
        s, e = int(log.starts[r]), int(log.starts[r + 1])
        own = {o: m[s:e] for o, m in means.items()}
        return ScoresRecord(
            batch_id,
            log.user_ids[r],
            int(log.user_cap[r]),
            "replay",
            0,
            "default",
            log.item_ids[s:e],
            log.provider_ids[s:e],
            own,
            own,
            {o: v[None, :] for o, v in own.items()},
        )


def _bts(settings: TargetSettings) -> TargetPolicy:
    from streams.replay.obd import BTS  # the dataset's modules load only when bts is asked for

    return BTS(settings)


register("logged", lambda settings: Logged())
register("uniform", lambda settings: Uniform())
register("greedy", lambda settings: Greedy())
register("nn_lp", NNLP)
register("bts", _bts)
