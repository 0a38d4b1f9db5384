"""Two-stage topic→item neural contextual bandits (the two-stage paper, Algorithms 1 and 2).

Rows. A round's row ``a`` is ``[x_a, z_a]``: the item tower's representation ``x_a ∈ R^{d_1}``
then the user tower's ``z_a ∈ R^{d_2}`` (the same user on every row of a round), with
``d_2 = user_dim`` (default ``dim // 2``) and ``d_1 = dim − d_2``. ``x`` is augmented with a 1
(Table 3's bias).

S-N-GALM-UCB (eq. 3), shared by every user and item::

    α(u, i) = ρ(γ x̃_iᵀθ̂_x + γ̃ θ̂_zᵀz_u) + β (γ ‖x̃_i‖_{A_x⁻¹} + γ̃ ‖z_u‖_{A_z⁻¹}),   γ̃ = 1 − γ,

with ``A_x = I + Σ_s x̃_s x̃_sᵀ`` and ``A_z = I + Σ_s z_s z_sᵀ`` over the observed pairs (kept as
inverses by Sherman–Morrison) and ``ρ`` the sigmoid. The paper fits θ̂ by gradient descent; here
each observation takes one preconditioned step ``θ̂_x += η γ A_x⁻¹ x̃ (y − ρ(ℓ))`` (and likewise
θ̂_z), the recursive-least-squares form of that update. N-Greedy is the same head with β = 0.

Two stages (Algorithm 1, one recommendation slot, m = 1, since a round here has one reward):
topic ``v_j``'s representation is the mean row of its items (the topic tower), a second
S-N-GALM-UCB head scores the q topics (α_1), the topics are ranked, the top one (Algorithm 1
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
last :meth:`score` computed. Without a budget the propensity is closed form (a deterministic
argmax); with one, where a draw decided the candidates, it is a Monte Carlo estimate over
``propensity_draws`` fresh draws of the candidates.

Topics. ``topics`` maps each action to a topic label (any ints; a list, so it travels in the
snapshot's JSON); None puts every action in a topic of its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from models.errors import ModelInputError
from models.policies.base import Policy, PolicyParams, Scores, argmax_set, check_in
from models.policies.registry import register


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def _quad(M: FloatArray, X: FloatArray) -> FloatArray:
    """(n,) ``sqrt(x_nᵀ M x_n)`` for rows of X (n, k)."""
    if X.shape[1] == 0:
        return np.zeros(X.shape[0])
    out: FloatArray = np.sqrt(np.maximum(np.einsum("nk,nk->n", X @ M, X), 0.0))
    return out


def _sherman_morrison(Ainv: FloatArray, v: FloatArray) -> FloatArray:
    """``(A + v vᵀ)⁻¹`` from ``A⁻¹`` (k, k) and v (k,)."""
    Av = Ainv @ v
    return Ainv - np.outer(Av, Av) / (1.0 + v @ Av)


class GalmHead:
    """The S-N-GALM model of eq. 3 on rows ``[x, z]`` (module docstring).

    State: ``theta_x`` (d_1 + 1,), ``theta_z`` (d_2,), ``Ainv_x`` (d_1 + 1, d_1 + 1) and
    ``Ainv_z`` (d_2, d_2).
    """

    def __init__(self, d1: int, d2: int, gamma: float, eta: float) -> None:
        self.d1, self.d2, self.gamma, self.eta = d1, d2, gamma, eta
        self.theta_x = np.zeros(d1 + 1)
        self.theta_z = np.zeros(d2)
        self.Ainv_x = np.eye(d1 + 1)
        self.Ainv_z = np.eye(d2)

    def _split(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        X = np.concatenate([rows[:, : self.d1], np.ones((rows.shape[0], 1))], axis=1)
        return X, rows[:, self.d1 :]

    def acquisition(self, rows: FloatArray, beta: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Eq. 3 for rows (n, d_1 + d_2): ``(ρ(ℓ), γ‖x̃‖_{A_x⁻¹} + γ̃‖z‖_{A_z⁻¹}, α)``, each (n,)."""
        X, Z = self._split(rows)
        g, gt = self.gamma, 1.0 - self.gamma
        mean = _sigmoid(g * (X @ self.theta_x) + gt * (Z @ self.theta_z))
        unc = g * _quad(self.Ainv_x, X) + gt * _quad(self.Ainv_z, Z)
        return mean, unc, mean + beta * unc if beta else mean.copy()

    def update(self, row: FloatArray, y: float) -> None:
        """One observation ``(x, z, y)``: Sherman–Morrison on both inverses, then one preconditioned step."""
        X, Z = self._split(row[None, :])
        x, z = X[0], Z[0]
        g, gt = self.gamma, 1.0 - self.gamma
        residual = y - float(_sigmoid(np.asarray(g * x @ self.theta_x + gt * z @ self.theta_z)))
        self.Ainv_x = _sherman_morrison(self.Ainv_x, x)
        self.theta_x = self.theta_x + self.eta * g * residual * (self.Ainv_x @ x)
        if self.d2:
            self.Ainv_z = _sherman_morrison(self.Ainv_z, z)
            self.theta_z = self.theta_z + self.eta * gt * residual * (self.Ainv_z @ z)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The state under ``prefix``-ed names."""
        return {f"{prefix}{k}": getattr(self, k) for k in ("theta_x", "theta_z", "Ainv_x", "Ainv_z")}

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        """Restore :meth:`arrays` output."""
        for k in ("theta_x", "theta_z", "Ainv_x", "Ainv_z"):
            setattr(self, k, np.array(arrays[f"{prefix}{k}"], dtype=np.float64))


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


# -- parameters ---------------------------------------------------------------------------------


def _check_optional_int(value: Any, name: str, low: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or int(value) < low:
        raise ModelInputError(f"{name} must be None or an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class GreedyParams(PolicyParams):
    """Parameters of the S-N-GALM head.

    Attributes:
        gamma: γ ∈ [0, 1], the item share of eq. 3 (γ̃ = 1 − γ the user share).
        eta: η > 0, the step of the online GLM fit.
        user_dim: d_2, the user tower's width at the end of each row (None: dim // 2).
        budget: B, acquisition scores per round (None: no budget).
    """

    gamma: float = 0.5
    eta: float = 1.0
    user_dim: int | None = None
    budget: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in(self.gamma, "gamma", 0.0, 1.0)
        check_in(self.eta, "eta", 0.0, 1e6, low_open=True)
        object.__setattr__(self, "user_dim", _check_optional_int(self.user_dim, "user_dim", 0))
        object.__setattr__(self, "budget", _check_optional_int(self.budget, "budget", 1))


@dataclass(frozen=True)
class GalmParams(GreedyParams):
    """:class:`GreedyParams` and β ≥ 0, the UCB weight of eq. 3 (0.1 in the paper)."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in(self.beta, "beta", 0.0, 1e6)


