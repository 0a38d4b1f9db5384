"""The policy contract: score a round's candidates, choose one with its propensity, learn, snapshot.

After river's ``learn_one``/``predict_one`` and Open Bandit Pipeline's
``select_action``/``update_params``: one set of verbs and one kind of random generator for every
policy, so that one conformance suite (tests/conformance/test_policies.py) checks them all.

A round is a feature matrix ``features`` of shape ``(n_actions, dim)``: row ``a`` describes
action ``a`` (user features, the action's own features, or both concatenated). Per-arm policies
read row ``a`` with arm ``a``'s parameters; shared policies read every row with one parameter
vector.

Randomness. Every random choice of a *decision* comes from the ``np.random.Generator`` passed to
:meth:`Policy.score` / :meth:`Policy.choose` (torch policies seed a ``torch.Generator`` from it).
Randomness of *learning* (bootstrap weights, minibatch order, network initialisation) is drawn
from ``np.random.default_rng([seed, n_observations])`` (:meth:`Policy.learn_rng`): it is a pure
function of the constructor's ``seed`` and of how many observations the policy has seen, so a
policy restored from a snapshot continues exactly as the original would, and no generator state
has to travel in the snapshot. Nothing reads numpy's or torch's global generators.

Propensities. :attr:`Choice.propensity` is ``P(policy picks action | round, state)``: in closed
form where one exists (UCB and greedy rules: ``1/#ties`` on the argmax set; ε-greedy and the
exploration floor mix in ``share/n_actions``; a bootstrapped ensemble counts its members), else a
Monte Carlo estimate with ``propensity_draws`` extra draws of the policy's own randomness, smoothed
as ``(1 + hits) / (1 + draws)`` where the one is the draw that made the choice, so it is never 0.

Exploration floor (chapter §5, "maintain a small exploration floor"): every policy takes
``floor ∈ [0, 1)``; with probability ``floor`` the action is drawn uniformly, otherwise by the
policy's own rule, and the propensity is ``(1 − floor)·p_rule + floor/n_actions``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from banditlp.arrays import FloatArray
from models.errors import ModelInputError, ShapeError
from models.snapshot import SnapshotMixin

#: Monte Carlo draws for a propensity where no closed form exists (overridable per policy).
DEFAULT_PROPENSITY_DRAWS = 1000


@dataclass(frozen=True, eq=False)
class Scores:
    """One round's candidates as a policy sees them.

    Attributes:
        mean: (n_actions,) posterior (or point) mean reward of each action.
        uncertainty: (n_actions,) the policy's uncertainty of that mean (a posterior std, an
            ensemble spread, ...); zeros where the policy has none.
        value: (n_actions,) the sampled or acquisition value the policy's rule maximises (a
            Thompson sample, a UCB, the mean for a greedy rule).
    """

    mean: FloatArray
    uncertainty: FloatArray
    value: FloatArray

    def __post_init__(self) -> None:
        shapes = {np.shape(self.mean), np.shape(self.uncertainty), np.shape(self.value)}
        if len(shapes) != 1 or len(np.shape(self.mean)) != 1:
            raise ShapeError(f"mean, uncertainty and value must share one (n_actions,) shape, got {sorted(shapes)}")


@dataclass(frozen=True)
class Choice:
    """A decision: the action, its propensity and the scores it was made from.

    Attributes:
        action: index of the chosen row of the round's features.
        propensity: ``P(policy picks action | round)`` in (0, 1] (see the module docstring).
        scores: the round's :class:`Scores`.
    """

    action: int
    propensity: float
    scores: Scores


@dataclass(frozen=True)
class PolicyParams:
    """Parameters every policy takes; each policy extends this with its own (validated) fields.

    Attributes:
        floor: exploration floor in [0, 1): the share of rounds whose action is uniform.
        propensity_draws: Monte Carlo draws for a propensity without a closed form (≥ 1).
    """

    floor: float = 0.0
    propensity_draws: int = DEFAULT_PROPENSITY_DRAWS

    def __post_init__(self) -> None:
        if not (np.isfinite(self.floor) and 0.0 <= self.floor < 1.0):
            raise ModelInputError(f"floor must lie in [0, 1), got {self.floor!r}")
        if int(self.propensity_draws) < 1:
            raise ModelInputError(f"propensity_draws must be >= 1, got {self.propensity_draws!r}")


def check_in(value: float, name: str, low: float, high: float, *, low_open: bool = False) -> None:
    """Raise :class:`ModelInputError` unless ``value`` is finite and in [low, high] (or (low, high])."""
    ok = np.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ModelInputError(f"{name} must lie in {bracket}{low}, {high}], got {value!r}")


def argmax_set(value: FloatArray) -> np.ndarray:
    """Indices of the maximal entries of ``value`` ((n_actions,)): the ties a rule breaks uniformly."""
    return np.flatnonzero(value == value.max())


def deterministic_propensity(value: FloatArray, action: int) -> float:
    """P(argmax of ``value`` ((n_actions,)) with uniform ties picks ``action``): a UCB or greedy rule's."""
    ties = argmax_set(value)
    return 1.0 / ties.size if action in ties else 0.0


