"""``banditlp_tuned``: BanditLP whose Thompson temperature τ is set online by models/tuner.

The same model, calibration and LP as ``banditlp`` (:class:`NeuralMethod` with ``banditlp``'s
configuration learns; one LP over the whole batch decides). Only τ differs, and per user: each user
is served one arm of the tuner's current distribution over τ, chosen by the deterministic hash of
:mod:`models.tuner.assignment` (``BLAKE2b(experiment, salt, user_id)`` located in the distribution's
layout, the salt drawn from the experiment seed), and its pairs are scored at its arm's τ, one pass of
the model per distinct τ, as the streamed scorer does (``streams.score.batch._score_by_tau``).

The objective's reward coefficient is ``conversion × value`` with no weight between them
(``neural_model.score_neural``), so τ is the only knob; there is no value weight to tune.

After each batch's feedback every arm's sends are counted (:func:`arm_metrics`) and kept per arm
and batch. Every ``period`` batches after ``warmup_batches`` the counts are grouped by τ into bins
of width ``tau_bin`` and each bin's counts, oldest first, are pooled into consecutive chunks of at
least ``chunk_users`` users; each chunk is one observation at its users' mean τ with three metrics
(:func:`observations`). Chunks of about equal size have about equal noise, which the GPs assume (one
noise level per metric, learned): one observation per arm with all its counts would give an arm
served to 6 users the weight of one served to 3,000, and the noisiest arms would set the fitted
noise. Settings with more traffic give more chunks, so they weigh more, as their data should. The
bins pool the neighbouring candidates Thompson sampling spreads its mass over (arms of 60 users a
batch that change from one batch to the next would rarely fill a chunk alone). The metrics of a
chunk:

* primary, **reward per user**: realised value of the arm's sends over its users (the users are
  what the hash splits, so this is the arm's A/B metric; reward per send would favour an arm that
  sends less);
* guardrail, **unsubscription usage** ``≤ max_unsub_usage`` (1): realised unsubscriptions of the
  arm's sends over its share of the budget, ``B × users_a / users``. Summed over the arms with
  weights ``users_a / users`` it is the batch's realised usage, whose expectation is the experiment's
  ``unsub_usage_sent``, so "usage ≤ 1" is the batch guardrail split over the arms;
* guardrail, **exploration stability** ``≥ overlap_floor``: the send-weighted overlap@K, the share
  of the arm's sends that went to the previous batch's top-K items (by all arms' sends). The top-K
  of an arm's own sends would be noisier the fewer users the arm has, which would make small arms
  look unstable whatever their τ; a share of sends has no such bias.

The fit is models/tuner's (one GP per metric, Thompson sampling over a Sobol set of τ plus the
observed ones); the ``max_arms`` most probable candidates, renormalised, are the next distribution,
laid out with :func:`models.tuner.assignment.relayout` so the fewest users change arm. Until
``warmup_batches`` batches have been fed back the arms are ``warmup_taus`` in equal shares.

The runner gives :meth:`learn` the sent pairs' rows, not their indices; the rows are matched back
to the pairs of the last planned batch by their features (pair features are distinct within a
batch: they start with the user's continuous features and go on with the item's). :meth:`plan`
keeps that batch's assignment for it, a function of the batch and the distribution only, so
replans of a batch neither change nor depend on it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from banditlp.arrays import Float32Array, FloatArray, IntArray, weighted_bincount
from evaluation.email_batch import BatchConstraints, CandidateBatch
from evaluation.errors import EvaluationInputError
from evaluation.experiment.batches import Rows
from evaluation.experiment.lp import SolvedLP
from evaluation.experiment.methods.base import Estimates, MethodContext, Plan
from evaluation.experiment.methods.neural import NeuralMethod, NeuralMethodConfig, banditlp_config
from evaluation.experiment.methods.neural_model import NeuralScores, score_neural, version_spread
from evaluation.experiment.metrics import item_exposure, top_k_items
from evaluation.experiment.seeding import int_seed
from models.errors import ModelError, ModelInputError
from models.neural import NeuralThompsonModel
from models.tuner.assignment import Layout, initial_layout, relayout, user_positions
from models.tuner.config import Guardrail, TunerConfig
from models.tuner.thompson import arm_id, thompson_distribution


def measured_model() -> NeuralMethodConfig:
    """``banditlp``'s rule as the tuner's figures were measured (README, ``bench/results/experiment-tuned*``):
    without the version guard, which came later, so the commands there reproduce them."""
    return dataclasses.replace(banditlp_config(), version_guard=1)


@dataclass(frozen=True, kw_only=True)
class TunedConfig:
    """How ``banditlp_tuned`` tunes τ.

    Attributes:
        model: The model and decision (``banditlp``'s; its ``tau`` is not used to score).
        tau_bounds: The box of τ.
        warmup_taus: The arms of the first batches, equal shares.
        warmup_batches: Batches fed back before the first fit.
        period: Batches between fits after the warm-up (P).
        max_unsub_usage: The unsubscription guardrail, usage of the arm's budget share.
        overlap_floor: The stability guardrail, send-weighted overlap@K.
        overlap_k: K.
        chunk_users: Users an observation pools at least (a τ bin's arm-batches, oldest first).
        tau_bin: Width of the τ bins observations are pooled in.
        max_arms: Arms served at most (the most probable, renormalised).
        n_samples, n_candidates, lam: The tuner's S, Sobol candidates and λ (λ far above any reward
            per user, so a setting meeting a guardrail in a draw beats every one that does not).
        experiment: The assignment hash's experiment name.
    """

    model: NeuralMethodConfig = field(default_factory=measured_model)
    tau_bounds: tuple[float, float] = (0.0, 2.0)
    warmup_taus: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    warmup_batches: int = 5
    period: int = 1
    max_unsub_usage: float = 1.0
    overlap_floor: float = 0.6
    overlap_k: int = 10
    chunk_users: int = 300
    tau_bin: float = 0.125
    max_arms: int = 5
    n_samples: int = 512
    n_candidates: int = 32
    lam: float = 1e4
    experiment: str = "banditlp_tuned"

    def __post_init__(self) -> None:
        """Reject settings that cannot tune.

        Raises:
            EvaluationInputError: naming the field.
        """
        lo, hi = self.tau_bounds
        checks = (
            (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi, f"tau_bounds must be 0 <= lo < hi: {lo}, {hi}"),
            (
                len(self.warmup_taus) >= 1 and all(lo <= t <= hi for t in self.warmup_taus),
                "warmup_taus must be non-empty and inside tau_bounds",
            ),
            (len(set(self.warmup_taus)) == len(self.warmup_taus), "warmup_taus must not repeat"),
            (self.warmup_batches >= 1 and self.period >= 1, "warmup_batches and period must be >= 1"),
            (self.max_unsub_usage > 0 and 0 <= self.overlap_floor <= 1, "need max_unsub_usage > 0, floor in [0, 1]"),
            (self.overlap_k >= 1 and self.chunk_users >= 1, "overlap_k and chunk_users must be >= 1"),
            (self.tau_bin > 0, f"tau_bin must be > 0, got {self.tau_bin}"),
            (1 <= len(self.warmup_taus) <= self.max_arms, "need 1 <= len(warmup_taus) <= max_arms"),
            (self.model.scores == "thompson" and self.model.decision == "lp", "the model must be Thompson + LP"),
        )
        for ok, message in checks:
            if not ok:
                raise EvaluationInputError(message)


@dataclass(frozen=True)
class ArmDistribution:
    """The arms served: ids, their settings (τ first, then any other knob) and probabilities (the
    same order), and their layout of [0, 1)."""

    arm_ids: tuple[str, ...]
    points: tuple[tuple[float, ...], ...]
    probs: tuple[float, ...]
    layout: Layout

    @property
    def taus(self) -> tuple[float, ...]:
        """Each arm's τ."""
        return tuple(p[0] for p in self.points)

    @staticmethod
    def of(points: FloatArray, probs: FloatArray, previous: Layout | None) -> ArmDistribution:
        """Arms at ``points`` (N, d), or τ alone (N,), with ``probs`` (N,), laid out from ``previous``
        (fresh when None). An arm's id is :func:`arm_id` of its setting, as the tuner names it."""
        pts = np.asarray(points, dtype=np.float64)
        pts = pts[:, None] if pts.ndim == 1 else pts
        ids = tuple(arm_id(p) for p in pts)
        masses = dict(zip(ids, (float(p) for p in probs)))
        layout = initial_layout(masses) if previous is None else relayout(previous, masses)
        settings = tuple(tuple(float(v) for v in p) for p in pts)
        return ArmDistribution(ids, settings, tuple(float(p) for p in probs), layout)

    def user_arms(self, positions: FloatArray) -> IntArray:
        """(U,) index into ``arm_ids`` of the arm serving each user position (U,)."""
        owner_index = np.array([self.arm_ids.index(o) for o in self.layout.owners], dtype=np.int64)
        arms: IntArray = owner_index[self.layout.locate(positions)]
        return arms


@dataclass
class ArmTotals:
    """One arm's counts over every batch it served: users, sends, realised value and unsubscriptions,
    its budget share ``Σ B × users_a / users``, and its sends to the previous batch's top-K items (and
    the sends that had a previous batch to compare with)."""

    users: float = 0.0
    sends: float = 0.0
    value: float = 0.0
    unsubscriptions: float = 0.0
    budget: float = 0.0
    top_k_sends: float = 0.0
    compared_sends: float = 0.0

    def add(self, other: ArmTotals) -> None:
        """Add another batch's counts."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def arm_metrics(
    user_arm: IntArray,
    n_arms: int,
    budget: float,
    sent_user: IntArray,
    sent_item: IntArray,
    value: FloatArray,
    unsubscribed: FloatArray,
    previous_top: IntArray | None,
) -> list[ArmTotals]:
    """One batch's counts per arm.

    Args:
        user_arm: ``(U,)`` the arm of every user of the batch.
        n_arms: A.
        budget: The batch's unsubscription budget B.
        sent_user: ``(n,)`` user id of each send.
        sent_item: ``(n,)`` its item.
        value: ``(n,)`` realised value of each send.
        unsubscribed: ``(n,)`` 0/1.
        previous_top: The previous batch's top-K items by sends, or None for the first batch.

    Returns:
        A :class:`ArmTotals` per arm.
    """
    users = np.bincount(user_arm, minlength=n_arms).astype(float)
    arm = user_arm[sent_user]
    sends = np.bincount(arm, minlength=n_arms).astype(float)
    gained = weighted_bincount(arm, value, n_arms)
    lost = weighted_bincount(arm, unsubscribed, n_arms)
    if previous_top is None:
        hits, compared = np.zeros(n_arms), np.zeros(n_arms)
    else:
        hits = weighted_bincount(arm, np.isin(sent_item, previous_top).astype(float), n_arms)
        compared = sends
    share = budget * users / user_arm.size
    return [ArmTotals(users[a], sends[a], gained[a], lost[a], share[a], hits[a], compared[a]) for a in range(n_arms)]


def observations(
    history: list[tuple[float, ArmTotals]], chunk_users: int, tau_bin: float
) -> tuple[FloatArray, FloatArray]:
    """``(X (n, 1), Y (n, 3))`` from the arm-batches ``(τ, counts)``, oldest first: grouped by
    ``floor(τ / tau_bin)``, each group's counts pooled in order into consecutive chunks of at least
    ``chunk_users`` users, and each chunk with sends compared to a previous batch one row: its users'
    mean τ and (reward per user, unsubscription usage of its budget share, send-weighted overlap@K).
    Rows in order of bin, then time. A last chunk short of ``chunk_users`` waits for more."""
    return binned_observations([((tau,), count) for tau, count in history], chunk_users, (tau_bin,))


def binned_observations(
    history: list[tuple[tuple[float, ...], ArmTotals]], chunk_users: int, widths: tuple[float, ...]
) -> tuple[FloatArray, FloatArray]:
    """:func:`observations` over d knobs: ``(X (n, d), Y (n, 3))`` from the arm-batches ``(setting
    (d,), counts)``, grouped by the cell ``floor(x_j / widths_j)`` of the grid, each chunk's row at its
    users' mean setting. Rows in order of cell (lexicographic), then time."""
    d = len(widths)
    bins: dict[tuple[int, ...], list[tuple[tuple[float, ...], ArmTotals]]] = {}
    for point, count in history:
        cell = tuple(int(math.floor(v / w)) for v, w in zip(point, widths))
        bins.setdefault(cell, []).append((point, count))
    rows, ys = [], []
    for key in sorted(bins):
        chunk, weighted = ArmTotals(), np.zeros(d)
        for point, count in bins[key]:
            chunk.add(count)
            weighted += np.asarray(point, dtype=float) * count.users
            if chunk.users < chunk_users:
                continue
            if chunk.compared_sends > 0 and chunk.budget > 0:
                rows.append(list(weighted / chunk.users))
                ys.append(
                    [
                        chunk.value / chunk.users,
                        chunk.unsubscriptions / chunk.budget,
                        chunk.top_k_sends / chunk.compared_sends,
                    ]
                )
            chunk, weighted = ArmTotals(), np.zeros(d)
    return np.array(rows, dtype=float).reshape(-1, d), np.array(ys, dtype=float).reshape(-1, 3)


def match_rows(batch_features: np.ndarray, row_features: np.ndarray) -> IntArray:
    """``(n,)`` the index of each row ``(n, d)`` among the batch's pairs ``(E, d)`` (equal float32 bytes).

    Raises:
        EvaluationInputError: if a row is not one of the batch's pairs.
    """
    d = batch_features.shape[1]
    void = np.dtype((np.void, 4 * d))
    keys = np.ascontiguousarray(batch_features, dtype=np.float32).view(void).ravel()
    wanted = np.ascontiguousarray(row_features, dtype=np.float32).view(void).ravel()
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys[order], wanted), keys.size - 1)
    if not np.all(keys[order][pos] == wanted):
        raise EvaluationInputError("feedback rows that are not pairs of the last planned batch")
    index: IntArray = order[pos].astype(np.int64)
    return index


