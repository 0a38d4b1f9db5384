"""The per-send-batch allocation LP and its ``.npz`` file format.

Candidate pairs ``e = (user u, item i)``, ``e = 0..E-1``, each with a variable ``x_e in [0, 1]``::

    maximise    sum_e r_e x_e
    subject to  sum_{e of u} x_e <= k_u                    for every user u
                sum_e c_{l,e} x_e <= B_l                   for l = 0..L-1   (platform budgets)
                lo_p <= sum_{e of provider p} x_e <= hi_p  for every provider p

Users and providers are numbered from 0. The problem file is an ``.npz`` with exactly the arrays
``user`` (int64, E), ``item`` (int64, E), ``reward`` (float64, E), ``cost`` (float64, L x E),
``budget`` (float64, L), ``provider`` (int64, E), ``provider_min`` / ``provider_max``
(float64, P; ``-inf`` / ``+inf`` allowed for "no bound") and ``user_cap`` (float64, n_users, or a
0-d scalar shared by every user).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from os import PathLike

import numpy as np
from numpy.typing import ArrayLike

from allocator.errors import ProblemValidationError
from banditlp.arrays import BoolArray, FloatArray, IntArray

PROBLEM_KEYS = ("user", "item", "reward", "cost", "budget", "provider", "provider_min", "provider_max", "user_cap")


def _first_bad(mask: BoolArray) -> str:
    """Index (as text) of the first True entry of a boolean array of any shape."""
    flat = int(np.flatnonzero(mask.ravel())[0])
    return str(tuple(int(i) for i in np.unravel_index(flat, mask.shape))) if mask.ndim > 1 else str(flat)


def _ids(name: str, value: ArrayLike) -> IntArray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ProblemValidationError(f"{name}: expected a 1-d integer array (n_pairs,), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ProblemValidationError(f"{name}: expected an integer dtype, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (bad := arr < 0).any():
        raise ProblemValidationError(f"{name}: negative id {arr[bad][0]} at index {_first_bad(bad)}")
    return arr


def _floats(name: str, value: ArrayLike, *, allow_neg_inf: bool = False, allow_pos_inf: bool = False) -> FloatArray:
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ProblemValidationError(f"{name}: expected a real numeric dtype, got {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if (bad := np.isnan(arr)).any():
        raise ProblemValidationError(f"{name}: NaN at index {_first_bad(bad)}")
    bad = np.isinf(arr) & ~((arr < 0) & allow_neg_inf) & ~((arr > 0) & allow_pos_inf)
    if bad.any():
        raise ProblemValidationError(f"{name}: infinite value {arr[bad][0]} at index {_first_bad(bad)}")
    return arr


@dataclass(frozen=True, eq=False)
class AllocationProblem:
    """One allocation LP, validated on construction (arrays are converted to int64 / float64).

    Attributes:
        user: (n_pairs,) user id of each pair, in ``[0, n_users)``.
        item: (n_pairs,) item id of each pair (kept for the decisions; not used by the LP).
        reward: (n_pairs,) objective coefficient ``r_e``.
        cost: (n_budgets, n_pairs) budget coefficients ``c_{l,e}``.
        budget: (n_budgets,) right-hand sides ``B_l``.
        provider: (n_pairs,) provider id of each pair, in ``[0, n_providers)``.
        provider_min: (n_providers,) ``lo_p``; ``-inf`` means no minimum.
        provider_max: (n_providers,) ``hi_p``; ``+inf`` means no maximum.
        user_cap: (n_users,) ``k_u``, or a 0-d array shared by every user (then
            ``n_users = max(user) + 1``).

    Raises:
        ProblemValidationError: on any malformed input (the message names the array and the
            first bad index).
    """

    user: IntArray
    item: IntArray
    reward: FloatArray
    cost: FloatArray
    budget: FloatArray
    provider: IntArray
    provider_min: FloatArray
    provider_max: FloatArray
    user_cap: FloatArray

    def __post_init__(self) -> None:
        user, item, provider = _ids("user", self.user), _ids("item", self.item), _ids("provider", self.provider)
        e = user.shape[0]
        if e == 0:
            raise ProblemValidationError("user: the problem has no candidate pairs")
        for name, arr in (("item", item), ("provider", provider)):
            if arr.shape[0] != e:
                raise ProblemValidationError(f"{name}: expected shape ({e},) like user, got {arr.shape}")
        reward = _floats("reward", self.reward)
        if reward.shape != (e,):
            raise ProblemValidationError(f"reward: expected shape ({e},), got {reward.shape}")
        cost = _floats("cost", self.cost)
        if cost.ndim != 2 or cost.shape[1] != e:
            raise ProblemValidationError(f"cost: expected shape (n_budgets, {e}), got {cost.shape}")
        budget = _floats("budget", self.budget)
        if budget.shape != (cost.shape[0],):
            raise ProblemValidationError(
                f"budget: expected shape ({cost.shape[0]},) (one per cost row), got {budget.shape}"
            )
        lo = _floats("provider_min", self.provider_min, allow_neg_inf=True)
        hi = _floats("provider_max", self.provider_max, allow_pos_inf=True)
        if lo.ndim != 1 or hi.shape != lo.shape:
            raise ProblemValidationError(
                f"provider_min/provider_max: expected equal 1-d shapes, got {lo.shape} and {hi.shape}"
            )
        if (bad := lo > hi).any():
            i = int(np.flatnonzero(bad)[0])
            raise ProblemValidationError(f"provider_min > provider_max for provider {i}: {lo[i]} > {hi[i]}")
        if int(provider.max()) >= lo.shape[0]:
            i = int(np.flatnonzero(provider >= lo.shape[0])[0])
            raise ProblemValidationError(
                f"provider: id {provider[i]} at index {i} is out of range for {lo.shape[0]} providers"
            )
        cap = _floats("user_cap", self.user_cap)
        if cap.ndim > 1:
            raise ProblemValidationError(f"user_cap: expected a scalar or shape (n_users,), got {cap.shape}")
        if (bad := cap < 0).any():
            raise ProblemValidationError(f"user_cap: negative cap at index {_first_bad(bad) if cap.ndim else 0}")
        if cap.ndim == 1 and int(user.max()) >= cap.shape[0]:
            i = int(np.flatnonzero(user >= cap.shape[0])[0])
            raise ProblemValidationError(
                f"user: id {user[i]} at index {i} is out of range for {cap.shape[0]} user caps"
            )
        normalised: tuple[tuple[str, IntArray | FloatArray], ...] = (
            ("user", user),
            ("item", item),
            ("reward", reward),
            ("cost", cost),
            ("budget", budget),
            ("provider", provider),
            ("provider_min", lo),
            ("provider_max", hi),
            ("user_cap", cap),
        )
        for k, value in normalised:
            view = np.asarray(value, order="C").view()  # a read-only view: the caller's array stays writable
            view.flags.writeable = False  # frozen all the way down: grouping caches rely on it
            object.__setattr__(self, k, view)  # frozen: normalised in place

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def n_pairs(self) -> int:
        """E, the number of candidate pairs (variables)."""
        return int(self.user.shape[0])

    @property
    def n_users(self) -> int:
        """Number of users: ``len(user_cap)``, or ``max(user) + 1`` for a scalar cap."""
        return int(self.user_cap.shape[0]) if self.user_cap.ndim else int(self.user.max()) + 1

    @property
    def n_providers(self) -> int:
        """P, the number of providers."""
        return int(self.provider_min.shape[0])

    @property
    def n_budgets(self) -> int:
        """L, the number of platform budget rows."""
        return int(self.cost.shape[0])

    @cached_property
    def caps(self) -> FloatArray:
        """(n_users,) per-user cap ``k_u`` (the scalar broadcast when one was given)."""
        out = np.broadcast_to(self.user_cap, (self.n_users,)).astype(np.float64)
        out.flags.writeable = False
        return out

    # -- CSR-like grouping, computed once ------------------------------------------------------
    @cached_property
    def user_order(self) -> IntArray:
        """(n_pairs,) permutation that sorts pairs by user (stable: keeps input order within a user)."""
        u = self.user
        order = np.arange(u.shape[0]) if (u[1:] >= u[:-1]).all() else np.argsort(u, kind="stable")
        order.flags.writeable = False
        return order

    @cached_property
    def user_offsets(self) -> IntArray:
        """(n_users + 1,) offsets into ``user_order``: user u's pairs are ``user_order[off[u]:off[u+1]]``."""
        off = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.user, minlength=self.n_users), out=off[1:])
        off.flags.writeable = False
        return off

    @cached_property
    def provider_size(self) -> IntArray:
        """(n_providers,) number of candidate pairs of each provider."""
        out = np.bincount(self.provider, minlength=self.n_providers).astype(np.int64)
        out.flags.writeable = False
        return out


def save_problem(problem: AllocationProblem, path: str | PathLike[str]) -> None:
    """Write ``problem`` to an ``.npz`` with exactly the arrays named in :data:`PROBLEM_KEYS`."""
    np.savez(path, allow_pickle=False, **{k: getattr(problem, k) for k in PROBLEM_KEYS})


def load_problem(path: str | PathLike[str]) -> AllocationProblem:
    """Read and validate a problem ``.npz`` written by :func:`save_problem` (or by anyone else).

    Raises:
        ProblemValidationError: a key is missing or unexpected, or an array is malformed.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise ProblemValidationError(f"{path}: not a readable .npz problem file ({exc})") from exc
    missing = [k for k in PROBLEM_KEYS if k not in arrays]
    extra = sorted(set(arrays) - set(PROBLEM_KEYS))
    if missing or extra:
        raise ProblemValidationError(f"{path}: missing arrays {missing}, unexpected arrays {extra}")
    return AllocationProblem(**arrays)
