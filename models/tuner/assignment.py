"""Deterministic assignment of users to the arms of a parameter distribution, moving few users on change.

A user's position is ``u = BLAKE2b(experiment, salt, user_id) / 2^64 ∈ [0, 1)`` (a keyed cryptographic hash,
not Python's per-process ``hash``), the same in every process and run. A :class:`Layout` partitions
[0, 1) into intervals, each owned by one arm, the arm's total length being its probability; the user is
served the arm whose interval holds u. Over many users the share of arm a is its length p_a (the u are
uniform for distinct ids).

When the distribution changes from p to q, :func:`relayout` keeps every arm on as much of its old
territory as its new share allows: an arm that shrinks keeps its longest intervals up to length q_a and
frees the rest; an arm that grows keeps all of its intervals and takes freed pieces (those touching its
own first, arms in id order) until it has q_a. Only the freed length changes owner, which is

    Σ_a max(p_a − q_a, 0) = TV(p, q),

the total-variation distance, and no assignment can move less: a user can stay only where its arm keeps
mass, so at least TV(p, q) of [0, 1) must change owner. The cost is state: the layout is a function of the
sequence of distributions, not of the last one alone, so it is published with the distribution. Laying
arms out afresh by cumulative probability (:func:`initial_layout` of q) shifts every interval after the
first changed arm, and re-salting the hash moves about ``1 − Σ_a p_a q_a`` of users
(:func:`moved_fraction` measures any two layouts exactly).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray, IntArray
from models.errors import ModelInputError, ShapeError
from models.inputs import read_only_view

_TWO_64 = float(2**64)


def user_positions(user_ids: Sequence[str | int], experiment: str, salt: str = "") -> FloatArray:
    """(n,) positions ``u ∈ [0, 1)`` of users in one experiment: the first 8 bytes of
    ``BLAKE2b(experiment ␟ salt ␟ user_id)`` as an unsigned integer over 2^64.

    A new ``salt`` reshuffles every user (the "fresh hash" baseline); the same inputs give the same
    positions in any process.
    """
    key = f"{experiment}\x1f{salt}\x1f".encode()
    out = np.empty(len(user_ids), dtype=np.float64)
    for j, user in enumerate(user_ids):
        digest = hashlib.blake2b(key + str(user).encode(), digest_size=8).digest()
        out[j] = int.from_bytes(digest, "big") / _TWO_64
    return out


@dataclass(frozen=True, eq=False)
class Layout:
    """A partition of [0, 1) into intervals ``[edges[k], edges[k+1])`` owned by ``owners[k]``.

    Attributes:
        edges: (K + 1,) increasing, ``edges[0] = 0``, ``edges[K] = 1`` (read-only).
        owners: K arm ids, one per interval; an arm may own several intervals, never two adjacent ones.
    """

    edges: FloatArray
    owners: tuple[str, ...]

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges, dtype=np.float64)
        if edges.ndim != 1 or edges.shape[0] != len(self.owners) + 1 or len(self.owners) < 1:
            raise ShapeError(f"edges must have one more entry than owners, got {edges.shape}, {len(self.owners)}")
        if edges[0] != 0.0 or edges[-1] != 1.0 or np.any(np.diff(edges) <= 0):
            raise ModelInputError("edges must increase strictly from 0 to 1")
        object.__setattr__(self, "edges", read_only_view(edges))

    def masses(self) -> dict[str, float]:
        """Each owning arm's total length."""
        out: dict[str, float] = {}
        for owner, length in zip(self.owners, np.diff(self.edges)):
            out[owner] = out.get(owner, 0.0) + float(length)
        return out

    def locate(self, positions: ArrayLike) -> IntArray:
        """(n,) the interval index holding each position in [0, 1)."""
        u = np.asarray(positions, dtype=np.float64)
        idx: IntArray = np.searchsorted(self.edges, u, side="right").astype(np.int64) - 1
        return np.clip(idx, 0, len(self.owners) - 1)

    def assign(self, positions: ArrayLike) -> list[str]:
        """The arm id serving each position."""
        return [self.owners[k] for k in self.locate(positions)]


def _normalised(probs: Mapping[str, float]) -> dict[str, float]:
    """The positive entries of ``probs`` after checking it is a distribution."""
    values = np.array(list(probs.values()), dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0) or abs(values.sum() - 1) > 1e-9:
        raise ModelInputError("probs must be a non-empty distribution (non-negative, summing to 1)")
    return {a: float(p) for a, p in probs.items() if p > 0}