@dataclass(frozen=True)
class TwoStageParams(GalmParams):
    """:class:`GalmParams` and ``topics``: one topic label per action (None: one topic each)."""

    topics: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.topics is not None:
            labels = np.asarray(self.topics)
            if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
                raise ModelInputError("topics must be a non-empty 1-d sequence of integer labels")
            object.__setattr__(self, "topics", [int(v) for v in labels])


@dataclass(frozen=True)
class DynamicParams(TwoStageParams):
    """:class:`TwoStageParams` and p, DynaTopicRec's minimum size (None: N_item / N_topic)."""

    min_topic_size: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "min_topic_size", _check_optional_int(self.min_topic_size, "min_topic_size", 0))


# -- policies ------------------------------------------------------------------------------------


class _GalmPolicy(Policy):
    """Shared machinery: the item head, the budget, −inf for unscored actions, propensities."""

    Params: ClassVar[type[PolicyParams]] = GreedyParams
    params: GreedyParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        d2 = self.dim // 2 if self.params.user_dim is None else self.params.user_dim
        if d2 >= self.dim:
            raise ModelInputError(f"user_dim must be < dim = {self.dim}, got {d2}")
        self.d1, self.d2 = self.dim - d2, d2
        self.item_head = GalmHead(self.d1, self.d2, self.params.gamma, self.params.eta)
        self.last_scored = 0
        self._drawn = False  # whether the last score() drew its candidates at random

    @property
    def beta(self) -> float:
        """β of eq. 3 (0 for the greedy head)."""
        return float(getattr(self.params, "beta", 0.0))

    def _candidates(self, features: FloatArray, rng: np.random.Generator) -> IntArray:
        """The actions whose α_2 this round computes; sets :attr:`last_scored` and the draw flag."""
        budget = self.params.budget
        self._drawn = budget is not None and budget < self.n_actions
        self.last_scored = self.n_actions if not self._drawn else int(budget or 0)
        if not self._drawn:
            return np.arange(self.n_actions)
        return rng.choice(self.n_actions, size=int(budget or 0), replace=False)

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """α_2 (eq. 3) on this round's candidates; ``−inf`` means and values elsewhere.

        Args:
            features: (n_actions, d_1 + d_2) rows ``[x_a, z_a]``.
            rng: draws the budget's candidates.
        """
        features = self.check_features(features)
        cands = self._candidates(features, rng)
        mean = np.full(self.n_actions, -np.inf)
        unc = np.zeros(self.n_actions)
        value = np.full(self.n_actions, -np.inf)
        m, u, v = self.item_head.acquisition(features[cands], self.beta)
        mean[cands], unc[cands], value[cands] = m, u, v
        return Scores(mean=mean, uncertainty=unc, value=value)

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        ties = argmax_set(scores.value)
        if not self._drawn:
            return 1.0 / ties.size if action in ties else 0.0
        draws = self.params.propensity_draws
        hits = 0.0
        for _ in range(draws):
            again = self.score(features, rng).value
            best = argmax_set(again)
            hits += int(action in best) / best.size
        self._drawn = True
        return float((1.0 + hits) / (1.0 + draws))

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Update the item head on row ``action`` (Algorithm 1, line 16)."""
        action, features, reward = self.check_feedback(action, features, reward)
        self.item_head.update(features[action], reward)
        self.n_observations += 1

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return self.item_head.arrays("item_")

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.item_head.load(arrays, "item_")


@register
class NGreedy(_GalmPolicy):
    """N-Greedy: the S-N-GALM head's prediction ``ρ(ℓ)`` on the tower representations, no bonus."""

    name = "n_greedy"
    Params = GreedyParams


