"""Exploration and model health of one batch: pure, vectorised functions of a plan's arrays.

A plan is the flat pair arrays of one send batch: ``pair_user (E,)``, ``pair_item (E,)`` (int
ids) and ``propensity (E,)`` in [0, 1] (the policy's probability of sending the pair; the LP's
``x`` when there is nothing else). Every function here is a closed form over those arrays; the
thresholds that turn them into alarms live in :mod:`evaluation.health.alarms`.

Definitions (each tested against a brute force or a closed form):

* selection entropy: the entropy (nats) of the item distribution of the expected sends,
  ``q_i = sum_{e: item i} p_e / sum_e p_e``; ``log(#items)`` when sends are spread evenly, 0 when
  one item takes every send.
* item coverage: the share of the batch's candidate items whose expected sends exceed
  ``min_mass`` (0: any positive mass).
* overlap@K between consecutive plans, per user: ``A_u`` = the user's top-K items by propensity
  now (only items with positive propensity; ties to the smaller item id), ``B_u`` the same in the
  previous plan; ``|A_u ∩ B_u| / min(K, max(|A_u|, |B_u|))``, averaged over the users of both
  plans with a non-empty ``A_u ∪ B_u``. With K candidates sent per user this is the brief's
  ``|A∩B|/K``; the ``min`` keeps a user who is sent one item at a full 1.0 when it does not change.
* allocation variance: with ``R`` plans of the same batch (other Thompson draws),
  ``mean_e Var_r(x_{r,e})``; from propensities alone, ``mean_e p_e (1 - p_e)``, which is the
  same quantity when each plan is 0/1 and the propensity is their mean (what the allocator
  publishes): the variance of an indicator of mean ``p`` is ``p (1 - p)``. 0 means the
  probabilities do not move between draws: no exploration.
* calibration of ``n`` outcomes with predictions ``p``: the expected calibration error over
  equal-mass bins (sorted by ``p``, bins of ``n // bins`` or one more), ``sum_b (n_b / n)
  |mean(y_b) - mean(p_b)|``, with its expectation and standard deviation under perfect
  calibration (a normal approximation per bin: ``E|Z| = sqrt(2 v / pi)``); and the gap
  ``mean(p) - mean(y)`` with its standard error ``sqrt(sum p (1 - p)) / n``.
* population stability index of ``current`` against ``reference``: bins at the reference's
  deciles (equal mass on the reference), ``sum_b (c_b - r_b) log(c_b / r_b)`` on the bin shares,
  each floored at :data:`PSI_FLOOR` so an empty bin costs a finite amount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray, IntArray, weighted_bincount
from evaluation.errors import EvaluationInputError

#: Share given to an empty PSI bin (of the reference or the current sample): 1e-4 keeps the
#: index finite and makes a bin that empties entirely cost about ``r log(r / 1e-4)``.
PSI_FLOOR = 1e-4
#: Reference quantile bins of a PSI: deciles, the usual choice of the credit-scoring practice
#: the 0.1 / 0.2 rules of thumb come from.
PSI_BINS = 10


def _pairs(pair_user: ArrayLike, pair_item: ArrayLike, propensity: ArrayLike) -> tuple[IntArray, IntArray, FloatArray]:
    u = np.asarray(pair_user, dtype=np.int64)
    i = np.asarray(pair_item, dtype=np.int64)
    p = np.asarray(propensity, dtype=float)
    if u.ndim != 1 or u.shape != i.shape or u.shape != p.shape:
        raise EvaluationInputError(f"pair arrays must be 1-D of one length, got {u.shape}, {i.shape}, {p.shape}")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0 + 1e-9):
        raise EvaluationInputError("propensities must be finite and in [0, 1]")
    if u.size and (u.min() < 0 or i.min() < 0):
        raise EvaluationInputError("user and item ids must be non-negative")
    return u, i, p


def item_mass(pair_item: ArrayLike, propensity: ArrayLike) -> tuple[IntArray, FloatArray]:
    """Expected sends per candidate item.

    Args:
        pair_item: ``(E,)`` int item ids.
        propensity: ``(E,)`` send probabilities.

    Returns:
        ``(items (I,), mass (I,))``: the distinct candidate items, sorted, and their summed propensity.
    """
    items, inverse = np.unique(np.asarray(pair_item, dtype=np.int64), return_inverse=True)
    return items, weighted_bincount(inverse, np.asarray(propensity, dtype=float), items.size)


def selection_entropy(pair_item: ArrayLike, propensity: ArrayLike) -> float:
    """Entropy in nats of the item distribution of the expected sends; nan when nothing is sent."""
    _, mass = item_mass(pair_item, propensity)
    total = float(mass.sum())
    if total <= 0.0:
        return math.nan
    q = mass[mass > 0] / total
    return float(-(q * np.log(q)).sum())


def item_coverage(pair_item: ArrayLike, propensity: ArrayLike, min_mass: float = 0.0) -> float:
    """Share of the candidate items with expected sends above ``min_mass``; nan without candidates."""
    _, mass = item_mass(pair_item, propensity)
    return float((mass > min_mass).mean()) if mass.size else math.nan


def top_k_pairs(
    pair_user: ArrayLike, pair_item: ArrayLike, propensity: ArrayLike, k: int, tie: ArrayLike | None = None
) -> IntArray:
    """Indices of each user's top-``k`` pairs by propensity (positive ones only).

    Args:
        pair_user: ``(E,)`` user ids.
        pair_item: ``(E,)`` item ids.
        propensity: ``(E,)`` send probabilities.
        k: K >= 1.
        tie: ``(E,)`` ints; equal propensities go to the smaller (the item id when None).

    Returns:
        ``(M,)`` indices into the pair arrays, M <= k * users.
    """
    u, i, p = _pairs(pair_user, pair_item, propensity)
    if k < 1:
        raise EvaluationInputError(f"k must be >= 1, got {k}")
    order = np.lexsort((i if tie is None else np.asarray(tie, dtype=np.int64), -p, u))
    su = u[order]
    rank = np.arange(order.size) - np.searchsorted(su, su, side="left")
    keep = (rank < k) & (p[order] > 0)
    return order[keep]


def overlap_at_k(
    previous: tuple[ArrayLike, ...],
    current: tuple[ArrayLike, ...],
    k: int,
) -> float:
    """Per-user overlap@K of two consecutive plans (see the module docstring).

    Args:
        previous: ``(pair_user, pair_item, propensity)`` of the previous batch, each ``(E0,)``,
            optionally with a fourth ``(E0,)`` tie-break of equal propensities (:func:`top_k_pairs`).
        current: The same of this batch, each ``(E1,)``.
        k: K >= 1.

    Returns:
        The mean over users of both plans with a top-K set in either; nan when there is none.
    """
    sets = []
    for plan in (previous, current):
        pu, pi, pp = plan[:3]
        u, i, _ = _pairs(pu, pi, pp)
        top = top_k_pairs(u, i, pp, k, plan[3] if len(plan) > 3 else None)
        sets.append((u, u[top], i[top]))
    (u0, a_user, a_item), (u1, b_user, b_item) = sets
    n_users = int(max(u0.max(initial=-1), u1.max(initial=-1))) + 1
    n_items = int(max(a_item.max(initial=-1), b_item.max(initial=-1))) + 1
    both = np.zeros(n_users, dtype=bool)
    both[np.intersect1d(u0, u1)] = True
    size_a = np.bincount(a_user, minlength=n_users)
    size_b = np.bincount(b_user, minlength=n_users)
    # A pair key is unique within one top-K set, so a key in both sets is one shared item.
    shared_keys = np.intersect1d(a_user * n_items + a_item, b_user * n_items + b_item)
    shared = np.bincount(shared_keys // max(n_items, 1), minlength=n_users)
    denominator = np.minimum(k, np.maximum(size_a, size_b))
    users = both & (denominator > 0)
    if not users.any():
        return math.nan
    return float((shared[users] / denominator[users]).mean())


def allocation_variance(plans: ArrayLike) -> float:
    """``mean_e Var_r(x_{r,e})`` over ``(R, E)`` plans of one batch (population variance); 0 for one plan."""
    x = np.asarray(plans, dtype=float)
    if x.ndim != 2 or x.shape[0] < 1:
        raise EvaluationInputError(f"plans must be (R, E) with R >= 1, got {x.shape}")
    return float(x.var(axis=0).mean()) if x.shape[1] else math.nan


def send_variance(propensity: ArrayLike) -> float:
    """``mean_e p_e (1 - p_e)``: the allocation variance of 0/1 plans whose mean is ``p`` (see the module docstring)."""
    p = np.asarray(propensity, dtype=float)
    return float((p * (1.0 - p)).mean()) if p.size else math.nan


@dataclass(frozen=True)
class Calibration:
    """Calibration of ``n`` binary outcomes against their predicted probabilities.

    Attributes:
        n: Outcomes.
        ece: Expected calibration error over equal-mass bins.
        ece_null_mean: Its expectation under perfect calibration (normal approximation).
        ece_null_std: Its standard deviation under perfect calibration.
        gap: ``mean(predicted) - mean(observed)``.
        gap_se: Its standard error under perfect calibration, ``sqrt(sum p (1 - p)) / n``.
    """

    n: int
    ece: float
    ece_null_mean: float
    ece_null_std: float
    gap: float
    gap_se: float

    @property
    def gap_z(self) -> float:
        """``gap / gap_se``; nan when the standard error is 0."""
        return self.gap / self.gap_se if self.gap_se > 0 else math.nan


def calibration(predicted: ArrayLike, observed: ArrayLike, bins: int = 10) -> Calibration:
    """Calibration of outcomes ``observed (n,)`` (0/1) against ``predicted (n,)`` in [0, 1].

    Args:
        predicted: Predicted probabilities.
        observed: Outcomes.
        bins: Equal-mass bins (at most ``n``).

    Returns:
        The ECE with its null mean and std, and the gap with its SE (all nan when ``n == 0``).
    """
    p = np.asarray(predicted, dtype=float)
    y = np.asarray(observed, dtype=float)
    if p.ndim != 1 or p.shape != y.shape or bins < 1:
        raise EvaluationInputError(f"need equal 1-D predictions and outcomes and bins >= 1, got {p.shape}, {y.shape}")
    n = p.size
    if n == 0:
        return Calibration(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    b = min(bins, n)
    # Sorted by prediction, pair r goes to bin floor(r * b / n): sizes n // b or n // b + 1.
    which = np.empty(n, dtype=np.int64)
    which[np.argsort(p, kind="stable")] = (np.arange(n) * b) // n
    count = np.bincount(which, minlength=b).astype(float)
    mean_p = weighted_bincount(which, p, b) / count
    mean_y = weighted_bincount(which, y, b) / count
    var = weighted_bincount(which, p * (1.0 - p), b) / count**2
    w = count / n
    return Calibration(
        n=n,
        ece=float((w * np.abs(mean_y - mean_p)).sum()),
        ece_null_mean=float((w * np.sqrt(2.0 * var / math.pi)).sum()),
        ece_null_std=float(np.sqrt((w**2 * var * (1.0 - 2.0 / math.pi)).sum())),
        gap=float(p.mean() - y.mean()),
        gap_se=float(np.sqrt((p * (1.0 - p)).sum()) / n),
    )


def psi(reference: ArrayLike, current: ArrayLike, bins: int = PSI_BINS) -> FloatArray:
    """Population stability index of each column of ``current`` against ``reference``.

    Args:
        reference: ``(n,)`` or ``(n, d)`` the reference window (n >= 1).
        current: ``(m,)`` or ``(m, d)`` the window compared (m >= 1).
        bins: Quantile bins of the reference.

    Returns:
        ``(d,)`` PSI per column (``(1,)`` for 1-D inputs).
    """
    r = np.asarray(reference, dtype=float)
    c = np.asarray(current, dtype=float)
    r = r[:, None] if r.ndim == 1 else r
    c = c[:, None] if c.ndim == 1 else c
    if r.ndim != 2 or c.ndim != 2 or r.shape[1] != c.shape[1] or r.shape[0] < 1 or c.shape[0] < 1 or bins < 2:
        raise EvaluationInputError(f"need (n, d) and (m, d) samples with n, m >= 1 and bins >= 2: {r.shape}, {c.shape}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(c))):
        raise EvaluationInputError("PSI samples must be finite")
    # (bins - 1, d) interior edges at the reference's quantiles; a value on an edge goes right.
    edges = np.quantile(r, np.arange(1, bins) / bins, axis=0)
    out = np.empty(r.shape[1])
    for j in range(r.shape[1]):  # one pass per feature column, vectorised over rows
        r_share = np.bincount(np.searchsorted(edges[:, j], r[:, j], side="right"), minlength=bins) / r.shape[0]
        c_share = np.bincount(np.searchsorted(edges[:, j], c[:, j], side="right"), minlength=bins) / c.shape[0]
        r_share = np.maximum(r_share, PSI_FLOOR)
        c_share = np.maximum(c_share, PSI_FLOOR)
        out[j] = float(((c_share - r_share) * np.log(c_share / r_share)).sum())
    return out


def psi_of_shares(reference: ArrayLike, current: ArrayLike) -> float:
    """PSI of two histograms given as shares (each ``(bins,)``, summing to 1), floored at :data:`PSI_FLOOR`."""
    r = np.maximum(np.asarray(reference, dtype=float), PSI_FLOOR)
    c = np.maximum(np.asarray(current, dtype=float), PSI_FLOOR)
    if r.shape != c.shape or r.ndim != 1:
        raise EvaluationInputError(f"need two equal 1-D histograms, got {r.shape}, {c.shape}")
    return float(((c - r) * np.log(c / r)).sum())
