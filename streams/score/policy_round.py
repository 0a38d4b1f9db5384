"""Scoring one user's candidates with a registered policy (``models.policies``), pure.

A policy of the registry is built for rounds of a fixed shape ``(n_actions, dim)``: a per-arm
policy (LinUCB per arm, meTS, the two-stage topic→item bandits) keeps parameters per row, a
shared one reads every row with one parameter vector. The scorer's candidates are a ragged list
of item ids from an open catalogue, so :class:`Catalogue` maps them onto ``n_actions`` arms:

- an item's arm is ``BLAKE2b(item_id) mod n_actions`` (a keyed hash, the same in every process and
  run, for any id: the item's index is never parsed out of its name), so an item keeps its arm,
  and with it its per-arm state, across batches and workers;
- a user's round is an ``(n_actions, dim)`` matrix of zeros with each candidate's pair features
  in its arm's row; the policy's scores are read back at those rows;
- candidates of one user whose items share an arm (a hash collision) go to further rounds
  (*layers*): candidate ``j`` is in layer ``c``, its arm's ``c``-th occurrence among the user's
  candidates, so every candidate is scored on its own arm's row, never overwritten. With the
  default 64 arms and 5 candidates a user needs a second round in about 15% of batches.

Arms that are no candidate's hold zeros; their scores are ignored and, since an action is
always a candidate's arm, their state never moves from the prior. A policy whose rule looks
across rows (the two-stage policies rank topics over every row, here one topic per arm) may
keep a group without the user's candidates: a candidate the policy did not score (``−inf``)
gets the lowest finite value and mean among its round's candidates, with std 0 (ranked last,
see :func:`policy_scores`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from models.policies.base import Policy

#: Arms of a catalogue when the worker is not told (``--policy-actions``).
DEFAULT_ACTIONS = 64


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Item ids -> arms ``0 .. n_actions - 1`` of a fixed-size policy, by a stable hash.

    The map of ids already seen is cached (an id costs one BLAKE2b the first time, then a dict
    lookup done in C by ``map``), bounded by ``max_cached`` ids.
    """

    n_actions: int = DEFAULT_ACTIONS
    max_cached: int = 1_000_000
    _cache: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.n_actions, bool) or int(self.n_actions) != self.n_actions or self.n_actions < 1:
            raise ValueError(f"n_actions must be an integer >= 1, got {self.n_actions!r}")

    def arm_of(self, item_id: str) -> int:
        """The arm of one item: the first 8 bytes of ``BLAKE2b("arm" ␟ item_id)`` modulo ``n_actions``."""
        digest = hashlib.blake2b(b"arm\x1f" + item_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.n_actions

    def arms(self, item_ids: Sequence[str]) -> IntArray:
        """``(n,)`` int64 the arm of each item."""
        cache = self._cache
        missing = set(item_ids).difference(cache)
        if missing:
            if len(cache) + len(missing) > self.max_cached:
                cache.clear()
                missing = set(item_ids)
            cache.update((item, self.arm_of(item)) for item in missing)
        return np.fromiter(map(cache.__getitem__, item_ids), dtype=np.int64, count=len(item_ids))


def layers(arms: IntArray) -> IntArray:
    """``(n,)`` the layer of each candidate: how many earlier candidates share its arm.

    Args:
        arms: ``(n,)`` int arms of one user's candidates, in record order.
    """
    n = arms.shape[0]
    if len(set(arms.tolist())) == n:  # the usual case, no collision: one round (a set of a few ints is cheap)
        return np.zeros(n, dtype=np.int64)
    order = np.argsort(arms, kind="stable")
    sorted_arms = arms[order]
    starts = np.flatnonzero(np.r_[True, sorted_arms[1:] != sorted_arms[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) - run_start
    return out


def rounds(features: np.ndarray, arms: IntArray, n_actions: int) -> list[tuple[IntArray, FloatArray]]:
    """The rounds that score one user's candidates: ``[(candidates, round)]`` per layer.

    Args:
        features: ``(n, d)`` the candidates' pair features.
        arms: ``(n,)`` their arms (:meth:`Catalogue.arms`).
        n_actions: the catalogue's size.

    Returns:
        One ``(rows (m,), round (n_actions, d) float64)`` per layer: ``rows`` are the candidates
        of the layer (indices into ``features``); row ``arms[rows[i]]`` of ``round`` holds
        ``features[rows[i]]``, every other row zeros.
    """
    layer = layers(arms)
    if layer.size and not layer.any():  # one round holds every candidate
        matrix = np.zeros((n_actions, features.shape[1]), dtype=np.float64)
        matrix[arms] = features
        return [(np.arange(arms.size), matrix)]
    out = []
    for c in range(int(layer.max()) + 1 if layer.size else 0):
        rows = np.flatnonzero(layer == c)
        matrix = np.zeros((n_actions, features.shape[1]), dtype=np.float64)
        matrix[arms[rows]] = features[rows]
        out.append((rows, matrix))
    return out


@dataclass(frozen=True, eq=False)
class PolicyScores:
    """A policy's scores of one user's ``n`` candidates, as the conversion outcome carries them.

    Attributes:
        draws: ``(n_draws, n)`` the policy's ``value`` (sampled or acquisition), one fresh
            :meth:`Policy.score` per draw; draw 0 is the scores record's sample.
        mean: ``(n,)`` the policy's ``mean`` (of the first draw's call).
        std: ``(n,)`` the policy's ``uncertainty`` (idem), ≥ 0.
    """

    draws: FloatArray
    mean: FloatArray
    std: FloatArray


def policy_scores(
    policy: Policy, features: np.ndarray, arms: IntArray, rng: np.random.Generator, n_draws: int = 1
) -> PolicyScores:
    """Score one user's candidates with ``policy``: one :meth:`Policy.score` per layer and draw.

    Draw ``k`` of every layer is scored before draw ``k + 1``, each call with ``rng`` (so one
    layer and one draw is exactly ``policy.score(round, rng)``). A non-finite score of a
    candidate (a row the policy left unscored, ``−inf``) becomes the lowest finite score among
    the candidates of the same call (0 when none is finite), its std 0.

    Args:
        policy: a policy over ``(len(catalogue), features.shape[1])`` rounds.
        features: ``(n, d)`` the candidates' pair features.
        arms: ``(n,)`` their arms.
        rng: the generator of this user's scoring randomness.
        n_draws: K, fresh draws of the policy's randomness per candidate.
    """
    n = features.shape[0]
    draws = np.empty((n_draws, n), dtype=np.float64)
    mean = np.empty(n, dtype=np.float64)
    std = np.empty(n, dtype=np.float64)
    layered = rounds(np.asarray(features, dtype=np.float64), arms, policy.n_actions)
    for k in range(n_draws):
        for rows, matrix in layered:
            scores = policy.score(matrix, rng)
            at = arms[rows]
            draws[k, rows] = _floored(scores.value[at])
            if k == 0:
                mean[rows] = _floored(scores.mean[at])
                unc = np.asarray(scores.uncertainty[at], dtype=np.float64)
                std[rows] = np.where(np.isfinite(unc) & np.isfinite(scores.value[at]), np.maximum(unc, 0.0), 0.0)
    return PolicyScores(draws, mean, std)


def _floored(values: FloatArray) -> FloatArray:
    """``values`` with every non-finite entry set to the lowest finite one (0 when none is finite)."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if finite.all():
        return v
    low = float(v[finite].min()) if finite.any() else 0.0
    return np.where(finite, v, low)