@dataclass(frozen=True, eq=False)
class _Served:
    """What :meth:`TunedMethod.plan` keeps of a batch for :meth:`TunedMethod.learn`."""

    batch: CandidateBatch
    user_arm: IntArray
    budget: float


class TunedMethod:
    """``banditlp_tuned`` (see the module docstring); speaks :class:`~evaluation.experiment.methods.base.Method`.

    Args:
        config: The tuning settings.
        context: The world's sizes.
    """

    def __init__(self, config: TunedConfig, context: MethodContext) -> None:
        self.config = config
        self.stochastic = True
        self.inner = NeuralMethod(config.model, context)
        self.n_users = context.world.config.n_users
        self.n_items = context.world.config.n_items
        self.distribution: ArmDistribution | None = None
        self.tuner_seed = 0
        self.step = 0
        self.failed_fits = 0
        self.batches_seen = 0
        self.history: list[tuple[tuple[float, ...], ArmTotals]] = []
        self.batch_starts: list[int] = []  # where each fed-back batch's arm-batches start in history
        self._positions: FloatArray | None = None
        self._served: _Served | None = None
        self._previous_top: IntArray | None = None
        self._spread: tuple[str, dict[str, float]] | None = None

    def learn(self, rows: Rows, rng: np.random.Generator) -> None:
        """Retrain the model (as ``banditlp``); for the rows of a planned batch, count each arm's
        feedback and, on a tuning batch, fit the next distribution."""
        self.inner.learn(rows, rng)
        if self.distribution is None:  # the warm start: seed the tuner and serve the warm-up arms
            self.tuner_seed = int_seed(rng)
            ids = np.arange(self.n_users)
            self._positions = user_positions(ids.tolist(), self.config.experiment, salt=str(self.tuner_seed))
            points = self._warmup_points()
            n = points.shape[0]
            self.distribution = ArmDistribution.of(points, np.full(n, 1.0 / n), None)
            return
        served = self._served
        if served is None or rows.budgeted_cost is None:
            return
        pairs = match_rows(np.asarray(served.batch.features), rows.features)
        sent_user, sent_item = served.batch.pair_user[pairs], served.batch.pair_item[pairs]
        dist = self.distribution
        counts = arm_metrics(
            served.user_arm,
            len(dist.arm_ids),
            served.budget,
            sent_user,
            sent_item,
            rows.value,
            rows.unsubscribed,
            self._previous_top,
        )
        self.batch_starts.append(len(self.history))
        self.history.extend((point, count) for point, count in zip(dist.points, counts) if count.users > 0)
        exposure = item_exposure(np.ones(pairs.size), sent_item, self.n_items)
        self._previous_top = top_k_items(exposure, self.config.overlap_k)
        self._served = None
        self.batches_seen += 1
        after = self.batches_seen - self.config.warmup_batches
        if after >= 0 and after % self.config.period == 0:
            self._refit()

    def _refit(self) -> None:
        """The next distribution from the observations (unchanged with fewer than two)."""
        cfg = self.config
        X, Y = binned_observations(self._fitted_history(), cfg.chunk_users, self._bin_widths())
        if X.shape[0] < 2:
            return
        tuner = TunerConfig(
            bounds=self._bounds(),
            guardrails=(Guardrail(cfg.max_unsub_usage, "<="), Guardrail(cfg.overlap_floor, ">=")),
            lam=cfg.lam,
            n_samples=cfg.n_samples,
            n_candidates=cfg.n_candidates,
            seed=self.tuner_seed,
            step=self.step,
        )
        self.step += 1
        try:
            dist = thompson_distribution(X, Y, tuner)
        except ModelInputError:
            raise
        except ModelError:  # a GP fit that fails on every restart: keep serving the current arms
            self.failed_fits += 1
            return
        top = np.argsort(-dist.probs, kind="stable")[: cfg.max_arms]
        top = top[dist.probs[top] > 0]
        probs = dist.probs[top] / dist.probs[top].sum()
        assert self.distribution is not None
        self.distribution = ArmDistribution.of(dist.points[top], probs, self.distribution.layout)

    # -- the knobs: τ alone here; a subclass adds knobs after it (τ stays the first coordinate) --

    def _fitted_history(self) -> list[tuple[tuple[float, ...], ArmTotals]]:
        """The arm-batches the fit sees (all of them here)."""
        return self.history

    def _warmup_points(self) -> FloatArray:
        """``(N, d)`` the warm-up arms' settings."""
        return np.asarray(self.config.warmup_taus, dtype=float)[:, None]

    def _bounds(self) -> tuple[tuple[float, float], ...]:
        """The tuner's box, one ``(lo, hi)`` per knob."""
        return (self.config.tau_bounds,)

    def _bin_widths(self) -> tuple[float, ...]:
        """The grid the observations are pooled on, one width per knob."""
        return (self.config.tau_bin,)

    def _solve(
        self,
        batch: CandidateBatch,
        constraints: BatchConstraints,
        reward: FloatArray,
        cost: FloatArray,
        mean_cost: FloatArray,
        user_arm: IntArray,
    ) -> SolvedLP:
        """The batch's LP on the draws, as ``banditlp`` solves it (:meth:`NeuralMethod.solve`:
        pacing, the mean row); ``user_arm`` (U,): each user's arm, for per-arm rows."""
        return self.inner.solve(batch, constraints, reward, cost, mean_cost)

    def user_taus(self) -> FloatArray:
        """``(U,)`` every user's τ under the current distribution."""
        if self.distribution is None or self._positions is None:
            raise EvaluationInputError("banditlp_tuned must learn from the warm start before it plans")
        arms = self.distribution.user_arms(self._positions)
        out: FloatArray = np.asarray(self.distribution.taus, dtype=float)[arms]
        return out

    def plan(self, batch: CandidateBatch, constraints: BatchConstraints, rng: np.random.Generator) -> Plan:
        """Score each user's pairs at its arm's τ and solve the batch's LP; the model, the tuner and
        the distribution are left as they are (the batch's assignment is kept for its feedback)."""
        model = self.inner.model
        if model is None or self.distribution is None or self._positions is None:
            raise EvaluationInputError("banditlp_tuned must learn from the warm start before it plans")
        dist = self.distribution
        user_arm = dist.user_arms(self._positions)
        if self._served is None or self._served.batch.batch_id != batch.batch_id:
            self._served = _Served(batch, user_arm, float(constraints.budget[0]))
        X = np.array(batch.features)  # writable: torch does not take read-only arrays
        pair_tau = np.asarray(dist.taus, dtype=float)[user_arm[batch.pair_user]]
        s = score_by_tau(model, X, pair_tau, rng)
        reward, cost = s.samples["reward"], s.samples["unsubscription"]
        mean_cost = s.means["unsubscription"]
        solved = self._solve(batch, constraints, reward, cost, mean_cost, user_arm)
        budgeted = cost if self.config.model.budget_on == "decision" else mean_cost
        if self._spread is None or self._spread[0] != batch.batch_id:
            previous = self.inner.previous
            self._spread = (batch.batch_id, version_spread(previous, model, X) if previous is not None else {})
        estimates = Estimates(
            unsub_predicted=s.raw_means["unsubscription"],
            unsub_calibrated=s.means["unsubscription"],
            unsub_decision=cost,
            conversion=s.means["conversion"],
            version_spread=self._spread[1],
        )
        return Plan(
            x=solved.x, reward=reward, cost=budgeted, elastic=solved.elastic, estimates=estimates, policy=self.policy()
        )

    def policy(self) -> dict[str, float]:
        """The distribution as scalars: its mean τ, the fits so far (``tuner_steps``) and those that
        failed, and ``arm{k}_tau`` / ``arm{k}_p`` for the arms in order of τ (nan past the last arm),
        so every batch's distribution is in the results."""
        assert self.distribution is not None
        taus = np.asarray(self.distribution.taus)
        probs = np.asarray(self.distribution.probs)
        order = np.argsort(taus, kind="stable")
        out = {"tau_mean": float(taus @ probs), "tuner_steps": float(self.step), "failed_fits": float(self.failed_fits)}
        if self.config.model.pacing_prior > 0:
            out["pacing_factor"] = self.inner.pacing_factor()
        for k in range(self.config.max_arms):
            inside = k < order.size
            out[f"arm{k}_tau"] = float(taus[order[k]]) if inside else math.nan
            out[f"arm{k}_p"] = float(probs[order[k]]) if inside else math.nan
        return out


def score_by_tau(
    model: NeuralThompsonModel, X: Float32Array, pair_tau: FloatArray, rng: np.random.Generator
) -> NeuralScores:
    """``score_neural`` of every pair ``(E, d)`` at its own τ ``(E,)``: one pass per distinct τ over
    that τ's pairs, in increasing τ, scattered back into pair order (each pass draws once from ``rng``)."""
    levels = np.unique(pair_tau)
    if levels.size == 1:
        return score_neural(model, X, float(levels[0]), rng)
    n = X.shape[0]
    out: dict[str, dict[str, FloatArray]] = {"samples": {}, "means": {}, "raw_means": {}, "stds": {}}
    for level in levels:
        rows = np.flatnonzero(pair_tau == level)
        part = score_neural(model, X[rows], float(level), rng)
        parts = {"samples": part.samples, "means": part.means, "raw_means": part.raw_means, "stds": part.stds}
        for name, values in parts.items():
            for outcome, v in values.items():
                out[name].setdefault(outcome, np.empty(n, dtype=np.float64))[rows] = v
    return NeuralScores(out["samples"], out["means"], out["raw_means"], out["stds"])