def _build(pieces: list[tuple[float, float, str]]) -> Layout:
    """A layout from (start, end, owner) pieces that tile [0, 1): sorted, empty pieces dropped, neighbours merged."""
    pieces = sorted((s, e, a) for s, e, a in pieces if e > s)
    edges = [0.0]
    owners: list[str] = []
    for _, end, owner in pieces:
        if owners and owners[-1] == owner:
            edges[-1] = end
        else:
            owners.append(owner)
            edges.append(end)
    edges[-1] = 1.0
    return Layout(np.array(edges), tuple(owners))


def initial_layout(probs: Mapping[str, float]) -> Layout:
    """Arms in id order, each on one interval of its probability's length (cumulative probabilities)."""
    q = _normalised(probs)
    arms = sorted(q)
    cum = np.concatenate([[0.0], np.cumsum([q[a] for a in arms])])
    cum[-1] = 1.0
    return _build([(float(cum[k]), float(cum[k + 1]), a) for k, a in enumerate(arms)])


def relayout(previous: Layout, probs: Mapping[str, float]) -> Layout:
    """The layout of ``probs`` that changes the owner of the least length of [0, 1) from ``previous``.

    A shrinking arm keeps its longest old intervals (trimming the last one kept) and frees the rest, so
    its smallest fragments are the ones given away; freed pieces, and those of arms absent from
    ``probs``, go to growing and new arms in arm-id order, each taking first the free pieces that touch
    its own intervals (they merge, so the layout does not fragment step after step), then the others
    in position order. The changed length is exactly TV(previous.masses(), probs).

    Args:
        previous: the layout users are served by now.
        probs: arm id → new probability (summing to 1; arms may appear or disappear).
    """
    q = _normalised(probs)
    budget = dict(q)  # length each arm may still keep of its old territory
    lengths = np.diff(previous.edges)
    kept: list[tuple[float, float, str]] = []
    free: list[tuple[float, float]] = []
    for k in np.argsort(-lengths, kind="stable"):  # longest intervals are kept first
        owner = previous.owners[k]
        start, end = float(previous.edges[k]), float(previous.edges[k + 1])
        room = budget.get(owner, 0.0)
        take = min(room, end - start)
        if take > 0:
            kept.append((start, start + take, owner))
            budget[owner] = room - take
        if start + take < end:
            free.append((start + take, end))
    free.sort()
    needs = [(a, budget[a]) for a in sorted(budget) if budget[a] > 1e-15]
    pieces = kept
    touching: dict[str, set[float]] = {}
    for s, e, a in kept:
        touching.setdefault(a, set()).update((s, e))
    for n_arm, (arm, need) in enumerate(needs):
        last = n_arm == len(needs) - 1
        ends = touching.get(arm, set())
        order = sorted(range(len(free)), key=lambda j: (free[j][0] not in ends and free[j][1] not in ends, j))
        used: set[int] = set()
        for j in order:
            if need <= 1e-15 and not last:
                break
            start, end = free[j]
            if last or end - start <= need:  # the last arm takes every remaining piece, absorbing rounding
                pieces.append((start, end, arm))
                need -= end - start
                used.add(j)
            elif free[j][1] in ends:  # a piece that touches the arm on its right: take its right end
                pieces.append((end - need, end, arm))
                free[j] = (start, end - need)
                need = 0.0
            else:
                pieces.append((start, start + need, arm))
                free[j] = (start + need, end)
                need = 0.0
        free = [piece for j, piece in enumerate(free) if j not in used]
    # rounding can leave a sliver unowned when no arm grows; give it to the arm on its left
    pieces.extend((s, e, "") for s, e in free)
    pieces.sort()
    fixed: list[tuple[float, float, str]] = []
    for s, e, a in pieces:
        fixed.append((s, e, a if a or not fixed else fixed[-1][2]))
    return _build(fixed)


def moved_fraction(before: Layout, after: Layout) -> float:
    """The exact length of [0, 1) whose owner differs between two layouts: the share of users (uniform
    positions) who change arm."""
    edges = np.union1d(before.edges, after.edges)
    mids = 0.5 * (edges[:-1] + edges[1:])
    a = np.array(before.owners, dtype=object)[before.locate(mids)]
    b = np.array(after.owners, dtype=object)[after.locate(mids)]
    return float(np.diff(edges)[a != b].sum())


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """``½ Σ_a |p_a − q_a|`` over the union of arms: the least share of users any reassignment must move."""
    arms = set(p) | set(q)
    return 0.5 * sum(abs(p.get(a, 0.0) - q.get(a, 0.0)) for a in arms)
