"""A simulated email-marketing world after the experiments of "BanditLP: Large-Scale Stochastic
Optimization for Personalized Recommendations" (arXiv 2601.15552).

Every send batch, each user may receive ``sends_per_user`` marketing units (items) out of a
random candidate list. Each item belongs to a provider and has a value per conversion. The world
knows the TRUE probabilities of conversion and of unsubscription of every (user, item) pair; a
policy only sees :meth:`EmailWorld.pair_features` and the outcomes it draws. Three stakeholders
constrain a batch, as in the paper:

* platform: a budget on expected unsubscriptions (set as a fraction of what the greedy
  allocation would spend, so it binds);
* providers: a minimum (and optionally a maximum) expected exposure per provider (set as a
  fraction of the fair share, so it binds for providers whose items convert poorly);
* users: at most ``sends_per_user`` items per batch.

The oracle solves the batch's LP with the true expected rewards and costs; its objective is the
benchmark of regret (:func:`evaluation.email_batch.solve_allocation_lp`, exactly with the
allocator's HiGHS solver). A batch, its constraints and an allocation's result are the values of
:mod:`evaluation.email_batch`.

Randomness: the world's fixed parameters come from ``SeedSequence(seed, spawn_key=(0,))``; the
candidates of batch ``b`` from ``SeedSequence(seed, spawn_key=(1, b))``, so a batch is the same
whichever batches were generated before it. Outcomes use the caller's generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import scipy.optimize
from numpy.typing import ArrayLike
from scipy.special import expit

from banditlp.arrays import BoolArray, Float32Array, FloatArray, IntArray
from evaluation.email_batch import (
    BatchConstraints,
    CandidateBatch,
    OracleResult,
    allocation_result,
    greedy_allocation,
    read_only,
    solve_allocation_lp,
)
from evaluation.errors import EvaluationInputError
from evaluation.run_summary import BatchOutcome

_S = TypeVar("_S", bound=np.generic)

# Width of the hidden layer of the true models (a small random 2-layer net). Wide enough that the
# truth is clearly nonlinear in the observed features, small enough to evaluate per pair cheaply.
_HIDDEN = 16
# The base rates are matched on all (user, item) pairs, or on this many random ones when larger.
_CALIBRATION_PAIRS = 200_000
# The unsubscription budget is never set below this multiple of the least budget that still lets
# the provider minimums be met, so every batch's LP is feasible by construction.
_FEASIBILITY_MARGIN = 1.05
# Slope of the unsubscription logit in the conversion logit (see EmailWorld._logits).
_UNSUB_COUPLING = 0.4
# Realised value of a conversion = item value × Gamma(shape, 1/shape): mean 1, CV 1/sqrt(shape).
_VALUE_NOISE_SHAPE = 4.0


@dataclass(frozen=True, kw_only=True)
class EmailWorldConfig:
    """Sizes, constraint tightness and seed of an :class:`EmailWorld`.

    Attributes:
        n_users: Users; every user is in every batch (ids ``0 .. n_users - 1``).
        n_items: Items (marketing units), ids ``0 .. n_items - 1``.
        n_providers: Providers; every provider owns at least one item.
        user_dim: Width of a user's feature vector.
        item_dim: Width of an item's feature vector (also the width of the cross term).
        candidates_per_user: Distinct random candidate items per user per batch.
        unsub_budget_fraction: Budget on expected unsubscriptions per batch, as a fraction of
            what the greedy-by-reward allocation spends (< 1 makes the budget bind).
        provider_min_fraction: Minimum expected exposure per provider, as a fraction of the fair
            share ``sum(user_cap) / n_providers`` (clipped to what the provider can receive).
        provider_max_fraction: Maximum exposure per provider as a fraction of the fair share;
            ``inf`` for none.
        sends_per_user: Most items one user may receive per batch.
        conversion_rate: Mean true conversion probability over all (user, item) pairs.
        unsub_rate: Mean true unsubscription probability over all (user, item) pairs.
        seed: Seed of everything the world draws (non-negative).
    """

    n_users: int = 300
    n_items: int = 40
    n_providers: int = 8
    user_dim: int = 6
    item_dim: int = 4
    candidates_per_user: int = 10
    unsub_budget_fraction: float = 0.7
    provider_min_fraction: float = 0.6
    provider_max_fraction: float = math.inf
    sends_per_user: int = 1
    conversion_rate: float = 0.05
    unsub_rate: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        """Reject sizes and fractions that cannot describe a world.

        Raises:
            EvaluationInputError: naming the first offending field.
        """
        checks: tuple[tuple[bool, str], ...] = (
            (self.n_users >= 1, f"n_users must be >= 1, got {self.n_users}"),
            (self.n_items >= 1, f"n_items must be >= 1, got {self.n_items}"),
            (
                1 <= self.n_providers <= self.n_items,
                f"n_providers must be in [1, n_items={self.n_items}], got {self.n_providers}",
            ),
            (self.user_dim >= 1, f"user_dim must be >= 1, got {self.user_dim}"),
            (self.item_dim >= 1, f"item_dim must be >= 1, got {self.item_dim}"),
            (
                1 <= self.candidates_per_user <= self.n_items,
                f"candidates_per_user must be in [1, n_items={self.n_items}], got {self.candidates_per_user}",
            ),
            (
                1 <= self.sends_per_user <= self.candidates_per_user,
                f"sends_per_user must be in [1, candidates_per_user={self.candidates_per_user}], "
                f"got {self.sends_per_user}",
            ),
            (
                0.0 < self.unsub_budget_fraction < math.inf,
                f"unsub_budget_fraction must be positive and finite, got {self.unsub_budget_fraction}",
            ),
            (
                0.0 <= self.provider_min_fraction <= 1.0,
                f"provider_min_fraction must be in [0, 1], got {self.provider_min_fraction}",
            ),
            (
                self.provider_max_fraction >= max(self.provider_min_fraction, 1e-12),
                f"provider_max_fraction must be >= provider_min_fraction and > 0, got {self.provider_max_fraction}",
            ),
            (
                0.0 < self.conversion_rate < 1.0,
                f"conversion_rate must be in (0, 1), got {self.conversion_rate}",
            ),
            (0.0 < self.unsub_rate < 1.0, f"unsub_rate must be in (0, 1), got {self.unsub_rate}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
        )
        for ok, message in checks:
            if not ok:
                raise EvaluationInputError(message)


class EmailWorld:
    """The simulated world: users, items, providers, true outcome models and batch constraints.

    Attributes:
        config: The configuration it was built from.
        user_features: ``(n_users, user_dim)`` float64, read-only.
        item_features: ``(n_items, item_dim)`` float64, read-only (also what the ``item_features``
            field of a candidates record carries, as float32).
        item_provider: ``(n_items,)`` int64 provider of each item, read-only.
        item_value: ``(n_items,)`` float64 expected value of one conversion of each item
            (log-normal: positive, heavy-ish right tail), read-only.
    """

    def __init__(self, config: EmailWorldConfig | None = None) -> None:
        """Draw the world's fixed parameters from ``config.seed``.

        Args:
            config: Sizes and constraint tightness; the default configuration when None.
        """
        c = config if config is not None else EmailWorldConfig()
        self.config = c
        rng = np.random.default_rng(np.random.SeedSequence(c.seed, spawn_key=(0,)))

        self.user_features = read_only(rng.standard_normal((c.n_users, c.user_dim)))
        self.item_features = read_only(rng.standard_normal((c.n_items, c.item_dim)))
        # Every provider owns one item; the others go to providers with Dirichlet weights, so
        # providers differ in size (and in how easily a minimum exposure is met).
        weights = rng.dirichlet(np.full(c.n_providers, 2.0))
        rest = rng.choice(c.n_providers, size=c.n_items - c.n_providers, p=weights)
        self.item_provider = read_only(
            rng.permutation(np.concatenate([np.arange(c.n_providers), rest])).astype(np.int64)
        )
        # Value per conversion: log-normal around 20 with sigma 0.8 (a few items are worth
        # several times the median, as with premium products in email marketing).
        self.item_value = read_only(rng.lognormal(np.log(20.0), 0.8, size=c.n_items))

        # Observed cross term: elementwise product of a user and an item projection, both of
        # width item_dim. It is a hint of the interactions, not the true interaction.
        self._cross_user = self.user_features @ (rng.standard_normal((c.user_dim, c.item_dim)) / np.sqrt(c.user_dim))
        self._cross_item = self.item_features @ (rng.standard_normal((c.item_dim, c.item_dim)) / np.sqrt(c.item_dim))

        # True models: logit = offset + item bias + user effect + 2-layer net + bilinear term.
        # The hidden layer is shared by both outcomes (one "intent" representation).
        w1_user = rng.standard_normal((c.user_dim, _HIDDEN)) * 1.5 / np.sqrt(c.user_dim)
        w1_item = rng.standard_normal((c.item_dim, _HIDDEN)) * 1.5 / np.sqrt(c.item_dim)
        b1 = rng.standard_normal(_HIDDEN) * 0.5
        self._hidden_user = self.user_features @ w1_user
        self._hidden_item = self.item_features @ w1_item + b1
        self._w2_conv = rng.standard_normal(_HIDDEN) / np.sqrt(_HIDDEN)
        self._w2_unsub = rng.standard_normal(_HIDDEN) * 0.6 / np.sqrt(_HIDDEN)
        # u' B v with standard-normal u, v has variance sum(B**2): these scales give std 0.5 / 0.3.
        bil_scale = 1.0 / np.sqrt(c.user_dim * c.item_dim)
        self._bil_conv_user = self.user_features @ (rng.standard_normal((c.user_dim, c.item_dim)) * 0.5 * bil_scale)
        self._bil_unsub_user = self.user_features @ (rng.standard_normal((c.user_dim, c.item_dim)) * 0.3 * bil_scale)
        # The trade-off the budget prices: item trait 0 ("aggressiveness": urgency, discounts)
        # raises conversion AND unsubscription; user trait 0 ("fatigue") raises unsubscription.
        # Provider quality shifts conversion only, so weak providers need their minimum exposure.
        aggressiveness = self.item_features[:, 0]
        provider_quality = rng.normal(0.0, 0.7, size=c.n_providers)
        self._item_bias_conv = (
            0.6 * aggressiveness + provider_quality[self.item_provider] + 0.3 * rng.standard_normal(c.n_items)
        )
        self._item_bias_unsub = 0.5 * aggressiveness + 0.2 * rng.standard_normal(c.n_items)
        self._user_bias_unsub = 0.3 * self.user_features[:, 0]

        # Global offsets chosen so the mean probability over pairs is the configured base rate.
        n_all = c.n_users * c.n_items
        if n_all <= _CALIBRATION_PAIRS:
            ref_user, ref_item = np.divmod(np.arange(n_all, dtype=np.int64), c.n_items)
        else:
            ref_user = rng.integers(0, c.n_users, size=_CALIBRATION_PAIRS)
            ref_item = rng.integers(0, c.n_items, size=_CALIBRATION_PAIRS)
        conv_logit, unsub_logit = self._logits(ref_user, ref_item)
        self._offset_conv = _offset_for_mean(conv_logit, c.conversion_rate)
        self._offset_unsub = _offset_for_mean(unsub_logit, c.unsub_rate)

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`pair_features`: ``user_dim + 2 * item_dim``."""
        return self.config.user_dim + 2 * self.config.item_dim

    def pair_features(self, user_ids: ArrayLike, item_ids: ArrayLike) -> Float32Array:
        """The features a model sees for each pair (what a candidates record carries).

        Args:
            user_ids: ``(n,)`` int user ids.
            item_ids: ``(n,)`` int item ids.

        Returns:
            ``(n, user_dim + 2 * item_dim)`` float32: ``[user features, item features,
            (user projection) * (item projection)]``.

        Raises:
            EvaluationInputError: on shape mismatch or ids out of range.
        """
        u, i = self._check_pairs(user_ids, item_ids)
        cross = self._cross_user[u] * self._cross_item[i]
        return np.concatenate([self.user_features[u], self.item_features[i], cross], axis=1).astype(np.float32)

    def candidates(self, batch_index: int) -> CandidateBatch:
        """Every user's candidate items for one batch, deterministic in ``(seed, batch_index)``.

        Args:
            batch_index: Non-negative batch number.

        Returns:
            The batch; each user has ``candidates_per_user`` distinct items, uniformly drawn.

        Raises:
            EvaluationInputError: if ``batch_index`` is negative.
        """
        if batch_index < 0:
            raise EvaluationInputError(f"batch_index must be >= 0, got {batch_index}")
        c = self.config
        rng = np.random.default_rng(np.random.SeedSequence(c.seed, spawn_key=(1, batch_index)))
        k = c.candidates_per_user
        # The k smallest of i.i.d. uniform keys are a uniform k-subset of the items, without a
        # per-user loop; sorting them makes the record order independent of the partition.
        keys = rng.random((c.n_users, c.n_items))
        if k < c.n_items:
            chosen = np.argpartition(keys, k - 1, axis=1)[:, :k]
        else:
            chosen = np.broadcast_to(np.arange(c.n_items), (c.n_users, c.n_items))
        pair_item = np.sort(chosen, axis=1).reshape(-1).astype(np.int64)
        user_ids = np.arange(c.n_users, dtype=np.int64)
        pair_user = np.repeat(user_ids, k)
        return CandidateBatch(
            batch_id=f"email-s{c.seed}-b{batch_index:06d}",
            batch_index=batch_index,
            user_ids=read_only(user_ids),
            pair_user=read_only(pair_user),
            pair_item=read_only(pair_item),
            pair_provider=read_only(self.item_provider[pair_item]),
            features=read_only(self.pair_features(pair_user, pair_item)),
        )

    def true_probabilities(
        self, pair_user: ArrayLike, pair_item: ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """True outcome model of each pair.

        Args:
            pair_user: ``(E,)`` int user ids.
            pair_item: ``(E,)`` int item ids.

        Returns:
            ``(p_conversion, p_unsub, value)``, each ``(E,)`` float64; the expected reward of a
            send is ``p_conversion * value``.

        Raises:
            EvaluationInputError: on shape mismatch or ids out of range.
        """
        u, i = self._check_pairs(pair_user, pair_item)
        conv_logit, unsub_logit = self._logits(u, i)
        return (
            expit(conv_logit + self._offset_conv),
            expit(unsub_logit + self._offset_unsub),
            self.item_value[i].copy(),
        )

    def expected_reward_and_cost(self, batch: CandidateBatch) -> tuple[FloatArray, FloatArray]:
        """True LP coefficients of a batch.

        Args:
            batch: The batch.

        Returns:
            ``(reward (E,), cost (E, 1))``: expected value and expected unsubscriptions of a send.
        """
        p_conv, p_unsub, value = self.true_probabilities(batch.pair_user, batch.pair_item)
        return p_conv * value, p_unsub[:, None]

    def constraints(self, batch: CandidateBatch) -> BatchConstraints:
        """The batch's constraints, tight enough to bind and loose enough to be feasible.

        * user caps: ``sends_per_user`` each;
        * provider minimum: ``provider_min_fraction`` × fair share, but never more than the
          provider can receive (sum over users of min(cap, candidates of that provider));
        * provider maximum: ``provider_max_fraction`` × fair share (``inf`` by default);
        * unsubscription budget: ``unsub_budget_fraction`` × the greedy allocation's expected
          unsubscriptions, raised to 1.05 × the least budget that meets the provider minimums
          (found by an LP) when that is larger, so the oracle LP is always feasible.

        Args:
            batch: The batch.

        Returns:
            The constraints, with ``budget`` of shape ``(1,)``.

        Raises:
            OracleInfeasible: if the provider minimums cannot be met under the user caps.
        """
        c = self.config
        user_cap = np.full(c.n_users, c.sends_per_user, dtype=np.int64)
        fair_share = user_cap.sum() / c.n_providers
        # What each provider can receive at most: per user, min(cap, its candidates from p).
        per_user_provider = np.bincount(
            batch.pair_user * c.n_providers + batch.pair_provider,
            minlength=c.n_users * c.n_providers,
        ).reshape(c.n_users, c.n_providers)
        available = np.minimum(per_user_provider, user_cap[:, None]).sum(axis=0)
        provider_min = np.minimum(c.provider_min_fraction * fair_share, available).astype(float)
        provider_max = np.maximum(c.provider_max_fraction * fair_share, provider_min)

        reward, cost = self.expected_reward_and_cost(batch)
        greedy_spend = float(cost[:, 0] @ greedy_allocation(reward, batch.pair_user, user_cap))
        # Least expected unsubscriptions that still meets the provider rows: maximise -cost.
        no_budget = BatchConstraints(
            budget=np.array([np.inf]),
            provider_min=provider_min,
            provider_max=provider_max,
            user_cap=user_cap,
        )
        least = -solve_allocation_lp(-cost[:, 0], cost, batch.pair_user, batch.pair_provider, no_budget).objective
        budget = max(c.unsub_budget_fraction * greedy_spend, _FEASIBILITY_MARGIN * least)
        return BatchConstraints(
            budget=read_only(np.array([budget])),
            provider_min=read_only(provider_min),
            provider_max=read_only(provider_max),
            user_cap=read_only(user_cap),
        )

    def oracle(self, batch: CandidateBatch, constraints: BatchConstraints | None = None) -> OracleResult:
        """The batch's LP solved with the true expected rewards and costs.

        Args:
            batch: The batch.
            constraints: Right-hand sides; :meth:`constraints` of the batch when None.

        Returns:
            The optimal fractional allocation and its objective (the regret benchmark).

        Raises:
            OracleInfeasible: if the LP has no feasible point.
        """
        cons = constraints if constraints is not None else self.constraints(batch)
        reward, cost = self.expected_reward_and_cost(batch)
        return solve_allocation_lp(reward, cost, batch.pair_user, batch.pair_provider, cons)

    def greedy(self, batch: CandidateBatch) -> OracleResult:
        """Each user's ``sends_per_user`` best items by true expected reward, ignoring budget and
        provider constraints: the reference that the budget is set against.

        Args:
            batch: The batch.

        Returns:
            A 0/1 allocation with its objective, expected unsubscriptions and exposures.
        """
        reward, cost = self.expected_reward_and_cost(batch)
        cap = np.full(self.config.n_users, self.config.sends_per_user, dtype=np.int64)
        x = greedy_allocation(reward, batch.pair_user, cap)
        return allocation_result(x, reward, cost, batch.pair_provider, self.config.n_providers)

    def draw_outcomes(
        self, pair_user: ArrayLike, pair_item: ArrayLike, rng: np.random.Generator
    ) -> tuple[BoolArray, BoolArray, FloatArray]:
        """Sample the outcomes of sending each pair once, from the true model.

        Conversion and unsubscription are independent given the pair. A conversion's value is
        the item's value times Gamma noise of mean 1, so ``E[value] = p_conversion * item_value``.

        Args:
            pair_user: ``(n,)`` int user ids.
            pair_item: ``(n,)`` int item ids.
            rng: The generator to draw from (the caller seeds it).

        Returns:
            ``(converted (n,) bool, unsubscribed (n,) bool, value (n,) float64)``; value is 0
            where not converted.
        """
        p_conv, p_unsub, value = self.true_probabilities(pair_user, pair_item)
        n = p_conv.shape[0]
        converted = rng.random(n) < p_conv
        unsubscribed = rng.random(n) < p_unsub
        noise = rng.gamma(_VALUE_NOISE_SHAPE, 1.0 / _VALUE_NOISE_SHAPE, size=n)
        return converted, unsubscribed, np.where(converted, value * noise, 0.0)

    def batch_outcome(
        self,
        batch: CandidateBatch,
        x: ArrayLike,
        rng: np.random.Generator,
        *,
        constraints: BatchConstraints | None = None,
        oracle_objective: float | None = None,
        mean_entropy: float = math.nan,
        mean_posterior_std: float = math.nan,
        x_planned: FloatArray | None = None,
    ) -> BatchOutcome:
        """Evaluate a policy's decisions on a batch: true expectations, drawn outcomes, oracle.

        Args:
            batch: The batch decided on.
            x: ``(E,)`` decisions in [0, 1] aligned with the batch's pairs (1 = sent).
            rng: Generator for the outcomes of the sent pairs (those with ``x > 0``).
            constraints: The batch's constraints; :meth:`constraints` when None.
            oracle_objective: The oracle's objective if already known; solved when None.
            mean_entropy: The policy's mean per-user selection entropy (nan if unknown).
            mean_posterior_std: The policy's mean posterior std of its scores (nan if unknown).
            x_planned: ``(E,)`` the fractional allocation ``x`` was rounded from, if any (the
                constraint usage is then measured on it, see :class:`BatchOutcome`).

        Returns:
            The per-batch record :func:`evaluation.run_summary.summarise` takes.

        Raises:
            EvaluationInputError: if ``x`` is not ``(E,)`` in [0, 1].
        """
        x = np.asarray(x, dtype=float)
        if x.shape != (batch.n_pairs,):
            raise EvaluationInputError(f"x must have shape ({batch.n_pairs},), got {x.shape}")
        cons = constraints if constraints is not None else self.constraints(batch)
        if oracle_objective is None:
            oracle_objective = self.oracle(batch, cons).objective
        p_conv, p_unsub, value = self.true_probabilities(batch.pair_user, batch.pair_item)
        sent = x > 0
        converted, unsubscribed, realised = self.draw_outcomes(batch.pair_user[sent], batch.pair_item[sent], rng)
        realised_value = np.zeros(batch.n_pairs)
        realised_value[sent] = realised
        realised_unsub = np.zeros(batch.n_pairs)
        realised_unsub[sent] = unsubscribed
        return BatchOutcome(
            batch_id=batch.batch_id,
            x=x,
            pair_item=batch.pair_item,
            pair_provider=batch.pair_provider,
            expected_reward=p_conv * value,
            expected_unsub=p_unsub,
            realised_value=realised_value,
            realised_unsub=realised_unsub,
            oracle_objective=float(oracle_objective),
            unsub_budget=float(cons.budget[0]),
            provider_min=cons.provider_min,
            provider_max=cons.provider_max,
            mean_entropy=mean_entropy,
            mean_posterior_std=mean_posterior_std,
            x_planned=x_planned,
        )

    def _check_pairs(self, user_ids: ArrayLike, item_ids: ArrayLike) -> tuple[IntArray, IntArray]:
        u = np.asarray(user_ids)
        i = np.asarray(item_ids)
        if u.ndim != 1 or u.shape != i.shape:
            raise EvaluationInputError(f"user and item ids must be 1-D of equal length, got {u.shape} and {i.shape}")
        if not (np.issubdtype(u.dtype, np.integer) or u.size == 0) or not (
            np.issubdtype(i.dtype, np.integer) or i.size == 0
        ):
            raise EvaluationInputError("user and item ids must be integers")
        u = u.astype(np.int64, copy=False)
        i = i.astype(np.int64, copy=False)
        if u.size and (u.min() < 0 or u.max() >= self.config.n_users):
            raise EvaluationInputError(f"user ids must be in [0, {self.config.n_users})")
        if i.size and (i.min() < 0 or i.max() >= self.config.n_items):
            raise EvaluationInputError(f"item ids must be in [0, {self.config.n_items})")
        return u, i

    def _logits(self, u: IntArray, i: IntArray) -> tuple[FloatArray, FloatArray]:
        # (E, H) hidden activations; memory is E * 16 floats, fine for a simulator batch.
        hidden = np.tanh(self._hidden_user[u] + self._hidden_item[i])
        items = self.item_features[i]
        conv = self._item_bias_conv[i] + hidden @ self._w2_conv + np.einsum("ed,ed->e", self._bil_conv_user[u], items)
        # Coupling: what makes a user convert also makes them unsubscribe more (pressure
        # marketing), so the unsubscription budget always trades off against reward.
        unsub = (
            _UNSUB_COUPLING * conv
            + self._item_bias_unsub[i]
            + self._user_bias_unsub[u]
            + hidden @ self._w2_unsub
            + np.einsum("ed,ed->e", self._bil_unsub_user[u], items)
        )
        return conv, unsub


def _offset_for_mean(logits: FloatArray, target: float) -> float:
    # mean(sigmoid(a + logits)) increases strictly in a: one root, bracketed generously.
    return float(scipy.optimize.brentq(lambda a: float(expit(a + logits).mean()) - target, -30.0, 30.0))
