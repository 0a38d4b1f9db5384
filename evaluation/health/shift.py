"""The email world with a distribution shift from a given batch on: the drift experiment's world.

:class:`ShiftedWorld` wraps an :class:`~evaluation.email_world.EmailWorld` (whose defaults and
code stay as they are) and, from batch ``shift.batch`` on, plays a second world that differs in one
respect:

* ``features``: every user's feature vector moves by ``size`` in each coordinate (the user
  features are standard normal, so ``size`` is in standard deviations). Both what the model sees
  (the pair features) and what the truth uses (every term of the true logits that reads the user
  features) move: the world's user-side terms are linear maps ``U W`` of the user features ``U``,
  so each moves by ``size * 1' W``; ``W = pinv(U) (U W)`` is recovered exactly (``U`` has full
  column rank: many more users than features). The base-rate offsets are kept, so the shift also
  moves the outcome rates, as a real population change would.
* ``conversion`` / ``unsubscription``: the true logit of that outcome moves by ``size`` for every
  pair (``log 2`` about doubles a rate of a few per cent); the features do not change.

Batch-level calls (``candidates``, ``constraints``, ``oracle``, ``expected_reward_and_cost``,
``greedy``, ``batch_outcome``) follow the batch they are given; pair-level calls that carry no
batch (``true_probabilities``, ``draw_outcomes``, ``pair_features``) are the unshifted world's, so
callers that know the batch use :meth:`ShiftedWorld.at`. The warm start's logged batches are
before any shift: they are the training window.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation.email_world import BatchConstraints, CandidateBatch, EmailWorld, OracleResult
from evaluation.errors import EvaluationInputError
from evaluation.run_summary import BatchOutcome

#: The kinds of shift.
SHIFT_KINDS = ("features", "conversion", "unsubscription")
#: The size of each kind when none is given: half a standard deviation of every user feature
#: (a PSI of about 0.25 per feature), and a logit offset of log 2 (about twice the rate).
DEFAULT_SIZES = {"features": 0.5, "conversion": math.log(2.0), "unsubscription": math.log(2.0)}

# The user-side arrays of EmailWorld that are matrix products of its user features.
_LINEAR_USER_TERMS = ("_cross_user", "_hidden_user", "_bil_conv_user", "_bil_unsub_user")


@dataclass(frozen=True)
class Shift:
    """A shift of the world from one batch on.

    Attributes:
        kind: One of :data:`SHIFT_KINDS`.
        batch: The first shifted batch (0-based, >= 0).
        size: Standard deviations (features) or a logit offset (rates).
    """

    kind: str
    batch: int
    size: float

    def __post_init__(self) -> None:
        """Reject a shift that cannot be applied.

        Raises:
            EvaluationInputError: naming the offending field.
        """
        if self.kind not in SHIFT_KINDS:
            raise EvaluationInputError(f"shift kind must be one of {', '.join(SHIFT_KINDS)}, got {self.kind!r}")
        if self.batch < 0:
            raise EvaluationInputError(f"shift batch must be >= 0, got {self.batch}")
        if not math.isfinite(self.size):
            raise EvaluationInputError(f"shift size must be finite, got {self.size}")

    @staticmethod
    def of(kind: str, batch: int, size: float | None = None) -> Shift:
        """A shift with the kind's :data:`DEFAULT_SIZES` when ``size`` is None."""
        if kind not in SHIFT_KINDS:
            raise EvaluationInputError(f"shift kind must be one of {', '.join(SHIFT_KINDS)}, got {kind!r}")
        return Shift(kind, batch, DEFAULT_SIZES[kind] if size is None else size)

    def to_json(self) -> dict[str, Any]:
        """The shift as JSON values."""
        return {"kind": self.kind, "batch": self.batch, "size": self.size}


def shifted_copy(world: EmailWorld, shift: Shift) -> EmailWorld:
    """A copy of ``world`` with ``shift`` applied to every batch (see the module docstring)."""
    out = copy.copy(world)
    # The shift edits the world's private coefficients: EmailWorld has no public way to move
    # them, and its defaults and code must stay as they are.
    state = vars(out)
    if shift.kind == "features":
        users = np.asarray(world.user_features, dtype=float)
        moved = users + shift.size
        pinv = np.linalg.pinv(users)
        for name in _LINEAR_USER_TERMS:
            term = np.asarray(state[name], dtype=float)
            weights = pinv @ term  # (user_dim, width): exact, the term is users @ weights
            state[name] = moved @ weights
        state["_user_bias_unsub"] = 0.3 * moved[:, 0]
        moved.flags.writeable = False
        state["user_features"] = moved
    elif shift.kind == "conversion":
        state["_offset_conv"] = float(state["_offset_conv"]) + shift.size
    else:
        state["_offset_unsub"] = float(state["_offset_unsub"]) + shift.size
    return out


class ShiftedWorld(EmailWorld):
    """``base`` before ``shift.batch``, the shifted world from it on (see the module docstring).

    Args:
        base: The world (its state is shared, not copied).
        shift: The shift.
    """

    def __init__(self, base: EmailWorld, shift: Shift) -> None:
        # Every attribute of the base world, without drawing it again.
        vars(self).update(vars(base))
        self.base = base
        self.shift = shift
        self.shifted = shifted_copy(base, shift)

    def at(self, batch_index: int) -> EmailWorld:
        """The world that plays batch ``batch_index`` (the warm start's logged batches are never shifted)."""
        from evaluation.experiment.batches import FIRST_LOGGED_BATCH

        shifted = self.shift.batch <= batch_index < FIRST_LOGGED_BATCH
        return self.shifted if shifted else self.base

    def candidates(self, batch_index: int) -> CandidateBatch:
        """The batch's candidates in the world that plays it."""
        return self.at(batch_index).candidates(batch_index)

    def expected_reward_and_cost(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray]:
        """True LP coefficients of a batch, in the world that plays it."""
        return self.at(batch.batch_index).expected_reward_and_cost(batch)

    def constraints(self, batch: CandidateBatch) -> BatchConstraints:
        """The batch's constraints, in the world that plays it."""
        return self.at(batch.batch_index).constraints(batch)

    def oracle(self, batch: CandidateBatch, constraints: BatchConstraints | None = None) -> OracleResult:
        """The batch's oracle LP, in the world that plays it."""
        return self.at(batch.batch_index).oracle(batch, constraints)

    def greedy(self, batch: CandidateBatch) -> OracleResult:
        """The batch's greedy allocation, in the world that plays it."""
        return self.at(batch.batch_index).greedy(batch)

    def batch_outcome(self, batch: CandidateBatch, x: Any, rng: np.random.Generator, **kwargs: Any) -> BatchOutcome:
        """The batch's outcome record, in the world that plays it."""
        return self.at(batch.batch_index).batch_outcome(batch, x, rng, **kwargs)


def world_at(world: EmailWorld, batch_index: int) -> EmailWorld:
    """The world that plays ``batch_index``: :meth:`ShiftedWorld.at`, or ``world`` itself."""
    return world.at(batch_index) if isinstance(world, ShiftedWorld) else world
