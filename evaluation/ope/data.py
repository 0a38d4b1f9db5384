"""The logged data of off-policy evaluation and the checks that make a target's value identifiable.

A log is ``m`` candidate pairs grouped in ``n`` rounds: a round is one user's decision in a send
batch, or one (impression, position) of a single-slot log such as the Open Bandit Dataset, where
each round holds every action as a candidate pair and exactly one of them is sent. The behaviour
(logging) policy sent some of the pairs, each with a known marginal probability; the outcomes of
the sent pairs were observed.

Every array handed in is checked once, at the edge, and kept as a read-only copy: the estimators
downstream assume finite values and do no checks of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import BoolArray, FloatArray, IntArray
from evaluation.errors import OPEInputError


def _read_only(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``array`` (one this module made) frozen in place."""
    array.flags.writeable = False
    return array


def _vector(name: str, values: ArrayLike, m: int | None, dtype: type[np.generic]) -> np.ndarray[Any, Any]:
    """A copy of ``values`` as a 1-D array of ``dtype`` (of length ``m`` unless ``m`` is None).

    A copy, so that a caller who reuses its buffers cannot change a checked log behind its back.
    """
    try:
        arr = np.array(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise OPEInputError(f"{name} must be an array of numbers: {exc}") from exc
    if arr.ndim != 1:
        raise OPEInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if m is not None and arr.shape[0] != m:
        raise OPEInputError(f"{name} must have shape ({m},) like round_index, got {arr.shape}")
    return arr


def _count(mask: BoolArray) -> int:
    return int(np.count_nonzero(mask))


@dataclass(frozen=True, eq=False)
class LoggedPairs:
    """Candidate pairs of a behaviour policy's log, grouped in rounds, with the outcomes of its sends.

    Attributes:
        round_index: ``(m,)`` int64 in ``[0, n_rounds)``: the round of each candidate pair. A round
            may hold any number of pairs, none included (it then contributes 0 to every estimate).
        n_rounds: ``n``, the number of rounds (logged decisions) the per-round values divide by.
        sent: ``(m,)`` the behaviour policy sent the pair.
        propensity: ``(m,)`` the behaviour's marginal probability of sending the pair: in (0, 1]
            where sent, in [0, 1] elsewhere.
        outcomes: name -> ``(m,)`` observed outcome of each sent pair; values where not sent are
            ignored (NaN allowed there) and read as 0.

    Raises:
        OPEInputError: on an empty log, a shape or dtype mismatch, a round index out of range, a
            propensity outside (0, 1] on a sent pair (outside [0, 1] elsewhere), or a NaN/inf
            propensity or outcome of a sent pair.
    """

    round_index: IntArray
    n_rounds: int
    sent: BoolArray
    propensity: FloatArray
    outcomes: Mapping[str, FloatArray]

    def __post_init__(self) -> None:
        """Check every array against the contract and freeze it (read-only copies, outcomes as a read-only mapping)."""
        raw_index = np.asarray(self.round_index)
        if raw_index.ndim == 1 and raw_index.size and not np.issubdtype(raw_index.dtype, np.integer):
            raise OPEInputError(f"round_index must hold integers, got dtype {raw_index.dtype}")
        index = _vector("round_index", raw_index, None, np.int64)
        m = index.shape[0]
        if m == 0:
            raise OPEInputError("the log is empty: it has no candidate pairs")
        n = self.n_rounds
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise OPEInputError(f"n_rounds must be an integer >= 1, got {n!r}")
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= n:
            bad = _count((index < 0) | (index >= n))
            raise OPEInputError(
                f"round_index must lie in [0, n_rounds={n}): {bad} pair(s) outside, range [{low}, {high}]"
            )

        raw_sent = np.asarray(self.sent)
        if raw_sent.dtype != np.bool_:
            if not np.issubdtype(raw_sent.dtype, np.integer) or not np.isin(raw_sent, (0, 1)).all():
                raise OPEInputError(f"sent must be booleans (or 0/1 integers), got dtype {raw_sent.dtype}")
        sent = _vector("sent", raw_sent, m, np.bool_)

        prop = _vector("propensity", self.propensity, m, np.float64)
        if (bad := _count(~np.isfinite(prop))) > 0:
            raise OPEInputError(f"propensity must be finite: {bad} pair(s) are NaN or inf")
        if (bad := _count((prop < 0) | (prop > 1))) > 0:
            raise OPEInputError(f"propensity must lie in [0, 1]: {bad} pair(s) outside")
        if (bad := _count(sent & (prop <= 0))) > 0:
            raise OPEInputError(f"propensity must lie in (0, 1] on sent pairs: {bad} sent pair(s) have propensity 0")

        if not isinstance(self.outcomes, Mapping):
            raise OPEInputError(f"outcomes must be a mapping of name -> (m,) array, got {type(self.outcomes).__name__}")
        outcomes: dict[str, FloatArray] = {}
        for name, values in self.outcomes.items():
            if not isinstance(name, str):
                raise OPEInputError(f"outcome names must be strings, got {name!r}")
            y = _vector(f"outcome {name!r}", values, m, np.float64)
            if (bad := _count(sent & ~np.isfinite(y))) > 0:
                raise OPEInputError(f"outcome {name!r} must be finite on sent pairs: {bad} sent pair(s) are NaN or inf")
            outcomes[name] = _read_only(y)

        object.__setattr__(self, "round_index", _read_only(index))  # frozen: normalised in place
        object.__setattr__(self, "n_rounds", int(n))
        object.__setattr__(self, "sent", _read_only(sent))
        object.__setattr__(self, "propensity", _read_only(prop))
        object.__setattr__(self, "outcomes", MappingProxyType(outcomes))

    @property
    def n_pairs(self) -> int:
        """``m``, the number of candidate pairs."""
        return int(self.round_index.shape[0])


def check_outcome_names(logged: LoggedPairs, names: str | Sequence[str] | None) -> tuple[str, ...]:
    """The outcome names to evaluate: all of the log's when ``names`` is None, else ``names`` checked.

    Raises:
        OPEInputError: if a name is not an outcome of the log, is repeated, or none is left.
    """
    if names is None:
        chosen = tuple(logged.outcomes)
    elif isinstance(names, str):
        chosen = (names,)  # one name, not its letters
    else:
        chosen = tuple(names)
    unknown = [name for name in chosen if name not in logged.outcomes]
    if unknown:
        raise OPEInputError(f"unknown outcome(s) {unknown}; the log has {sorted(logged.outcomes)}")
    if len(set(chosen)) != len(chosen):
        raise OPEInputError(f"outcome names are repeated: {list(chosen)}")
    if not chosen:
        raise OPEInputError("no outcome to evaluate: the log has none or none was asked for")
    return chosen


def check_target(logged: LoggedPairs, target: ArrayLike) -> FloatArray:
    """``(m,)`` the target policy's marginal send probabilities, checked against the log.

    Raises:
        OPEInputError: on a shape mismatch, NaN/inf, a value outside [0, 1], or a pair the target
            sends with positive probability where the behaviour's propensity is 0 (the target's
            value there is not identifiable from the log).
    """
    t = _vector("target", target, logged.n_pairs, np.float64)
    if (bad := _count(~np.isfinite(t))) > 0:
        raise OPEInputError(f"target must be finite: {bad} pair(s) are NaN or inf")
    if (bad := _count((t < 0) | (t > 1))) > 0:
        raise OPEInputError(f"target must lie in [0, 1]: {bad} pair(s) outside")
    if (bad := _count((t > 0) & (logged.propensity == 0))) > 0:
        raise OPEInputError(
            f"not identifiable: the target sends {bad} pair(s) with positive probability "
            "where the behaviour's propensity is 0"
        )
    return _read_only(t)


def check_predicted(logged: LoggedPairs, predicted: Mapping[str, ArrayLike] | None) -> Mapping[str, FloatArray] | None:
    """name -> ``(m,)`` an outcome model's expected outcome of each pair if sent, checked; None stays None.

    Raises:
        OPEInputError: if ``predicted`` is not a mapping, or an array has the wrong shape or a NaN/inf.
    """
    if predicted is None:
        return None
    if not isinstance(predicted, Mapping):
        raise OPEInputError(f"predicted must be a mapping of name -> (m,) array, got {type(predicted).__name__}")
    checked: dict[str, FloatArray] = {}
    for name, values in predicted.items():
        yhat = _vector(f"predicted {name!r}", values, logged.n_pairs, np.float64)
        if (bad := _count(~np.isfinite(yhat))) > 0:
            raise OPEInputError(f"predicted {name!r} must be finite: {bad} pair(s) are NaN or inf")
        checked[str(name)] = _read_only(yhat)
    return MappingProxyType(checked)


@dataclass(frozen=True, eq=False)
class OutcomePairs:
    """One outcome of a checked log, in the form the estimators compute from.

    Built by :func:`outcome_pairs`, which checks every input; the estimators trust these arrays.

    Attributes:
        round_index: ``(m,)`` the round of each pair.
        n_rounds: ``n``.
        weight: ``(m,)`` importance weight ``target / propensity`` on sent pairs, 0 elsewhere.
        reward: ``(m,)`` the observed outcome on sent pairs, 0 elsewhere.
        target: ``(m,)`` the target's marginal send probability.
        predicted: ``(m,)`` the outcome model's expected outcome if sent, or None without a model.
    """

    round_index: IntArray
    n_rounds: int
    weight: FloatArray
    reward: FloatArray
    target: FloatArray
    predicted: FloatArray | None


def outcome_pairs(
    logged: LoggedPairs,
    target: ArrayLike,
    predicted: Mapping[str, ArrayLike] | None,
    outcome: str,
    *,
    checked: bool = False,
) -> OutcomePairs:
    """Check ``target`` and ``predicted`` against ``logged`` and gather what the estimators need for ``outcome``.

    Args:
        logged: The log.
        target: ``(m,)`` the target's marginal send probabilities.
        predicted: None, or name -> ``(m,)`` expected outcomes if sent; a mapping without
            ``outcome`` gives ``predicted=None`` (the model estimators then refuse to run).
        outcome: The outcome name.
        checked: ``target`` and ``predicted`` already passed :func:`check_target` and
            :func:`check_predicted` (a caller that builds several outcomes checks them once).

    Raises:
        OPEInputError: from the checks, or if ``outcome`` is not in the log.
    """
    (name,) = check_outcome_names(logged, (outcome,))
    t = np.asarray(target, dtype=np.float64) if checked else check_target(logged, target)
    models = predicted if checked else check_predicted(logged, predicted)
    sent = logged.sent
    weight = np.zeros(logged.n_pairs)
    with np.errstate(over="ignore"):
        np.divide(t, logged.propensity, out=weight, where=sent)
    if (bad := _count(~np.isfinite(weight))) > 0:
        raise OPEInputError(f"importance weights target / propensity overflow on {bad} sent pair(s)")
    reward = np.where(sent, logged.outcomes[name], 0.0)  # NaN where not sent must not reach a product
    yhat = None if models is None or name not in models else np.asarray(models[name], dtype=np.float64)
    return OutcomePairs(
        round_index=logged.round_index,
        n_rounds=logged.n_rounds,
        weight=_read_only(weight),
        reward=_read_only(reward),
        target=t,
        predicted=yhat,
    )
