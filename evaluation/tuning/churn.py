"""How many users change arm when the tuner's distribution changes: the minimal relayout against the rest.

For each pair of consecutive distributions p → q of a tuner run (or any sequence), over ``n_users``
hashed users (:func:`models.tuner.assignment.user_positions`):

* ``tv``: TV(p, q), the least share any reassignment must move;
* ``relayout``: the share moved by :func:`~models.tuner.assignment.relayout` (which keeps the layout from
  the step before), counted over the users, and ``relayout_exact``, the moved length of [0, 1);
* ``cumulative``: the share moved by laying q out afresh in arm-id order (stateless, same hash);
* ``fresh_hash``: the share moved by re-salting the hash for q (every user redrawn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.errors import EvaluationInputError
from models.tuner.assignment import Layout, initial_layout, moved_fraction, relayout, total_variation, user_positions
from models.tuner.thompson import ParameterDistribution


@dataclass(frozen=True)
class ChurnRow:
    """One change of distribution (see the module docstring for the columns)."""

    step: int
    tv: float
    relayout: float
    relayout_exact: float
    cumulative: float
    fresh_hash: float


def _probs(dist: ParameterDistribution) -> dict[str, float]:
    return {a: float(p) for a, p in zip(dist.arm_ids, dist.probs) if p > 0}


def churn(
    distributions: Sequence[ParameterDistribution], n_users: int = 100_000, experiment: str = "tune"
) -> list[ChurnRow]:
    """One :class:`ChurnRow` per consecutive pair of ``distributions``."""
    if len(distributions) < 2:
        raise EvaluationInputError("churn needs at least two distributions")
    users = [f"user-{i}" for i in range(n_users)]
    u = user_positions(users, experiment)
    layout: Layout = initial_layout(_probs(distributions[0]))
    arms = np.array(layout.assign(u))
    cumulative_prev = fresh_prev = arms
    rows = []
    for step, dist in enumerate(distributions[1:], start=1):
        q = _probs(dist)
        new = relayout(layout, q)
        new_arms = np.array(new.assign(u))
        cumulative = np.array(initial_layout(q).assign(u))
        fresh = np.array(initial_layout(q).assign(user_positions(users, experiment, salt=f"v{step}")))
        rows.append(
            ChurnRow(
                step=step,
                tv=total_variation(layout.masses(), q),
                relayout=float(np.mean(new_arms != arms)),
                relayout_exact=moved_fraction(layout, new),
                cumulative=float(np.mean(cumulative != cumulative_prev)),
                fresh_hash=float(np.mean(fresh != fresh_prev)),
            )
        )
        layout, arms, cumulative_prev, fresh_prev = new, new_arms, cumulative, fresh
    return rows
