"""The two-stage paper's baselines (§4.1, Table 3): GLM-UCB, N-GLM-UCB, N-Dropout-UCB, N-Greedy on the network.

Rows are ``[x, z]`` as in :mod:`models.policies.two_stage`, whose budget, candidate and
propensity machinery every policy here shares.

* ``glm_ucb`` (Filippi et al. 2010, eq. 2): ``ρ(x̃ᵀθ̂_u) + β‖x̃‖_{M_u⁻¹}``, one θ̂_u per user on the
  item representation the round gives (the paper's GloVe vectors; this world has one
  representation per item, so "raw" is the row's ``x``).
* ``n_glm_ucb``: eq. 2 per user on the last layer of a two-tower network retrained every 100
  observations (models/policies/two_stage_towers.py).
* ``n_dropout_ucb``: eq. 1 with the mean and std of T = 5 dropout passes (p = 0.2) of the same
  network; ``two_stage_n_dropout_ucb_dynamic`` is its two-stage version (Algorithm 1 with
  DynaTopicRec, a topic network and an item network).
* ``n_greedy_net``: the paper's N-Greedy, greedy on the network's prediction (no dropout), and
  ``two_stage_n_greedy_net_dynamic``. (``n_greedy`` in models/policies/two_stage.py is the GALM
  head with β = 0: the same model as S-N-GALM-UCB without its bonus.)

The paper runs two-stage versions of N-Greedy, N-Dropout, S-N-GALM, S-N-GBLM and Random only,
so GLM-UCB and N-GLM-UCB have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from banditlp.arrays import FloatArray
from models.errors import ModelInputError
from models.policies.base import PolicyParams, Scores, check_in, mc_propensity
from models.policies.registry import register
from models.policies.two_stage import (
    BetaParams,
    DynamicTwoStage,
    Head,
    HeadParams,
    MinSizeParams,
    OneStage,
    TopicParams,
)
from models.policies.two_stage_heads import GlmHead
from models.policies.two_stage_towers import NGlmHead, TowerConfig, TowerHead


def _check_int(value: Any, name: str, low: int) -> None:
    if isinstance(value, bool) or int(value) != value or int(value) < low:
        raise ModelInputError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class GlmParams(HeadParams, BetaParams):
    """:class:`HeadParams` and β (GLM-UCB)."""


@dataclass(frozen=True)
class NetParams(HeadParams):
    """:class:`HeadParams` and the two-tower network (:class:`TowerConfig`'s fields, the same defaults)."""

    hidden: int = 32
    width: int = 16
    retrain_every: int = 100
    steps: int = 100
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 1e-4
    max_buffer: int = 5000

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("hidden", "width", "retrain_every", "steps", "batch_size", "max_buffer"):
            _check_int(getattr(self, key), key, 1)
        check_in(self.lr, "lr", 0.0, 1e3, low_open=True)
        check_in(self.weight_decay, "weight_decay", 0.0, 1e3)

    def tower(self, dropout: float = 0.0) -> TowerConfig:
        """The network's configuration."""
        return TowerConfig(
            self.hidden,
            self.width,
            dropout,
            self.retrain_every,
            self.steps,
            self.batch_size,
            self.lr,
            self.weight_decay,
            self.max_buffer,
        )


@dataclass(frozen=True)
class NGlmParams(NetParams, BetaParams):
    """:class:`NetParams` and β (N-GLM-UCB)."""


@dataclass(frozen=True)
class DropoutParams(NetParams, BetaParams):
    """:class:`NetParams`, β, the dropout rate p (0.2) and the passes T (5), as in the paper.

    ``propensity_draws`` defaults to 200: each draw repeats the T passes.
    """

    dropout: float = 0.2
    passes: int = 5
    propensity_draws: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in(self.dropout, "dropout", 0.0, 1.0)
        if self.dropout >= 1.0:
            raise ModelInputError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        _check_int(self.passes, "passes", 2)


@dataclass(frozen=True)
class DynamicDropoutParams(DropoutParams, TopicParams, MinSizeParams):
    """:class:`DropoutParams`, ``topics`` and p; 20 propensity draws (each repeats both stages' passes)."""

    propensity_draws: int = 20


@dataclass(frozen=True)
class DynamicNetParams(NetParams, TopicParams, MinSizeParams):
    """:class:`NetParams`, ``topics`` and p."""


@register
class GlmUcb(OneStage):
    """GLM-UCB (eq. 2) with a coefficient per user on the item representation x̃."""

    name = "glm_ucb"
    Params: ClassVar[type[PolicyParams]] = GlmParams
    params: GlmParams

    def new_head(self, n_arms: int, stream: int) -> Head:
        return GlmHead(self.d1, self.d2, self.params.eta)


@register
class NGlmUcb(OneStage):
    """N-GLM-UCB: eq. 2 per user on the two-tower network's item representation."""

    name = "n_glm_ucb"
    Params: ClassVar[type[PolicyParams]] = NGlmParams
    params: NGlmParams

    def new_head(self, n_arms: int, stream: int) -> Head:
        return NGlmHead(self.d1, self.d2, self.params.tower(), self.params.eta, self.seed, stream)


class _Tower(OneStage):
    params: NetParams

    def new_head(self, n_arms: int, stream: int) -> Head:
        dropout = float(getattr(self.params, "dropout", 0.0))
        passes = int(getattr(self.params, "passes", 1))
        return TowerHead(self.d1, self.d2, self.params.tower(dropout), passes, self.seed, stream)


@register
class NGreedyNet(_Tower):
    """N-Greedy as the paper defines it: greedy on the two-tower network's prediction ρ(f_userᵀf_item + b)."""

    name = "n_greedy_net"
    Params: ClassVar[type[PolicyParams]] = NetParams


@register
class NDropoutUcb(_Tower):
    """N-Dropout-UCB: ``mean(Y) + β std(Y)`` over T dropout passes of the two-tower network."""

    name = "n_dropout_ucb"
    Params: ClassVar[type[PolicyParams]] = DropoutParams
    params: DropoutParams
    closed_form_propensity = False

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        budget = self.params.budget
        if budget is not None and budget < self.n_actions:
            return super()._rule_propensity(features, scores, action, rng)
        # no draw of candidates: the repeats of the T-pass rule run as one batched forward pass
        head = self.item_head
        assert isinstance(head, TowerHead)
        values: FloatArray = head.acquisition(features, self.beta, rng=rng, repeats=self.params.propensity_draws)[2]
        return mc_propensity(values, action)


@register
class TwoStageNDropoutUcbDynamic(DynamicTwoStage, NDropoutUcb):
    """2-N-Dropout-UCB: Algorithm 1 with DynaTopicRec, N-Dropout-UCB on a topic and an item network."""

    name = "two_stage_n_dropout_ucb_dynamic"
    Params: ClassVar[type[PolicyParams]] = DynamicDropoutParams

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        return DynamicTwoStage._rule_propensity(self, features, scores, action, rng)


@register
class TwoStageNGreedyNetDynamic(DynamicTwoStage, NGreedyNet):
    """2-N-Greedy on the network: Algorithm 1 with DynaTopicRec, greedy on a topic and an item network."""

    name = "two_stage_n_greedy_net_dynamic"
    Params: ClassVar[type[PolicyParams]] = DynamicNetParams
