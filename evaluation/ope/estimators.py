r"""Off-policy estimators of a target policy's value from a behaviour policy's log of candidate pairs.

The value of an outcome is the target's expected total of that outcome per round (e.g. the mean
reward per logged decision). With ``n`` rounds, the target's marginal send probability
:math:`\pi_e`, the behaviour's :math:`p_e`, the importance weight :math:`w_e = \pi_e / p_e` on a
sent pair, the observed outcome :math:`y_e` and a model's expected outcome if sent
:math:`\hat y_e`:

* ``ips``: :math:`\frac1n \sum_e s_e w_e y_e`
* ``snips``: :math:`\frac{\sum_e s_e w_e y_e}{\sum_e s_e w_e} \cdot \frac1n \sum_e \pi_e`, the
  self-normalised IPS scaled by the target's expected number of sends per round, so that it
  estimates a per-round total like IPS; in a single-slot log :math:`\sum_e \pi_e = n` and this is
  the usual SNIPS. Where no sent pair carries weight it is 0, like IPS.
* ``dm``: :math:`\frac1n \sum_e \pi_e \hat y_e`
* ``dr``: DM :math:`+ \frac1n \sum_e s_e w_e (y_e - \hat y_e)`
* ``switch_dr`` (Wang, Agarwal and Dudík, 2017): the DR correction only where :math:`w_e \le \tau`;
  a pair with :math:`w_e > \tau` keeps the DM term alone.
* ``dros`` (Su, Dimakopoulou, Krishnamurthy and Dudík, 2020, DR with optimistic shrinkage): DR with
  :math:`w_e` replaced by :math:`\lambda w_e / (w_e^2 + \lambda)` in the correction.

Rounds with several sends: this is the independent per-pair (marginal) IPS family. Each pair is
weighted by its own marginal propensity, which is unbiased when a round's outcome is the sum of
its sent pairs' outcomes and a pair's outcome does not depend on which other pairs were sent; it
is not the slate (pseudo-inverse) estimator, which needs no such independence. For a single-slot
log (one send per round) every estimator is exactly its standard form.

Each estimator reduces the log to a few per-round sums, ``(k, n)`` (:meth:`Estimator.round_statistics`),
and an estimate to a function of their totals under per-round weights (:meth:`Estimator.combine`).
A bootstrap resample is a vector of multinomial counts of rounds, so a ``(B, n)`` matrix of counts
gives ``B`` estimates with one matrix product.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from banditlp.arrays import FloatArray, weighted_bincount
from evaluation.errors import OPEInputError
from evaluation.ope.data import LoggedPairs, OutcomePairs, check_outcome_names, outcome_pairs


def check_round_weights(round_weight: ArrayLike | None, n_rounds: int) -> FloatArray:
    """``(B, n)`` per-round weights from ``None`` (ones), an ``(n,)`` vector or a ``(B, n)`` matrix.

    Raises:
        OPEInputError: on a wrong shape, a NaN/inf or negative weight, or a row of zero total weight.
    """
    if round_weight is None:
        return np.ones((1, n_rounds))
    c = np.asarray(round_weight, dtype=np.float64)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[1] != n_rounds:
        raise OPEInputError(f"round_weight must have shape ({n_rounds},) or (B, {n_rounds}), got {c.shape}")
    if not np.isfinite(c).all() or (c < 0).any():
        raise OPEInputError("round_weight must be finite and >= 0")
    if (c.sum(axis=1) <= 0).any():
        raise OPEInputError("round_weight must have a positive total")
    return c


class Estimator(ABC):
    """An off-policy estimator: per-round sums of the log, then a function of their weighted totals.

    Subclasses are frozen dataclasses whose fields are the estimator's parameters.
    """

    #: Registry name.
    name: ClassVar[str]
    #: Needs an outcome model's ``predicted`` values.
    needs_predicted: ClassVar[bool] = False

    @abstractmethod
    def round_statistics(self, pairs: OutcomePairs) -> FloatArray:
        """``(k, n)`` per-round sums whose weighted totals :meth:`combine` turns into the estimate."""

    def combine(self, totals: FloatArray, total_weight: FloatArray) -> FloatArray:
        """``(B,)`` estimates from ``(k, B)`` weighted totals of the statistics and ``(B,)`` total round weights.

        The default is the weighted mean per round of the one statistic.
        """
        return totals[0] / total_weight

    def estimate(
        self,
        logged: LoggedPairs,
        target: ArrayLike,
        predicted: Mapping[str, ArrayLike] | None = None,
        *,
        outcome: str,
        round_weight: ArrayLike | None = None,
    ) -> float:
        """The estimate of the target's value of ``outcome`` per round.

        Args:
            logged: The behaviour's log.
            target: ``(m,)`` the target's marginal send probability of each pair, in [0, 1].
            predicted: name -> ``(m,)`` a model's expected outcome of each pair if sent; needed by
                the model estimators (DM, DR, Switch-DR, DRos).
            outcome: Which outcome of the log.
            round_weight: ``(n,)`` weight of each round (default ones): a round of weight 2 counts
                as two copies of it, which is how a bootstrap resample is evaluated.

        Raises:
            OPEInputError: on invalid inputs, or a model estimator without a model of ``outcome``.
        """
        pairs = outcome_pairs(logged, target, predicted, outcome)
        weights = check_round_weights(round_weight, logged.n_rounds)
        if weights.shape[0] != 1:
            raise OPEInputError(f"round_weight must have shape ({logged.n_rounds},), got {weights.shape}")
        return float(self.estimate_weighted(pairs, weights)[0])

    def estimate_weighted(self, pairs: OutcomePairs, round_weights: FloatArray) -> FloatArray:
        """``(B,)`` estimates under each row of ``(B, n)`` round weights (checked by :func:`check_round_weights`)."""
        stats = self.round_statistics(pairs)
        return self.combine(stats @ round_weights.T, round_weights.sum(axis=1))

    def _predicted(self, pairs: OutcomePairs) -> FloatArray:
        if pairs.predicted is None:
            raise OPEInputError(f"estimator {self.name!r} needs an outcome model: predicted has none for this outcome")
        return pairs.predicted


def _per_round(pairs: OutcomePairs, *terms: FloatArray) -> FloatArray:
    """``(len(terms), n)`` the sum of each ``(m,)`` pair term per round."""
    return np.stack([weighted_bincount(pairs.round_index, term, pairs.n_rounds) for term in terms])


def _check_threshold(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise OPEInputError(f"{name} must be a number >= 0 (inf allowed), got {value!r}")


@dataclass(frozen=True)
class IPS(Estimator):
    """Inverse propensity scoring, unbiased wherever the behaviour covers the target."""

    name: ClassVar[str] = "ips"

    def round_statistics(self, pairs: OutcomePairs) -> FloatArray:
        """``(1, n)`` per round: ``sum_e w_e y_e`` over its sent pairs."""
        return _per_round(pairs, pairs.weight * pairs.reward)


@dataclass(frozen=True)
class SNIPS(Estimator):
    """Self-normalised IPS, scaled by the target's expected sends per round (module docstring)."""

    name: ClassVar[str] = "snips"

    def round_statistics(self, pairs: OutcomePairs) -> FloatArray:
        """``(3, n)`` per round: ``sum w y``, ``sum w`` over sent pairs, and ``sum target`` over all pairs."""
        return _per_round(pairs, pairs.weight * pairs.reward, pairs.weight, pairs.target)

    def combine(self, totals: FloatArray, total_weight: FloatArray) -> FloatArray:
        """``(B,)`` ``(sum w y / sum w) * (sum target / total weight)``; 0 where ``sum w`` is 0 (so is ``sum w y``)."""
        weighted_reward, weight, sends = totals
        ratio = np.divide(weighted_reward, weight, out=np.zeros_like(weight), where=weight > 0)
        return ratio * sends / total_weight