def mc_propensity(draws: FloatArray, action: int) -> float:
    """Smoothed Monte Carlo P(argmax = action) from ``(M, n_actions)`` extra draws of the values.

    ``(1 + hits) / (1 + M)``: the draw that made the choice counts as a hit, so it is never 0.
    """
    hits = int(np.count_nonzero(np.argmax(draws, axis=1) == action))
    return float((1.0 + hits) / (1.0 + draws.shape[0]))


class Policy(SnapshotMixin, ABC):
    """A contextual-bandit policy over rounds of ``(n_actions, dim)`` features.

    Subclasses set :attr:`name` (the registry key) and :attr:`Params` (a frozen
    :class:`PolicyParams` subclass validated in ``__post_init__``), and implement
    :meth:`score`, :meth:`update`, :meth:`_rule_propensity`, :meth:`_state_arrays` and
    :meth:`_load_state`. The constructor's arguments are the whole configuration
    (``n_actions``, ``dim``, ``seed`` and ``params``), so ``from_bytes(to_bytes())`` rebuilds the
    policy exactly.

    Class attributes read by the conformance suite:
        closed_form_propensity: True where :meth:`_rule_propensity` is exact (the suite then
            checks it against empirical choice frequencies).
    """

    name: ClassVar[str]
    Params: ClassVar[type[PolicyParams]] = PolicyParams
    closed_form_propensity: ClassVar[bool] = True
    snapshot_kind: ClassVar[str]

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        if isinstance(n_actions, bool) or int(n_actions) < 1 or int(n_actions) != n_actions:
            raise ModelInputError(f"n_actions must be an integer >= 1, got {n_actions!r}")
        if isinstance(dim, bool) or int(dim) < 1 or int(dim) != dim:
            raise ModelInputError(f"dim must be an integer >= 1, got {dim!r}")
        if isinstance(seed, bool) or int(seed) != seed or int(seed) < 0:
            raise ModelInputError(f"seed must be an integer >= 0, got {seed!r}")
        self.n_actions = int(n_actions)
        self.dim = int(dim)
        self.seed = int(seed)
        try:
            self.params = self.Params(**params)
        except TypeError as exc:  # an unknown or missing keyword
            raise ModelInputError(f"{self.name}: {exc}") from exc
        self.n_observations = 0

    # -- the contract -----------------------------------------------------------------------
    @abstractmethod
    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Score a round's candidates.

        Args:
            features: (n_actions, dim) features, row ``a`` for action ``a``.
            rng: the generator of this decision's randomness (Thompson draws, dropout masks).

        Returns:
            :class:`Scores`, each (n_actions,).
        """

    def choose(self, features: FloatArray, rng: np.random.Generator) -> Choice:
        """Choose an action: the argmax of :meth:`score`'s ``value`` (ties uniform), under the floor.

        Args:
            features: (n_actions, dim) features.
            rng: the generator of this decision's randomness.

        Returns:
            The :class:`Choice` with its propensity (module docstring).
        """
        features = self.check_features(features)
        scores = self.score(features, rng)
        share = self.uniform_share()
        if share > 0.0 and rng.random() < share:
            action = int(rng.integers(self.n_actions))
        else:
            ties = argmax_set(scores.value)
            action = int(ties[0]) if ties.size == 1 else int(rng.choice(ties))
        p_rule = self._rule_propensity(features, scores, action, rng) if share < 1.0 else 0.0
        propensity = (1.0 - share) * p_rule + share / self.n_actions
        return Choice(action=action, propensity=float(propensity), scores=scores)

    @abstractmethod
    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Learn from one round's feedback.

        Args:
            action: the chosen action (a row of ``features``).
            features: (n_actions, dim) features of the round.
            reward: the observed reward of ``action``.
        """

    # -- hooks ------------------------------------------------------------------------------
    def uniform_share(self) -> float:
        """Probability that a round's action is uniform regardless of the rule (the floor)."""
        return float(self.params.floor)

    @abstractmethod
    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        """P(the policy's own rule, without the floor, picks ``action``) given this round."""

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """Parameters that switch exploration off, so :attr:`Scores.value` equals :attr:`Scores.mean`."""
        return {}

    @classmethod
    def batch_posterior(
        cls,
        n_actions: int,
        dim: int,
        actions: np.ndarray,
        features: FloatArray,
        rewards: FloatArray,
        *,
        seed: int = 0,
        **params: Any,
    ) -> dict[str, FloatArray] | None:
        """The posterior of a whole history computed in one batch, or None where none exists.

        Args:
            actions: (n,) chosen actions, oldest first.
            features: (n, n_actions, dim) the rounds' features.
            rewards: (n,) observed rewards.

        Returns:
            Arrays named as :meth:`posterior`'s, or None (the conformance check is skipped).
        """
        return None

    def posterior(self) -> dict[str, FloatArray]:
        """The incrementally maintained posterior, named as :meth:`batch_posterior`'s arrays."""
        return {}

    def learn_rng(self) -> np.random.Generator:
        """The generator of learning randomness: a pure function of (seed, observations seen)."""
        return np.random.default_rng([self.seed, self.n_observations])

    # -- validation -------------------------------------------------------------------------
    def check_features(self, features: FloatArray) -> FloatArray:
        """``features`` as a finite float64 (n_actions, dim) array.

        Raises:
            ShapeError: another shape.
            ModelInputError: NaN or inf.
        """
        arr = np.asarray(features, dtype=np.float64)
        if arr.shape != (self.n_actions, self.dim):
            raise ShapeError(f"features must have shape ({self.n_actions}, {self.dim}), got {np.shape(features)}")
        if not np.all(np.isfinite(arr)):
            raise ModelInputError("features contain NaN or inf")
        return arr

    def check_feedback(self, action: int, features: FloatArray, reward: float) -> tuple[int, FloatArray, float]:
        """Validate one round's feedback; returns ``(action, features, reward)``.

        Raises:
            ModelInputError: an action out of range or a non-finite reward.
            ShapeError: features of another shape.
        """
        if isinstance(action, bool) or not (0 <= int(action) < self.n_actions) or int(action) != action:
            raise ModelInputError(f"action must be an integer in [0, {self.n_actions}), got {action!r}")
        if not np.isfinite(reward):
            raise ModelInputError(f"reward must be finite, got {reward!r}")
        return int(action), self.check_features(features), float(reward)

    # -- snapshots --------------------------------------------------------------------------
    @abstractmethod
    def _state_arrays(self) -> dict[str, np.ndarray]:
        """The learned state as named numpy arrays."""

    @abstractmethod
    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`_state_arrays` output into a freshly constructed policy."""

    def snapshot_config(self) -> dict[str, Any]:
        """The configuration as JSON values: n_actions, dim, seed and the parameters."""
        return {
            "n_actions": self.n_actions,
            "dim": self.dim,
            "seed": self.seed,
            "params": dataclasses.asdict(self.params),
        }

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """The learned state, with the observation count."""
        return {**self._state_arrays(), "n_observations": np.array(self.n_observations, dtype=np.int64)}

    @classmethod
    def from_snapshot_parts(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        """Rebuild from :meth:`snapshot_config` / :meth:`snapshot_arrays` output."""
        params = dict(config["params"])
        policy = cls(int(config["n_actions"]), int(config["dim"]), seed=int(config["seed"]), **params)
        policy._load_state(arrays)
        policy.n_observations = int(arrays["n_observations"])
        return policy
