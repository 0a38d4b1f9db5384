"""The auditor's check of the ``users`` table, pure: each user's stored head against a replay
of the feedback log computed in closed form.

A user's head is Gaussian with natural parameters ``(A, b)``; from the prior ``N(0, λ⁻¹ I_k)``
and every distinct feedback record it absorbed, with item features ``z_i (k,)``, outcome
``y_i`` and the global model's mean conversion ``p_i`` at scoring time,

    A = λ I_k + Σ_i z_i z_iᵀ / σ²        b = Σ_i z_i (y_i - p_i) / σ²

whatever the order and however often each record was delivered (one absorption per feedback
id). This module never calls the learner's code: the sums are its own.

Which records a user must have absorbed is judged from timestamps only. The learner can join a
feedback record with its decision context only if the user was scored for that batch; a
feedback record whose (batch, user) had a ``scores`` record created before it is *certain*
(the scorer stores the context before it publishes the scores). One whose (batch, user) was
scored only after it (a user the allocator's fallback decided and a restarted scorer scored
late) is *ambiguous*: the learner absorbs it if the late context arrived before it processed
the record, else dead-letters it; both are correct. A record of a user never scored must not
be absorbed. The stored digests of absorbed feedback ids (BLAKE2b, 8 bytes, little-endian)
say which ambiguous records were taken; the closed form over exactly those then has to
reproduce ``A``, ``b`` and the count.

``p_i`` depends on which model version scored the user's batch: a batch re-scored after a kill
may have been scored by two versions, and the context the learner used is one of them; each
record carries the values of every version that scored its (batch, user), and a head matches
when some choice among them reproduces ``b`` (the choices are few: almost always one).

Tolerances: ``A`` and the count are exact sums (``rtol`` 1e-6). ``p`` is the output of a float32
network, and the same pair scored in another batch of rows differs in its last bits (~1e-7), so
``b`` is compared within ``Σ_i |z_i| p_tol / σ²`` elementwise (``p_tol`` 1e-5: a hundred times
that noise, a thousand times below the change a different model version makes).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_CHOICES = 1 << 20  # combinations of model versions tried per user (records with one version add none)
CHUNK = 4096


def digest(feedback_id: str) -> int:
    """The 64-bit digest the users table stores for an absorbed feedback id."""
    return int.from_bytes(hashlib.blake2b(feedback_id.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True, eq=False)
class FeedbackFact:
    """One distinct feedback record of a user, as the auditor reconstructed it.

    Attributes:
        feedback_id: ``<decision id>#<item id>``.
        z: ``(k,)`` the item features of the user's effect (from the candidates record).
        y: the outcome (1.0 converted, else 0.0).
        p_options: the global model's mean conversion of the pair under each model version whose
            context the learner can have joined the record with: the last scoring created before
            the record, and every one created after it (empty: never scored, never absorbable).
        certain: scored before the feedback was produced (see the module docstring).
        p_others: the same under the versions of earlier scorings, whose contexts a later
            scoring overwrote before the record existed; tried only when ``p_options`` fail (a
            context write lost with a SIGKILLed worker can leave the older one in place).
    """

    feedback_id: str
    z: np.ndarray
    y: float
    p_options: tuple[float, ...]
    certain: bool
    p_others: tuple[float, ...] = ()


@dataclass(frozen=True, eq=False)
class StoredHead:
    """A user's value in the ``users`` table: ``A (k, k)``, ``b (k,)``, the digests of the last
    absorbed feedback ids ``seen (m,)`` (at most the learner's window) and the count ``n``."""

    A: np.ndarray
    b: np.ndarray
    seen: frozenset[int]
    n: int


@dataclass(frozen=True)
class HeadVerdict:
    """Why a user's head does or does not match (``ok`` when every check passes)."""

    ok: bool
    reason: str = ""
    absorbed: int = 0
    ambiguous_absorbed: int = 0
    b_error: float = 0.0  # the smallest max |b - b_replay| / tolerance over the choices (<= 1: a match)


def closed_form(z: np.ndarray, r: np.ndarray, precision: float, noise_var: float) -> tuple[np.ndarray, np.ndarray]:
    """``(A (k, k), b (k,))`` of a head with prior precision ``precision`` that absorbed the rows
    ``z (m, k)`` with residuals ``r (m,)`` at noise variance ``noise_var``."""
    k = z.shape[1]
    return precision * np.eye(k) + z.T @ z / noise_var, z.T @ r / noise_var


def check_head(
    stored: StoredHead | None,
    facts: Sequence[FeedbackFact],
    precision: float,
    noise_var: float,
    window: int,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    p_tol: float = 1e-5,
) -> HeadVerdict:
    """Compare one user's stored head with the closed-form replay of its feedback ``facts``.

    ``window``: how many digests the table keeps per user; when the head absorbed more, the
    oldest absorbed ids are no longer listed, and those are taken to be the certain records
    not listed (an ambiguous record outside the window cannot be told apart and is taken as
    not absorbed).
    """
    certain = [f for f in facts if f.certain and f.p_options]
    if stored is None:
        return HeadVerdict(
            not certain, "" if not certain else f"no head, but {len(certain)} feedback records to absorb"
        )
    by_digest = {digest(f.feedback_id): f for f in facts}
    unknown = [d for d in stored.seen if d not in by_digest]
    if unknown:
        return HeadVerdict(False, f"{len(unknown)} absorbed feedback ids that the feedback log does not hold")
    listed = [by_digest[d] for d in stored.seen]
    if any(not f.p_options for f in listed):
        return HeadVerdict(False, "absorbed feedback of a batch the user was never scored for")
    if stored.n < len(stored.seen):
        return HeadVerdict(False, f"count {stored.n} below the {len(stored.seen)} listed feedback ids")
    listed_ids = {f.feedback_id for f in listed}
    unlisted_certain = [f for f in certain if f.feedback_id not in listed_ids]
    if stored.n <= len(stored.seen) or len(stored.seen) < window:
        if unlisted_certain:
            return HeadVerdict(False, f"{len(unlisted_certain)} certain feedback records not absorbed")
        absorbed = listed
    else:  # the window overflowed: the unlisted absorbed records are the oldest certain ones
        absorbed = listed + unlisted_certain
    if len(absorbed) != stored.n:
        return HeadVerdict(False, f"count {stored.n}, but the log accounts for {len(absorbed)} absorbed records")
    k = stored.A.shape[0]
    z = np.array([f.z for f in absorbed], dtype=np.float64).reshape(len(absorbed), k)
    y = np.array([f.y for f in absorbed], dtype=np.float64)
    A, _ = closed_form(z, np.zeros(len(absorbed)), precision, noise_var)
    if stored.b.shape != (k,) or not np.allclose(stored.A, A, rtol=rtol, atol=atol):
        return HeadVerdict(False, "A differs from the closed form over the absorbed records")
    n_amb = sum(1 for f in absorbed if not f.certain)
    # b is linear in the p's: the first versions' sum, then each choice's correction
    p0 = np.array([f.p_options[0] for f in absorbed], dtype=np.float64)
    _, b0 = closed_form(z, y - p0, precision, noise_var)
    tol = np.abs(z).sum(axis=0) * p_tol / noise_var + atol  # (k,)
    best = np.inf
    for options in ([f.p_options for f in absorbed], [f.p_options + f.p_others for f in absorbed]):
        err = _best_choice(options, z, p0, stored.b - b0, tol, rtol * np.abs(b0), noise_var)
        best = min(best, err)
        if err <= 1.0:
            return HeadVerdict(True, absorbed=len(absorbed), ambiguous_absorbed=n_amb, b_error=err)
    return HeadVerdict(
        False,
        f"b differs from the closed form under every model version that scored the batches "
        f"({best:.3g} x the tolerance{_one_record(absorbed, z, stored.b - b0, p0, tol, noise_var)})",
        b_error=best,
    )


def _best_choice(
    options: Sequence[tuple[float, ...]],
    z: np.ndarray,
    p0: np.ndarray,
    r: np.ndarray,
    tol: np.ndarray,
    rel: np.ndarray,
    noise_var: float,
) -> float:
    """The smallest ``max |r - Δb(choice)| / (tol + rel)`` over the choices of one ``p`` per record
    (``options[i]``, whose first entry is ``p0[i]``), where ``Δb = Σ_i z_i (p0_i - p_i) / σ²``; the
    combinations of the records with more than one option are evaluated ``CHUNK`` at a time, at
    most ``MAX_CHOICES`` of them."""
    multi = [i for i, o in enumerate(options) if len(o) > 1]
    if not multi:
        return float(np.max(np.abs(r) / (tol + rel)))
    zm = z[multi] / noise_var  # (m, k)
    combos = itertools.islice(itertools.product(*(options[i] for i in multi)), MAX_CHOICES)
    best = np.inf
    while True:
        chunk = np.array(list(itertools.islice(combos, CHUNK)), dtype=np.float64)  # (c, m)
        if chunk.size == 0:
            return best
        db = (p0[multi] - chunk) @ zm  # (c, k)
        best = min(best, float(np.min(np.max(np.abs(r - db) / (tol + rel), axis=1))))
        if best <= 1.0:
            return best


def _one_record(
    absorbed: Sequence[FeedbackFact], z: np.ndarray, r: np.ndarray, p0: np.ndarray, tol: np.ndarray, noise_var: float
) -> str:
    """For the report: the record whose ``p`` alone explains the residual ``r = b - b_replay``
    (``r = -z_i δ / σ²`` for a learner that used ``p_i + δ``), with that ``p``, if one does."""
    for i, f in enumerate(absorbed):
        zz = float(z[i] @ z[i])
        if zz == 0.0:
            continue
        delta = -float(z[i] @ r) * noise_var / zz
        if np.all(np.abs(r + z[i] * delta / noise_var) <= tol):
            return f"; explained by {f.feedback_id} alone, had the learner used p = {p0[i] + delta:.6g} for it"
    return "; no single record explains it"
