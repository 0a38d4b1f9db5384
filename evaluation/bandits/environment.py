"""The environment protocol every bandit world speaks, so any world plugs into the runner unchanged.

A world written elsewhere needs only these three methods and ``n_actions``; the runner reads the
feature dimension from the first round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.errors import EvaluationInputError


@dataclass(frozen=True)
class Round:
    """One round's candidates.

    Attributes:
        features: (n_actions, d) features, row ``a`` for action ``a``.
        expected: (n_actions,) true expected rewards when the world knows them (gives the
            regret), else None.
    """

    features: FloatArray
    expected: FloatArray | None = None

    def __post_init__(self) -> None:
        if np.ndim(self.features) != 2:
            raise EvaluationInputError(f"features must be (n_actions, d), got shape {np.shape(self.features)}")
        if self.expected is not None and np.shape(self.expected) != (np.shape(self.features)[0],):
            raise EvaluationInputError(
                f"expected must have shape ({np.shape(self.features)[0]},), got {np.shape(self.expected)}"
            )


@runtime_checkable
class Environment(Protocol):
    """A contextual-bandit world.

    Attributes:
        n_actions: actions per round.
    """

    n_actions: int

    def reset(self, seed: int) -> None:
        """Start a new episode whose rounds and rewards are a function of ``seed``."""
        ...

    def next_round(self) -> Round:
        """Draw the next round."""
        ...

    def reward(self, action: int) -> float:
        """Draw the reward of ``action`` in the current round."""
        ...
