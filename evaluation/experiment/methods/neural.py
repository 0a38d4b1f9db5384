"""The neural methods: BanditLP, its naive-calibration ablation, NN-LP and NNTS.

One model (:mod:`evaluation.experiment.methods.neural_model`: the streams' network with its
last-layer Laplace posterior and calibrators), retrained on every row seen so far after every
batch, from the previous version's weights (the trainer's ``fit_model`` with its newest-20%
calibration holdout; the demo's trainer also retrains once per batch), and four ways of
deciding with it:

* ``banditlp``: calibrated Thompson samples (heuristic calibration) of reward and cost in the LP;
* ``banditlp_naive_calibration``: the same with the isotonic maps fitted on Thompson samples;
* ``nn_lp``: the calibrated MAP scores in the LP (no exploration);
* ``nnts``: calibrated Thompson samples of the reward, the top ``user_cap`` items per user, no
  budget and no provider rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from allocator.budget_rows import mean_budget_rows
from banditlp.arrays import FloatArray
from evaluation.email_batch import BatchConstraints, CandidateBatch, greedy_allocation
from evaluation.errors import EvaluationInputError
from evaluation.experiment.batches import Rows
from evaluation.experiment.lp import SolvedLP, solve_lp, solve_lp_checked
from evaluation.experiment.methods.base import Estimates, MethodContext, Plan
from evaluation.experiment.methods.neural_model import (
    Calibration,
    fit_neural,
    joint_draws,
    score_neural,
    version_spread,
)
from evaluation.experiment.seeding import int_seed
from models.neural import NeuralThompsonModel, calibrated_unsubscription
from models.pacing import CostPacing, PacingConfig
from models.version_guard import VersionGuard, VersionGuardConfig


@dataclass(frozen=True, kw_only=True)
class NeuralMethodConfig:
    """How a neural method scores and decides.

    Attributes:
        scores: ``"thompson"`` (marginal Thompson samples at ``tau``) or ``"mean"`` (MAP scores).
        calibration: ``"heuristic"``, ``"naive"`` or ``"none"`` (see ``fit_neural``).
        decision: ``"lp"`` (the batch's LP) or ``"top_k"`` (each user's ``user_cap`` best pairs
            by reward; no budget, no provider rows).
        tau: Thompson temperature (> 0 for ``"thompson"``).
        holdout: Share of the newest rows the calibrators are fitted on.
        buffer_rows: Newest rows kept for retraining (the trainer's window).
        budget_on: What the unsubscription budget holds on. ``"decision"``: the costs the LP
            decides on (the Thompson samples for ``scores="thompson"``). ``"mean"``: the plan is
            chosen on the samples, but the LP's budget is rescaled until the plan's cost under
            the calibrated posterior means meets the batch's budget
            (:func:`evaluation.experiment.lp.solve_lp_checked`), so the LP's preference for pairs
            whose cost draw came out low is not also what it is judged by. ``"quantile"``: the
            same, with the ``budget_quantile`` of the plan's cost over ``budget_draws`` joint
            posterior draws of the last layer (calibrated) in place of its cost under the means:
            a chance constraint that is wary where the model knows little. ``"mean_row"``: the
            plan is chosen on the samples with a second budget row on the calibrated means, so
            it meets the budget under its draw and under the means in one LP (the streamed
            allocator's rule, :func:`allocator.budget_rows.mean_budget_rows`).
        pacing_prior: 0 for no pacing; > 0: the budgeted costs are multiplied by a bias factor
            rho learnt from feedback, realised unsubscriptions of the method's own sends against
            the costs its plans budgeted for them, with a Gamma(a, a) prior (``a`` = this many
            pseudo-unsubscriptions at rho = 1) and a Poisson likelihood.
        pacing_memory: Discount gamma in (0, 1] of older batches in the pacing counts.
        pacing_quantile: The posterior quantile of rho used (0.5: the median; higher is warier).
        budget_quantile: The quantile of ``budget_on="quantile"``.
        budget_draws: Its joint posterior draws per batch.
        retrain: ``"warm"``: every version after the first is the previous one retrained from
            its weights (the trainer's behaviour); ``"scratch"``: a new network with a new seed
            every batch (the ablation).
        version_guard: The model versions the version guard compares (:mod:`models.version_guard`:
            the budgeted costs are also multiplied by the largest ratio of an older version's
            calibrated mean cost of the newest sends to the newest version's); 1 turns it off.
    """

    scores: Literal["thompson", "mean"] = "thompson"
    calibration: Calibration = "heuristic"
    decision: Literal["lp", "top_k"] = "lp"
    tau: float = 1.0
    holdout: float = 0.2
    buffer_rows: int = 50_000
    budget_on: Literal["decision", "mean", "quantile", "mean_row"] = "decision"
    pacing_prior: float = 0.0
    pacing_memory: float = 1.0
    pacing_quantile: float = 0.5
    budget_quantile: float = 0.9
    budget_draws: int = 32
    retrain: Literal["warm", "scratch"] = "warm"
    version_guard: int = 1

    def __post_init__(self) -> None:
        """Reject settings that describe no method.

        Raises:
            EvaluationInputError: naming the field.
        """
        if self.scores not in ("thompson", "mean"):
            raise EvaluationInputError(f"scores must be 'thompson' or 'mean', got {self.scores!r}")
        if self.calibration not in ("heuristic", "isotonic", "naive", "none"):
            raise EvaluationInputError(
                f"calibration must be heuristic, isotonic, naive or none, got {self.calibration!r}"
            )
        if self.decision not in ("lp", "top_k"):
            raise EvaluationInputError(f"decision must be 'lp' or 'top_k', got {self.decision!r}")
        if not (np.isfinite(self.tau) and self.tau >= 0):
            raise EvaluationInputError(f"tau must be finite and >= 0, got {self.tau}")
        if not 0.0 <= self.holdout < 1.0:
            raise EvaluationInputError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.buffer_rows < 1:
            raise EvaluationInputError(f"buffer_rows must be >= 1, got {self.buffer_rows}")
        if self.budget_on not in ("decision", "mean", "quantile", "mean_row"):
            raise EvaluationInputError(
                f"budget_on must be decision, mean, quantile or mean_row, got {self.budget_on!r}"
            )
        if not 0.0 < self.budget_quantile < 1.0 or self.budget_draws < 1:
            raise EvaluationInputError("budget_quantile must be in (0, 1) and budget_draws >= 1")
        if not (np.isfinite(self.pacing_prior) and self.pacing_prior >= 0):
            raise EvaluationInputError(f"pacing_prior must be finite and >= 0, got {self.pacing_prior}")
        if not 0.0 < self.pacing_memory <= 1.0:
            raise EvaluationInputError(f"pacing_memory must be in (0, 1], got {self.pacing_memory}")
        if self.retrain not in ("warm", "scratch"):
            raise EvaluationInputError(f"retrain must be 'warm' or 'scratch', got {self.retrain!r}")
        if not 0.0 < self.pacing_quantile < 1.0:
            raise EvaluationInputError(f"pacing_quantile must be in (0, 1), got {self.pacing_quantile}")
        if self.version_guard < 1:
            raise EvaluationInputError(f"version_guard must be >= 1, got {self.version_guard}")


#: The versions banditlp's version guard compares (models.version_guard).
BANDITLP_VERSION_GUARD = 5


def banditlp_config() -> NeuralMethodConfig:
    """BanditLP's decision rule, the streams' default: calibrated Thompson samples of reward and
    cost in the LP, whose budget holds on the draw and on the calibrated means (the mean row),
    the costs paced by the realised/budgeted unsubscriptions of its own sends (median of rho's
    posterior, 20 prior pseudo-events) and held to the warier of the last 5 model versions (the
    version guard, which the streams' trainer runs only when asked: ``--version-guard 5``). The
    ablation in the README justifies each part."""
    return NeuralMethodConfig(
        scores="thompson",
        calibration="heuristic",
        decision="lp",
        budget_on="mean_row",
        pacing_prior=20.0,
        version_guard=BANDITLP_VERSION_GUARD,
    )


class NeuralMethod:
    """A neural method (see the module docstring); speaks :class:`~evaluation.experiment.methods.base.Method`.

    Args:
        config: How it scores and decides.
        context: The world's sizes.
    """

    def __init__(self, config: NeuralMethodConfig, context: MethodContext) -> None:
        self.config = config
        self.stochastic = config.scores == "thompson" and config.tau > 0
        self._rows: Rows | None = None
        self.model: NeuralThompsonModel | None = None
        self.previous: NeuralThompsonModel | None = None
        # The version spread of the last batch planned (replans of a batch reuse it).
        self._spread: tuple[str, dict[str, float]] | None = None
        self.pacing = CostPacing(
            PacingConfig(prior_events=config.pacing_prior, memory=config.pacing_memory, quantile=config.pacing_quantile)
        )
        self.guard: VersionGuard[NeuralThompsonModel] = VersionGuard(
            VersionGuardConfig(versions=config.version_guard), calibrated_unsubscription
        )
        self.version_factor = 1.0

    def learn(self, rows: Rows, rng: np.random.Generator) -> None:
        """Count the rows' unsubscriptions against their budgeted costs (pacing), append the rows
        and retrain the model on the newest ``buffer_rows`` (from the previous weights unless
        ``retrain="scratch"``)."""
        if rows.budgeted_cost is not None:
            self.pacing = self.pacing.update(float(rows.unsubscribed.sum()), float(rows.budgeted_cost.sum()))
        rows = Rows(rows.features, rows.converted, rows.unsubscribed, rows.value)
        kept = rows if self._rows is None else Rows.concat([self._rows, rows])
        if kept.n > self.config.buffer_rows:
            kept = kept.take(np.arange(kept.n - self.config.buffer_rows, kept.n))
        self._rows = kept
        cfg = self.config
        self.previous = self.model
        self._spread = None
        self.model = fit_neural(
            kept,
            int_seed(rng),
            holdout=cfg.holdout,
            calibration=cfg.calibration,
            tau=cfg.tau,
            rng=rng,
            previous=self.previous if cfg.retrain == "warm" else None,
        )
        self.guard.push(self.model)
        self.version_factor = self.guard.factor(np.asarray(rows.features))

    def plan(self, batch: CandidateBatch, constraints: BatchConstraints, rng: np.random.Generator) -> Plan:
        """Score the batch and decide (LP or top-k); the state is left as it is.

        Raises:
            EvaluationInputError: if the method has not learnt from any row yet.
        """
        if self.model is None:
            raise EvaluationInputError("a neural method must learn from the warm start before it plans")
        cfg = self.config
        X = np.array(batch.features)  # writable: torch does not take read-only arrays
        thompson = cfg.scores == "thompson"
        s = score_neural(self.model, X, cfg.tau if thompson else 0.0, rng)
        chosen = s.samples if thompson else s.means
        reward, cost = chosen["reward"], chosen["unsubscription"]
        budgeted = cost if cfg.budget_on == "decision" else s.means["unsubscription"]
        rho = self.cost_factor()
        policy: dict[str, float] = {}
        if cfg.pacing_prior > 0:
            policy["pacing_factor"] = self.pacing_factor()
        if cfg.version_guard > 1:
            policy["version_factor"] = self.version_factor
        if cfg.decision == "top_k":
            x, elastic = greedy_allocation(reward, batch.pair_user, constraints.user_cap), False
        elif cfg.budget_on in ("mean", "quantile"):
            check, q = rho * budgeted, 0.5
            if cfg.budget_on == "quantile":
                draws = joint_draws(self.model, X, "unsubscription", cfg.budget_draws, rng)
                check, q = rho * draws, cfg.budget_quantile
            scaled = solve_lp_checked(batch, constraints, reward, rho * cost, check, quantile=q)
            x, elastic = scaled.solved.x, scaled.solved.elastic
            policy["budget_scale"] = scaled.budget_scale
        else:
            solved = self.solve(batch, constraints, reward, cost, budgeted)
            x, elastic = solved.x, solved.elastic
        if self._spread is None or self._spread[0] != batch.batch_id:
            spread = version_spread(self.previous, self.model, X) if self.previous is not None else {}
            self._spread = (batch.batch_id, spread)
        spread = self._spread[1]
        estimates = Estimates(
            unsub_predicted=s.raw_means["unsubscription"],
            unsub_calibrated=s.means["unsubscription"],
            unsub_decision=cost,
            conversion=s.means["conversion"],
            version_spread=spread,
        )
        return Plan(x=x, reward=reward, cost=budgeted, elastic=elastic, estimates=estimates, policy=policy)

    def solve(
        self,
        batch: CandidateBatch,
        constraints: BatchConstraints,
        reward: FloatArray,
        cost: FloatArray,
        mean_cost: FloatArray,
        extra_rows: tuple[FloatArray, FloatArray] | None = None,
    ) -> SolvedLP:
        """The batch's LP on ``reward`` and the paced ``cost`` (both ``(E,)``), with the mean row
        of ``budget_on="mean_row"`` on the paced ``mean_cost`` (:mod:`allocator.budget_rows`)
        before any ``extra_rows`` (``(rows (G, E), limits (G,))``, e.g. per-arm rows)."""
        rho = self.cost_factor()
        budget = np.asarray(constraints.budget[:1], dtype=float)
        rows: list[tuple[FloatArray, FloatArray]] = []
        if self.config.budget_on == "mean_row" and np.all(np.isfinite(budget)):
            stacked, limits = mean_budget_rows(
                rho * np.asarray(cost, dtype=float)[None, None, :],
                rho * np.asarray(mean_cost, dtype=float)[None, :],
                budget,
            )
            rows.append((stacked[0, 1:], limits[1:]))  # row 0 is the batch's own (on the draw)
        if extra_rows is not None:
            rows.append((np.asarray(extra_rows[0], dtype=float), np.asarray(extra_rows[1], dtype=float)))
        extra = (np.vstack([r for r, _ in rows]), np.concatenate([lim for _, lim in rows])) if rows else None
        return solve_lp(batch, constraints, reward, rho * np.asarray(cost, dtype=float), extra_rows=extra)

    def pacing_factor(self) -> float:
        """The bias factor rho the budgeted costs are multiplied by (1 without pacing): the
        ``pacing_quantile`` of its Gamma posterior (:class:`models.pacing.CostPacing`)."""
        return self.pacing.factor()

    def cost_factor(self) -> float:
        """What the budgeted costs are multiplied by: the pacing factor times the version guard's."""
        return self.pacing_factor() * self.version_factor