@register
class GalmUcb(_GalmPolicy):
    """One-stage S-N-GALM-UCB (eq. 3) over the whole catalogue (or B uniform items of it)."""

    name = "galm_ucb"
    Params = GalmParams

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """β = 0."""
        return {"beta": 0.0}


@register
class TwoStageGalmUcb(GalmUcb):
    """Algorithm 1 without line 8 (only the top topic is kept), S-N-GALM-UCB in both stages."""

    name = "two_stage_galm_ucb"
    Params = TwoStageParams
    params: TwoStageParams

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        labels = np.arange(self.n_actions) if self.params.topics is None else np.asarray(self.params.topics)
        if labels.shape != (self.n_actions,):
            raise ModelInputError(f"topics must have one label per action ({self.n_actions}), got {labels.shape[0]}")
        _, self.topic_of = np.unique(labels, return_inverse=True)
        self.n_topics = int(self.topic_of.max()) + 1
        self.order = np.argsort(self.topic_of, kind="stable")
        self.sizes = np.bincount(self.topic_of, minlength=self.n_topics)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.members = np.split(self.order, self.starts[1:])
        budget = self.params.budget
        if budget is not None and budget <= self.n_topics:
            raise ModelInputError(f"budget must exceed the {self.n_topics} topic scores, got {budget}")
        self.topic_head = GalmHead(self.d1, self.d2, self.params.gamma, self.params.eta)

    def topic_representations(self, features: FloatArray) -> FloatArray:
        """(q, d_1 + d_2) each topic's mean row (the topic tower, ``[v_j, z_u]``)."""
        return np.add.reduceat(features[self.order], self.starts, axis=0) / self.sizes[:, None]

    def topic_group(self, ranked: IntArray) -> list[int]:
        """The kept topics given the ranking ``(v_(1), ..., v_(q))``: the top one."""
        return [int(ranked[0])]

    def _candidates(self, features: FloatArray, rng: np.random.Generator) -> IntArray:
        alpha1 = self.topic_head.acquisition(self.topic_representations(features), self.beta)[2]
        ranked = np.argsort(-alpha1, kind="stable")
        group = self.topic_group(ranked)
        cands = np.concatenate([self.members[j] for j in group])
        budget = self.params.budget
        self._drawn = False
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
                self._drawn = extra.size > 0
        self.last_scored = self.n_topics + int(cands.size)
        return cands

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Both heads (Algorithm 1, line 16): the item head on row ``action``, the topic head on its topic."""
        action, features, reward = self.check_feedback(action, features, reward)
        self.item_head.update(features[action], reward)
        members = self.members[int(self.topic_of[action])]
        self.topic_head.update(features[members].mean(axis=0), reward)
        self.n_observations += 1

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {**self.item_head.arrays("item_"), **self.topic_head.arrays("topic_")}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.item_head.load(arrays, "item_")
        self.topic_head.load(arrays, "topic_")


@register
class TwoStageGalmUcbDynamic(TwoStageGalmUcb):
    """Algorithm 1 with DynaTopicRec (Algorithm 2): the top topics grouped until the group has > p items."""

    name = "two_stage_galm_ucb_dynamic"
    Params = DynamicParams
    params: DynamicParams

    @property
    def min_topic_size(self) -> int:
        """p (default ``N_item // N_topic``, the paper's Table 6 setting)."""
        p = self.params.min_topic_size
        return self.n_actions // self.n_topics if p is None else p

    def topic_group(self, ranked: IntArray) -> list[int]:
        """``S^1`` of DynaTopicRec(1, ranked, p)."""
        return dyna_topic_rec(1, ranked, self.sizes, self.min_topic_size)[0]


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
