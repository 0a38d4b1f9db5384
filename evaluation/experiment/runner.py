"""The experiment loop: every method, every seed, batch after batch, and the sweeps.

One seed of one method (:func:`run_seed`):

1. the method learns from the warm start (the same logged sends of a uniformly random policy
   for every method of the seed);
2. per batch ``b``: it plans (``x``); a stochastic method plans ``variance_draws`` more times on
   the same model for its allocation variance; the sends are drawn from ``x`` by systematic
   sampling (``allocator.round_allocation``, as the allocator worker rounds); the outcomes of the
   sent pairs come from the seed's common outcome draws; the method learns from them;
3. the measures of every batch are taken under the true probabilities
   (:mod:`evaluation.experiment.metrics`, :mod:`evaluation.experiment.diagnostics`);
4. with ``config.measures_health``, the batch health (:mod:`evaluation.health`) is measured as a
   monitor would see it (the plan, the features, the model's predictions and the sent pairs'
   outcomes; the warm start's features are the reference window) and its alarms raised.

With ``config.shift`` the world is :class:`evaluation.health.shift.ShiftedWorld`: from the
shift's batch on, batches are played by the shifted world.

A sweep point is a comparison run with one setting changed (τ, or the warm-start size); the
point equal to the comparison's setting reuses its runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from allocator import round_allocation
from banditlp.arrays import FloatArray
from evaluation.email_world import EmailWorld
from evaluation.experiment.batches import BatchBook, Rows
from evaluation.experiment.config import ExperimentConfig
from evaluation.experiment.diagnostics import CurveBook, estimate_measures
from evaluation.experiment.lp import allocation_problem
from evaluation.experiment.methods.base import MethodContext
from evaluation.experiment.methods.registry import build_method
from evaluation.experiment.metrics import (
    allocation_variance,
    expected_reward,
    item_exposure,
    overlap_at_k,
    provider_exposure,
    provider_max_excess,
    provider_min_shortfall,
    unsub_usage,
)
from evaluation.experiment.seeding import generator
from evaluation.health import BatchHealth, HealthMonitor, MonitorConfig
from evaluation.health.series import health_series, planned_batch
from evaluation.health.shift import ShiftedWorld

#: ``(task label, seed, batch index)`` after every batch: what a progress bar advances on.
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True, eq=False)
class SeedRun:
    """One method's batches in one seed.

    Attributes:
        series: Measure -> ``(B,)`` one value per batch (nan where there is none); dotted names
            (``calibration_error.unsubscription_chosen``) are grouped in the results file.
        curves: Curve name -> ``(mean predicted (bins,), mean true (bins,))`` pooled over batches.
        health: The batch health of every batch, when it was measured (else empty).
    """

    series: dict[str, FloatArray]
    curves: dict[str, tuple[FloatArray, FloatArray]] = field(default_factory=dict)
    health: list[BatchHealth] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class ExperimentRun:
    """Everything an experiment measured.

    Attributes:
        config: Its configuration.
        methods: Method -> one :class:`SeedRun` per seed, in seed order.
        sweeps: Sweep (``"tau"``, ``"train_rows"``) -> value label -> method -> runs per seed.
    """

    config: ExperimentConfig
    methods: dict[str, list[SeedRun]]
    sweeps: dict[str, dict[str, dict[str, list[SeedRun]]]]


@dataclass(frozen=True)
class Task:
    """One method at one setting over every seed: a progress bar.

    Attributes:
        label: ``"banditlp"``, or ``"tau=0.5 banditlp"`` for a sweep point.
        method: The method's name.
        tau: Its temperature.
        warm_start_rows: Its warm-start size.
        sweep: ``(sweep name, value label)``, or None for the comparison.
    """

    label: str
    method: str
    tau: float
    warm_start_rows: int
    sweep: tuple[str, str] | None = None


def tasks(config: ExperimentConfig) -> list[Task]:
    """The runs an experiment makes, in order: the comparison, then each sweep point not equal to it."""
    out = [Task(m, m, config.tau, config.warm_start_rows) for m in config.methods]
    in_comparison = set(config.methods)
    if len(config.taus) > 1:
        for tau in config.taus:
            for m in config.sweep_methods:
                if not (tau == config.tau and m in in_comparison):
                    out.append(Task(f"tau={tau:g} {m}", m, tau, config.warm_start_rows, ("tau", f"{tau:g}")))
    for rows in config.train_rows:
        for m in config.sweep_methods:
            if not (rows == config.warm_start_rows and m in in_comparison):
                out.append(Task(f"train_rows={rows} {m}", m, config.tau, rows, ("train_rows", str(rows))))
    return out


def run_seed(
    book: BatchBook,
    config: ExperimentConfig,
    method_name: str,
    seed: int,
    *,
    tau: float | None = None,
    warm_start_rows: int | None = None,
    label: str | None = None,
    on_batch: ProgressFn | None = None,
) -> SeedRun:
    """Run one method for ``config.batches`` batches of one seed.

    Args:
        book: The world's batches (shared by every run of the world).
        config: The experiment.
        method_name: A registered method.
        seed: The experiment seed.
        tau: Its temperature (``config.tau`` when None).
        warm_start_rows: Its warm-start size (``config.warm_start_rows`` when None).
        label: The progress label (the method's name when None).
        on_batch: Called after every batch.

    Returns:
        The per-batch measures and the calibration curves.
    """
    world = book.world
    n_items, n_providers = world.config.n_items, world.config.n_providers
    method = build_method(
        method_name, MethodContext(world.feature_dim, world), config.tau if tau is None else tau, config.version_guard
    )
    rows0 = config.warm_start_rows if warm_start_rows is None else warm_start_rows
    warm_start = book.warm_start(seed, rows0)
    method.learn(warm_start, generator(seed, method_name, -1, "train"))
    monitor = (
        HealthMonitor(MonitorConfig(overlap_k=world.config.sends_per_user), reference_features=warm_start.features)
        if config.measures_health
        else None
    )
    healths: list[BatchHealth] = []
    measures: list[dict[str, float]] = []
    curves = CurveBook()
    previous_items: FloatArray | None = None
    for b in range(config.batches):
        truth = book.truth(b)
        batch, constraints = truth.batch, truth.constraints
        plan = method.plan(batch, constraints, generator(seed, method_name, b, "plan"))
        x = plan.x
        plans = [x]
        if method.stochastic:
            plans += [
                method.plan(batch, constraints, generator(seed, method_name, b, f"variance-{r}")).x
                for r in range(config.variance_draws)
            ]
        problem = allocation_problem(batch, constraints, plan.reward, plan.cost)
        sent = round_allocation(problem, x, mode="sample", rng=generator(seed, method_name, b, "round")).pairs
        outcomes = book.outcomes(seed, b)
        sent_x = np.zeros(batch.n_pairs)
        sent_x[sent] = 1.0
        items = item_exposure(x, batch.pair_item, n_items)
        exposure = provider_exposure(x, batch.pair_provider, n_providers)
        budget = float(constraints.budget[0])
        reward = expected_reward(x, truth.reward)
        overlap = math.nan if previous_items is None else overlap_at_k(previous_items, items, config.overlap_k)
        row = {
            "reward": reward,
            "oracle_fraction": reward / truth.oracle_objective if truth.oracle_objective > 0 else math.nan,
            "unsub_usage": unsub_usage(x, truth.p_unsub, budget),
            "provider_min_shortfall": provider_min_shortfall(exposure, constraints.provider_min),
            "overlap_at_k": overlap,
            "allocation_variance": allocation_variance(np.stack(plans)) if len(plans) > 1 else 0.0,
            "provider_max_excess": provider_max_excess(exposure, constraints.provider_max),
            "oracle_reward": truth.oracle_objective,
            "unsub_usage_sent": unsub_usage(sent_x, truth.p_unsub, budget),
            "realised_reward": float(outcomes.value[sent].sum()),
            "realised_unsubscriptions": float(outcomes.unsubscribed[sent].sum()),
            "sends": float(sent.size),
            "lp_elastic": float(plan.elastic),
        }
        row.update(estimate_measures(truth, x, plan.estimates))
        row.update({f"policy.{k}": float(v) for k, v in plan.policy.items()})
        if monitor is not None:
            est = plan.estimates
            health = monitor.observe(
                planned_batch(
                    b,
                    batch.pair_user,
                    batch.pair_item,
                    batch.features,
                    plans,
                    sent,
                    outcomes.converted,
                    outcomes.unsubscribed,
                    None if est is None else est.conversion,
                    None if est is None else est.unsub_calibrated,
                )
            )
            healths.append(health)
            row.update(health_series(health))
        measures.append(row)
        curves.add(truth, x, plan.estimates)
        previous_items = items
        new_rows = Rows(
            batch.features[sent],
            outcomes.converted[sent].astype(float),
            outcomes.unsubscribed[sent].astype(float),
            outcomes.value[sent],
            plan.cost[sent],
        )
        method.learn(new_rows, generator(seed, method_name, b, "train"))
        if on_batch is not None:
            on_batch(label or method_name, seed, b)
    series = {key: np.array([m[key] for m in measures], dtype=float) for key in measures[0]}
    return SeedRun(series=series, curves=curves.curves(), health=healths)


def run_experiment(config: ExperimentConfig, on_batch: ProgressFn | None = None) -> ExperimentRun:
    """Run the comparison and the sweeps of ``config``.

    Args:
        config: The experiment.
        on_batch: Called after every batch of every run (see :func:`tasks` for the labels).

    Returns:
        Every run's measures.

    Raises:
        OracleInfeasible: if a batch of the world has no feasible allocation.
    """
    world = EmailWorld(config.world)
    book = BatchBook(world if config.shift is None else ShiftedWorld(world, config.shift))
    methods: dict[str, list[SeedRun]] = {}
    sweeps: dict[str, dict[str, dict[str, list[SeedRun]]]] = {}
    for task in tasks(config):
        runs = [
            run_seed(
                book,
                config,
                task.method,
                seed,
                tau=task.tau,
                warm_start_rows=task.warm_start_rows,
                label=task.label,
                on_batch=on_batch,
            )
            for seed in config.experiment_seeds
        ]
        if task.sweep is None:
            methods[task.method] = runs
        else:
            sweeps.setdefault(task.sweep[0], {}).setdefault(task.sweep[1], {})[task.method] = runs
    # Sweep points equal to the comparison's setting are its runs.
    if len(config.taus) > 1:
        for m in config.sweep_methods:
            if m in methods:
                sweeps.setdefault("tau", {}).setdefault(f"{config.tau:g}", {})[m] = methods[m]
    for rows in config.train_rows:
        if rows == config.warm_start_rows:
            for m in config.sweep_methods:
                if m in methods:
                    sweeps.setdefault("train_rows", {}).setdefault(str(rows), {})[m] = methods[m]
    return ExperimentRun(config=config, methods=methods, sweeps=_sorted_sweeps(sweeps))


def _sorted_sweeps(
    sweeps: dict[str, dict[str, dict[str, list[SeedRun]]]],
) -> dict[str, dict[str, dict[str, list[SeedRun]]]]:
    # Values in increasing order (labels are numbers), whatever order the runs were made in.
    return {name: dict(sorted(points.items(), key=lambda kv: float(kv[0]))) for name, points in sweeps.items()}