@dataclass(frozen=True)
class DM(Estimator):
    """Direct method: the outcome model's value under the target; biased where the model is."""

    name: ClassVar[str] = "dm"
    needs_predicted: ClassVar[bool] = True

    def round_statistics(self, pairs: OutcomePairs) -> FloatArray:
        """``(1, n)`` per round: ``sum_e target_e yhat_e`` over all its pairs."""
        return _per_round(pairs, pairs.target * self._predicted(pairs))


@dataclass(frozen=True)
class DR(Estimator):
    """Doubly robust: DM plus IPS of the model's residual; unbiased like IPS, less variable with a good model."""

    name: ClassVar[str] = "dr"
    needs_predicted: ClassVar[bool] = True

    def round_statistics(self, pairs: OutcomePairs) -> FloatArray:
        """``(1, n)`` per round: ``sum_e target_e yhat_e + w_e (y_e - yhat_e)``."""
        yhat = self._predicted(pairs)
        return _per_round(pairs, pairs.target * yhat + pairs.weight * (pairs.reward - yhat))


@dataclass(frozen=True)
class SwitchDR(Estimator):
    """Switch-DR: the DR correction only on pairs with ``w_e <= tau``, the model alone above.

    ``tau = inf`` is DR and ``tau = 0`` is DM. The default 10 trusts IPS up to a tenfold
    over-weighting of a pair, the scale at which :class:`DRos`'s default starts to shrink.

    Attributes:
        tau: The weight threshold, >= 0 (inf allowed).
    """

    name: ClassVar[str] = "switch_dr"
    needs_predicted: ClassVar[bool] = True
    tau: float = 10.0

    def __post_init__(self) -> None:
        """Reject a threshold that is NaN or negative."""
        _check_threshold("tau", self.tau)

    def round_statistics(self, pairs: OutcomePairs) -> FloatArray:
        """``(1, n)`` per round: ``sum_e target_e yhat_e + [w_e <= tau] w_e (y_e - yhat_e)``."""
        yhat = self._predicted(pairs)
        w = np.where(pairs.weight <= self.tau, pairs.weight, 0.0)
        return _per_round(pairs, pairs.target * yhat + w * (pairs.reward - yhat))


