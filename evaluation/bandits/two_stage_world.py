"""The semi-synthetic catalogue of the two-stage paper: many items in imbalanced topics.

After the paper's simulator (§4, "Off-Policy Bandit Simulator"): a logistic model of
``(user, item)`` representations gives a predicted click ``ŷ_{u,i} ∈ [0, 1]``, a threshold turns
it into a deterministic reward ``y_{u,i} = I{ŷ_{u,i} ≥ THRES}``, and each observed reward is
flipped with probability ``flip`` (0.1 in the paper), so the expected reward of an item is
``1 − flip`` if ``y_{u,i} = 1`` and ``flip`` otherwise.

The paper's representations come from pretrained NRMS towers on MIND / MovieLens; those towers
are not available here, so the two towers are fixed random embeddings with topic structure:

* topic sizes ``|S_{v_j}| ∝ j^{−zipf}`` (imbalanced, every topic at least one item);
* topic centroids ``c_j ~ N(0, I_{d_1})``, item representations ``x_i = c_{v(i)} + σ_x ε_i``;
* user representations ``z_u ~ N(0, I_{d_2})`` for ``|U|`` users, ``d_1 = d_2 = d``;
* logit ``ℓ_{u,i} = x_iᵀ z_u / √d + w_xᵀ x_i / √d + b`` with ``w_x ~ N(0, I)``, ``ŷ = ρ(ℓ)``
  (``ρ`` the sigmoid) and ``THRES`` the ``1 − positive_rate`` quantile of ŷ over every pair.

Each round a user ``u_t ~ Unif(U)`` arrives (Algorithm 1, line 3) and every item is a candidate:
the round's features are ``(n_items, d_1 + d_2)`` rows ``[x_i, z_{u_t}]``. The world's structure
(``world_seed``) is kept apart from the episode's randomness (``reset(seed)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from evaluation.bandits.environment import Round
from evaluation.errors import EvaluationInputError


def zipf_topic_sizes(n_items: int, n_topics: int, exponent: float) -> IntArray:
    """Topic sizes ``∝ j^{−exponent}``, j = 1..q, each ≥ 1, summing to ``n_items``.

    Returns:
        (n_topics,) int sizes, largest first.
    """
    if n_topics < 1 or n_items < n_topics:
        raise EvaluationInputError(f"need 1 <= n_topics <= n_items, got {n_topics} topics, {n_items} items")
    weights = np.arange(1, n_topics + 1, dtype=np.float64) ** (-float(exponent))
    spare = n_items - n_topics
    raw = weights / weights.sum() * spare
    sizes = np.floor(raw).astype(np.int64)
    # largest remainders take the items the floor left over
    left = spare - int(sizes.sum())
    sizes[np.argsort(-(raw - sizes), kind="stable")[:left]] += 1
    return sizes + 1


@dataclass
class TwoStageWorld:
    """The paper's simulator on a Zipf-topic catalogue (module docstring).

    Attributes:
        n_items: N_item, candidates per round (``n_actions``).
        n_topics: q topics.
        n_users: |U|.
        dim: d = d_1 = d_2, the width of each tower's representation.
        zipf: exponent of the topic sizes.
        item_noise: σ_x, spread of items around their topic's centroid.
        positive_rate: share of (user, item) pairs at or above the threshold.
        flip: probability that an observed reward is flipped.
        world_seed: fixes the catalogue, the users and the simulator.
    """

    n_items: int = 10_000
    n_topics: int = 50
    n_users: int = 100
    dim: int = 8
    zipf: float = 1.0
    item_noise: float = 0.5
    positive_rate: float = 0.05
    flip: float = 0.1
    world_seed: int = 0
    n_actions: int = field(init=False)
    topics: IntArray = field(init=False, repr=False)
    items: FloatArray = field(init=False, repr=False)
    users: FloatArray = field(init=False, repr=False)
    clicks: np.ndarray = field(init=False, repr=False)
    threshold: float = field(init=False)
    _gen: np.random.Generator = field(init=False, repr=False)
    _user: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if int(self.n_users) < 1 or int(self.dim) < 1:
            raise EvaluationInputError(f"n_users and dim must be >= 1, got {self.n_users}, {self.dim}")
        if not (np.isfinite(self.positive_rate) and 0.0 < self.positive_rate < 1.0):
            raise EvaluationInputError(f"positive_rate must lie in (0, 1), got {self.positive_rate!r}")
        if not (np.isfinite(self.flip) and 0.0 <= self.flip < 0.5):
            raise EvaluationInputError(f"flip must lie in [0, 0.5), got {self.flip!r}")
        self.n_actions = int(self.n_items)
        sizes = zipf_topic_sizes(int(self.n_items), int(self.n_topics), self.zipf)
        gen = np.random.default_rng([self.world_seed, 0])
        d = int(self.dim)
        self.topics = np.repeat(np.arange(self.n_topics), sizes)[gen.permutation(self.n_items)]
        centroids = gen.normal(size=(self.n_topics, d))
        self.items = centroids[self.topics] + self.item_noise * gen.normal(size=(self.n_items, d))
        self.users = gen.normal(size=(self.n_users, d))
        w_x = gen.normal(size=d)
        logits = (self.users @ self.items.T + self.items @ w_x) / np.sqrt(d)  # (|U|, N_item)
        y_hat = 1.0 / (1.0 + np.exp(-logits))
        self.threshold = float(np.quantile(y_hat, 1.0 - self.positive_rate))
        self.clicks = y_hat >= self.threshold  # (|U|, N_item) deterministic rewards
        self.reset(0)

    @property
    def topic_sizes(self) -> IntArray:
        """(n_topics,) |S_{v_j}|."""
        return np.bincount(self.topics, minlength=self.n_topics)

    @property
    def feature_dim(self) -> int:
        """d_1 + d_2, the width of a round's rows (item tower first, user tower second)."""
        return 2 * int(self.dim)

    def expected_rewards(self, user: int) -> FloatArray:
        """(n_items,) ``E[y] = 1 − flip`` where ``ŷ ≥ THRES`` else ``flip``."""
        return np.where(self.clicks[user], 1.0 - self.flip, self.flip)

    def reset(self, seed: int) -> None:
        """Restart the episode's users and reward flips from ``seed``."""
        self._gen = np.random.default_rng([self.world_seed, 1, seed])
        self._user = 0

    def next_round(self) -> Round:
        """A user ``u_t ~ Unif(U)``: (n_items, 2d) rows ``[x_i, z_{u_t}]`` and their expected rewards."""
        self._user = int(self._gen.integers(self.n_users))
        d = int(self.dim)
        features = np.empty((self.n_items, 2 * d))
        features[:, :d] = self.items
        features[:, d:] = self.users[self._user]
        return Round(features=features, expected=self.expected_rewards(self._user))

    def reward(self, action: int) -> float:
        """``y_{u_t, a}`` flipped with probability ``flip``."""
        y = bool(self.clicks[self._user, action])
        if self._gen.random() < self.flip:
            y = not y
        return float(y)


def make_world(**kwargs: object) -> TwoStageWorld:
    """Factory for ``banditlp bandit run --env evaluation.bandits.two_stage_world:make_world``."""
    return TwoStageWorld(**kwargs)  # type: ignore[arg-type]
