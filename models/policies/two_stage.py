"""Two-stage topic→item neural contextual bandits (the two-stage paper, Algorithms 1 and 2).

Rows. A round's row ``a`` is ``[x_a, z_a]``: the item tower's representation ``x_a ∈ R^{d_1}``
then the user tower's ``z_a ∈ R^{d_2}`` (the same user on every row of a round), with
``d_2 = user_dim`` (default ``dim // 2``) and ``d_1 = dim − d_2``.

Heads (models/policies/two_stage_heads.py, two_stage_towers.py) compute the acquisition scores;
a policy is a head and a way to pick the rows it scores. Here: S-N-GALM-UCB (eq. 3,
``galm_ucb``), S-N-GBLM-UCB (eq. 4, ``gblm_ucb``), N-Greedy (the GALM head with β = 0,
``n_greedy``), Random, and their two-stage versions; the GLM-UCB, N-GLM-UCB and N-Dropout-UCB
baselines are in models/policies/two_stage_baselines.py.

Two stages (Algorithm 1, one recommendation slot, m = 1, since a round here has one reward):
topic ``v_j``'s representation is the mean row of its items (the topic tower), a second head of
the same kind scores the q topics (α_1), the topics are ranked, the top one (Algorithm 1
without line 8) or a dynamically reconstructed group of the top ones (DynaTopicRec,
Algorithm 2, :func:`dyna_topic_rec`) is kept, and the item head (α_2) scores the group's items.
Both heads learn from every observation (line 16): the item head on the chosen row, the topic
head on the chosen item's topic representation.

Computational budget B (§4, after Song et al. 2021): at most B acquisition scores per round.
One-stage policies score B items drawn uniformly from the catalogue; two-stage policies score
all q topics and then ``B − q`` items of the kept group, drawn uniformly where the group is
larger, and topped up with items drawn uniformly from the rest of the catalogue where it is
smaller (the paper's fairness rule), so every policy scores exactly B. Unscored actions get
``mean = value = −inf`` and ``uncertainty = 0``. :attr:`last_scored` is the number of scores the
last :meth:`score` computed. Where neither a draw nor the head is random, the propensity is
closed form (a deterministic argmax); otherwise it is a Monte Carlo estimate over
``propensity_draws`` fresh draws of the round.

Topics. ``topics`` maps each action to a topic label (any ints; a list, so it travels in the
snapshot's JSON); None puts every action in a topic of its own.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from models.errors import ModelInputError
from models.policies.base import Policy, PolicyParams, Scores, argmax_set
from models.policies.registry import register
from models.policies.two_stage_heads import Confidence, GalmHead, GblmHead, RandomHead
from models.policies.two_stage_params import (
    BetaParams,
    DynamicGblmParams,
    DynamicGreedyParams,
    DynamicParams,
    GalmParams,
    GblmParams,
    GreedyParams,
    HeadParams,
    MinSizeParams,
    RandomTopicParams,
    TopicParams,
    TwoStageParams,
)

__all__ = ["BetaParams", "GalmHead", "GblmHead", "HeadParams", "MinSizeParams", "TopicParams", "dyna_topic_rec"]


class Head(Protocol):
    """What a policy asks of a head (models/policies/two_stage_heads.py)."""

    def acquisition(
        self, rows: FloatArray, beta: float, arms: IntArray | None = None, rng: np.random.Generator | None = None
    ) -> tuple[FloatArray, FloatArray, FloatArray]: ...

    def update(self, row: FloatArray, y: float, arm: int = 0, rng: np.random.Generator | None = None) -> None: ...

    def arrays(self, prefix: str) -> dict[str, np.ndarray]: ...

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None: ...


def dyna_topic_rec(
    m: int, ranked: Sequence[int] | IntArray, sizes: Sequence[int] | IntArray, p: int
) -> list[list[int]]:
    """Algorithm 2 (DynaTopicRec): the m topic-group arms, as written in the paper.

    Args:
        m: number of topic-group arms (recommendation slots), ``1 ≤ m ≤ q``.
        ranked: ``l_st = (v_(1), ..., v_(q))``, topic indices by decreasing α_1.
        sizes: (q,) ``|S_{v_j}|`` indexed by topic.
        p: minimum reconstruction size: a group keeps taking topics while its count ``c_i ≤ p``.

    Returns:
        ``[S^1, ..., S^m]``, each a list of topic indices (its seed topic first).
    """
    if not 1 <= m <= len(ranked):
        raise ModelInputError(f"DynaTopicRec needs 1 <= m <= q, got m={m}, q={len(ranked)}")
    groups = [[int(ranked[i])] for i in range(m)]
    counts = [int(sizes[int(ranked[i])]) for i in range(m)]
    rest = deque(int(v) for v in ranked[m:])
    while rest and any(c <= p for c in counts):
        for i in range(m):
            if counts[i] <= p and rest:
                top = rest.popleft()
                groups[i].append(top)
                counts[i] += int(sizes[top])
    return groups


# -- policies ------------------------------------------------------------------------------------


class OneStage(Policy):
    """A head over the whole catalogue (or B uniform items of it): the budget, −inf elsewhere, propensities."""

    Params: ClassVar[type[PolicyParams]] = HeadParams
    params: HeadParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        user_dim = getattr(self.params, "user_dim", None)
        d2 = self.dim // 2 if user_dim is None else user_dim
        if d2 >= self.dim:
            raise ModelInputError(f"user_dim must be < dim = {self.dim}, got {d2}")
        self.d1, self.d2 = self.dim - d2, d2
        self.item_head = self.new_head(self.n_actions, 0)
        self.last_scored = 0
        self._drawn = False  # whether the last score() drew anything at random

    @abstractmethod
    def new_head(self, n_arms: int, stream: int) -> Head:
        """A fresh head for ``n_arms`` arms (``stream`` 0: items, 1: topics)."""

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """β = 0 where the head has a UCB bonus (no parameter otherwise)."""
        return {"beta": 0.0} if issubclass(cls.Params, BetaParams) else {}

    @property
    def beta(self) -> float:
        """β of the UCB (0 for a greedy head)."""
        return float(getattr(self.params, "beta", 0.0))

    def _stochastic(self, head: Head) -> bool:
        return bool(getattr(head, "stochastic", False))

    def _candidates(self, features: FloatArray, rng: np.random.Generator) -> IntArray:
        """The actions whose α_2 this round computes; sets :attr:`last_scored` and the draw flag."""
        budget = getattr(self.params, "budget", None)
        drawn = budget is not None and budget < self.n_actions
        self._drawn = drawn or self._stochastic(self.item_head)
        self.last_scored = self.n_actions if not drawn else int(budget or 0)
        if not drawn:
            return np.arange(self.n_actions)
        return rng.choice(self.n_actions, size=int(budget or 0), replace=False)

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """α_2 on this round's candidates; ``−inf`` means and values elsewhere.

        Args:
            features: (n_actions, d_1 + d_2) rows ``[x_a, z_a]``.
            rng: draws the budget's candidates (and a stochastic head's randomness).
        """
        features = self.check_features(features)
        cands = self._candidates(features, rng)
        mean = np.full(self.n_actions, -np.inf)
        unc = np.zeros(self.n_actions)
        value = np.full(self.n_actions, -np.inf)
        m, u, v = self.item_head.acquisition(features[cands], self.beta, arms=cands, rng=rng)
        mean[cands], unc[cands], value[cands] = m, u, v
        return Scores(mean=mean, uncertainty=unc, value=value)

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        ties = argmax_set(scores.value)
        if not self._drawn:
            return 1.0 / ties.size if action in ties else 0.0
        draws = self.params.propensity_draws
        scored = self.last_scored
        hits = 0.0
        for _ in range(draws):
            best = argmax_set(self.score(features, rng).value)
            hits += int(action in best) / best.size
        self._drawn, self.last_scored = True, scored
        return float((1.0 + hits) / (1.0 + draws))

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Update the item head on row ``action`` (Algorithm 1, line 16)."""
        action, features, reward = self.check_feedback(action, features, reward)
        self.item_head.update(features[action], reward, arm=action, rng=self.learn_rng())
        self.n_observations += 1

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return self.item_head.arrays("item_")

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.item_head.load(arrays, "item_")


