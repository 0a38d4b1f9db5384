"""Parameters of the two-stage policies (models/policies/two_stage.py, two_stage_baselines.py).

Small frozen dataclasses combined by inheritance: every head takes :class:`HeadParams`, a UCB
adds :class:`BetaParams`, a two-stage policy :class:`TopicParams` and a dynamic one
:class:`MinSizeParams`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.errors import ModelInputError
from models.policies.base import PolicyParams, check_in


def check_optional_int(value: Any, name: str, low: int) -> int | None:
    """``value`` as an int >= low, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or int(value) < low:
        raise ModelInputError(f"{name} must be None or an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class HeadParams(PolicyParams):
    """Parameters of every head.

    Attributes:
        eta: η > 0, the step of the online GLM fit.
        user_dim: d_2, the user tower's width at the end of each row (None: dim // 2).
        budget: B, acquisition scores per round (None: no budget).
    """

    eta: float = 1.0
    user_dim: int | None = None
    budget: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in(self.eta, "eta", 0.0, 1e6, low_open=True)
        object.__setattr__(self, "user_dim", check_optional_int(self.user_dim, "user_dim", 0))
        object.__setattr__(self, "budget", check_optional_int(self.budget, "budget", 1))


@dataclass(frozen=True)
class BetaParams(PolicyParams):
    """β ≥ 0, the UCB weight (0.1 in the paper for every UCB policy)."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in(self.beta, "beta", 0.0, 1e6)


@dataclass(frozen=True)
class TopicParams(PolicyParams):
    """``topics``: one topic label per action (None: one topic each)."""

    topics: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.topics is not None:
            labels = np.asarray(self.topics)
            if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
                raise ModelInputError("topics must be a non-empty 1-d sequence of integer labels")
            object.__setattr__(self, "topics", [int(v) for v in labels])


@dataclass(frozen=True)
class MinSizeParams(PolicyParams):
    """p, DynaTopicRec's minimum size (None: N_item / N_topic)."""

    min_topic_size: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "min_topic_size", check_optional_int(self.min_topic_size, "min_topic_size", 0))


@dataclass(frozen=True)
class GreedyParams(HeadParams):
    """:class:`HeadParams` and γ ∈ [0, 1], the item share of eq. 3 (γ̃ = 1 − γ the user share)."""

    gamma: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in(self.gamma, "gamma", 0.0, 1.0)


@dataclass(frozen=True)
class GalmParams(GreedyParams, BetaParams):
    """:class:`GreedyParams`, β, and eq. 3's confidence matrices ("paper" or "shared", :class:`GalmHead`)."""

    confidence: str = "paper"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.confidence not in ("paper", "shared"):
            raise ModelInputError(f"confidence must be 'paper' or 'shared', got {self.confidence!r}")


@dataclass(frozen=True)
class TwoStageParams(GalmParams, TopicParams):
    """:class:`GalmParams` and ``topics``."""


@dataclass(frozen=True)
class DynamicParams(TwoStageParams, MinSizeParams):
    """:class:`TwoStageParams` and p."""


@dataclass(frozen=True)
class GblmParams(HeadParams, BetaParams):
    """:class:`HeadParams` and β (S-N-GBLM-UCB)."""


@dataclass(frozen=True)
class DynamicGblmParams(GblmParams, TopicParams, MinSizeParams):
    """:class:`GblmParams`, ``topics`` and p."""


@dataclass(frozen=True)
class DynamicGreedyParams(GreedyParams, TopicParams, MinSizeParams):
    """:class:`GreedyParams`, ``topics`` and p."""


@dataclass(frozen=True)
class RandomTopicParams(TopicParams, MinSizeParams):
    """``topics``, p and the budget B; 100 propensity draws (each redraws both stages)."""

    budget: int | None = None
    propensity_draws: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "budget", check_optional_int(self.budget, "budget", 1))