@dataclass(frozen=True)
class DRos(Estimator):
    """DR with optimistic shrinkage: ``w`` becomes ``lam w / (w^2 + lam)`` in the correction.

    ``lam = inf`` is DR and ``lam = 0`` is DM. The shrunk weight is near ``w`` for ``w`` well
    below ``sqrt(lam)`` and falls as ``lam / w`` above; the default 100 shrinks from ``w`` of about
    10 on, the scale of :class:`SwitchDR`'s default.

    Attributes:
        lam: The shrinkage, >= 0 (inf allowed).
    """

    name: ClassVar[str] = "dros"
    needs_predicted: ClassVar[bool] = True
    lam: float = 100.0

    def __post_init__(self) -> None:
        """Reject a shrinkage that is NaN or negative."""
        _check_threshold("lam", self.lam)

    def shrunk_weight(self, weight: FloatArray) -> FloatArray:
        """``(m,)`` ``lam w / (w^2 + lam)``; ``w`` at ``lam = inf``, 0 where ``w = 0`` (also at ``lam = 0``)."""
        if math.isinf(self.lam):
            return weight
        denominator = weight * weight + self.lam
        return np.divide(self.lam * weight, denominator, out=np.zeros_like(weight), where=denominator > 0)

    def round_statistics(self, pairs: OutcomePairs) -> FloatArray:
        """``(1, n)`` per round: ``sum_e target_e yhat_e + shrunk(w_e) (y_e - yhat_e)``."""
        yhat = self._predicted(pairs)
        return _per_round(pairs, pairs.target * yhat + self.shrunk_weight(pairs.weight) * (pairs.reward - yhat))


#: The estimators by registry name.
ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (IPS, SNIPS, DM, DR, SwitchDR, DRos)}


def logged_value(logged: LoggedPairs, outcome: str) -> float:
    """The behaviour policy's observed value: the mean per round of ``outcome`` over its sent pairs.

    Raises:
        OPEInputError: if ``outcome`` is not in the log.
    """
    (name,) = check_outcome_names(logged, (outcome,))
    return float(np.sum(logged.outcomes[name], where=logged.sent)) / logged.n_rounds