class TwoStage(OneStage):
    """Algorithm 1: a topic head ranks the q topics, the item head scores the kept group's items."""

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        topics = getattr(self.params, "topics", None)
        labels = np.arange(self.n_actions) if topics is None else np.asarray(topics)
        if labels.shape != (self.n_actions,):
            raise ModelInputError(f"topics must have one label per action ({self.n_actions}), got {labels.shape[0]}")
        _, self.topic_of = np.unique(labels, return_inverse=True)
        self.n_topics = int(self.topic_of.max()) + 1
        self.order = np.argsort(self.topic_of, kind="stable")
        self.sizes = np.bincount(self.topic_of, minlength=self.n_topics)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.members = np.split(self.order, self.starts[1:])
        budget = getattr(self.params, "budget", None)
        if budget is not None and budget <= self.n_topics:
            raise ModelInputError(f"budget must exceed the {self.n_topics} topic scores, got {budget}")
        self.topic_head = self.new_head(self.n_topics, 1)

    def topic_representations(self, features: FloatArray) -> FloatArray:
        """(q, d_1 + d_2) each topic's mean row (the topic tower, ``[v_j, z_u]``)."""
        return np.add.reduceat(features[self.order], self.starts, axis=0) / self.sizes[:, None]

    def topic_group(self, ranked: IntArray) -> list[int]:
        """The kept topics given the ranking ``(v_(1), ..., v_(q))``: the top one."""
        return [int(ranked[0])]

    def _candidates(self, features: FloatArray, rng: np.random.Generator) -> IntArray:
        reps = self.topic_representations(features)
        alpha1 = self.topic_head.acquisition(reps, self.beta, arms=np.arange(self.n_topics), rng=rng)[2]
        ranked = np.argsort(-alpha1, kind="stable")
        group = self.topic_group(ranked)
        cands = np.concatenate([self.members[j] for j in group])
        budget = getattr(self.params, "budget", None)
        self._drawn = self._stochastic(self.topic_head) or self._stochastic(self.item_head)
        if budget is not None:
            room = budget - self.n_topics
            if cands.size > room:
                cands = rng.choice(cands, size=room, replace=False)
                self._drawn = True
            elif cands.size < room:
                outside = np.ones(self.n_actions, dtype=bool)
                outside[cands] = False
                extra = rng.choice(
                    np.flatnonzero(outside), size=min(room - cands.size, int(outside.sum())), replace=False
                )
                cands = np.concatenate([cands, extra])
                self._drawn = self._drawn or extra.size > 0
        self.last_scored = self.n_topics + int(cands.size)
        return cands

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Both heads (Algorithm 1, line 16): the item head on row ``action``, the topic head on its topic."""
        action, features, reward = self.check_feedback(action, features, reward)
        self.item_head.update(features[action], reward, arm=action, rng=self.learn_rng())
        topic = int(self.topic_of[action])
        topic_rng = np.random.default_rng([self.seed, self.n_observations, 1])
        self.topic_head.update(features[self.members[topic]].mean(axis=0), reward, arm=topic, rng=topic_rng)
        self.n_observations += 1

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {**self.item_head.arrays("item_"), **self.topic_head.arrays("topic_")}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.item_head.load(arrays, "item_")
        self.topic_head.load(arrays, "topic_")


class DynamicTwoStage(TwoStage):
    """Algorithm 1 with DynaTopicRec (Algorithm 2): the top topics grouped until the group has > p items."""

    @property
    def min_topic_size(self) -> int:
        """p (default ``N_item // N_topic``, the paper's Table 6 setting)."""
        p = getattr(self.params, "min_topic_size", None)
        return self.n_actions // self.n_topics if p is None else int(p)

    def topic_group(self, ranked: IntArray) -> list[int]:
        """``S^1`` of DynaTopicRec(1, ranked, p)."""
        return dyna_topic_rec(1, ranked, self.sizes, self.min_topic_size)[0]


class _Galm(OneStage):
    params: GalmParams

    def new_head(self, n_arms: int, stream: int) -> Head:
        confidence: Confidence = "paper" if getattr(self.params, "confidence", "shared") == "paper" else "shared"
        return GalmHead(self.d1, self.d2, self.params.gamma, self.params.eta, n_arms=n_arms, confidence=confidence)


class _Gblm(OneStage):
    def new_head(self, n_arms: int, stream: int) -> Head:
        return GblmHead(self.d1, self.d2, self.params.eta)


@register
class NGreedy(_Galm):
    """N-Greedy: the S-N-GALM head's prediction ``ρ(ℓ)`` on the tower representations, no bonus."""

    name = "n_greedy"
    Params: ClassVar[type[PolicyParams]] = GreedyParams


@register
class GalmUcb(_Galm):
    """One-stage S-N-GALM-UCB (eq. 3) over the whole catalogue (or B uniform items of it)."""

    name = "galm_ucb"
    Params: ClassVar[type[PolicyParams]] = GalmParams


@register
class GblmUcb(_Gblm):
    """One-stage S-N-GBLM-UCB (eq. 4) over the whole catalogue (or B uniform items of it)."""

    name = "gblm_ucb"
    Params: ClassVar[type[PolicyParams]] = GblmParams


@register
class TwoStageGalmUcb(TwoStage, GalmUcb):
    """Algorithm 1 without line 8 (only the top topic is kept), S-N-GALM-UCB in both stages."""

    name = "two_stage_galm_ucb"
    Params: ClassVar[type[PolicyParams]] = TwoStageParams


@register
class TwoStageGalmUcbDynamic(DynamicTwoStage, TwoStageGalmUcb):
    """2-S-N-GALM-UCB: Algorithm 1 with DynaTopicRec, S-N-GALM-UCB in both stages."""

    name = "two_stage_galm_ucb_dynamic"
    Params: ClassVar[type[PolicyParams]] = DynamicParams


@register
class TwoStageGblmUcbDynamic(DynamicTwoStage, GblmUcb):
    """2-S-N-GBLM-UCB: Algorithm 1 with DynaTopicRec, S-N-GBLM-UCB in both stages."""

    name = "two_stage_gblm_ucb_dynamic"
    Params: ClassVar[type[PolicyParams]] = DynamicGblmParams


@register
class TwoStageNGreedyDynamic(DynamicTwoStage, NGreedy):
    """2-N-Greedy: Algorithm 1 with DynaTopicRec, the greedy GALM head in both stages."""

    name = "two_stage_n_greedy_dynamic"
    Params: ClassVar[type[PolicyParams]] = DynamicGreedyParams


@register
class TwoStageRandom(DynamicTwoStage):
    """2-Random: topics in a uniformly random order grouped by DynaTopicRec, then a uniform item of the group."""

    name = "two_stage_random"
    Params: ClassVar[type[PolicyParams]] = RandomTopicParams
    closed_form_propensity = False

    def new_head(self, n_arms: int, stream: int) -> Head:
        return RandomHead()

    def _stochastic(self, head: Head) -> bool:
        return True


@register
class RandomPolicy(Policy):
    """Random: every action's score a fresh U(0, 1) draw (its mean and value), so the pick is uniform."""

    name = "random"

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """(n_actions,) U(0, 1) draws as mean and value, zero uncertainty."""
        features = self.check_features(features)
        u = rng.random(self.n_actions)
        return Scores(mean=u, uncertainty=np.zeros(self.n_actions), value=u.copy())

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        return 1.0 / self.n_actions

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Nothing to learn (the feedback is validated and counted)."""
        self.check_feedback(action, features, reward)
        self.n_observations += 1

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        return None
