"""The project's Prometheus instruments (``banditlp_*``), in one registry per ``WorkerMetrics``.

Every worker builds one ``WorkerMetrics`` and records what it does; each kind of worker fills
the instruments of its own stage and leaves the others empty (a labelled family with no child
is exposed with its HELP and TYPE only). Names follow Prometheus' conventions: counters end in
``_total``, durations are in seconds (``_seconds``), and a unit-less count names what it counts.

| instrument | type | labels | who fills it |
|---|---|---|---|
| banditlp_records_in_total | counter | topic | every worker: records consumed |
| banditlp_records_out_total | counter | topic | every worker: records produced (the allocator's once committed) |
| banditlp_dead_letters_total | counter | topic, reason | every worker: dead letters by source topic, error type |
| banditlp_consumer_lag_records | gauge | topic, partition | every worker: high watermark - committed (or position) |
| banditlp_batch_open_to_close_seconds | histogram | | allocator: OPENED -> CLOSED seen |
| banditlp_batch_close_to_decision_seconds | histogram | | allocator: CLOSED seen -> decisions committed |
| banditlp_lp_solve_seconds | histogram | solver | allocator: one LP (one Thompson draw) |
| banditlp_lp_solves_total | counter | solver | allocator: LPs solved |
| banditlp_lp_iterations | gauge | | allocator: the last batch's solver iterations (all draws) |
| banditlp_lp_objective | gauge | | allocator: the last batch's objective |
| banditlp_lp_constraint_violation | gauge | constraint | allocator: the last batch's violation per row |
| banditlp_lp_dual | gauge | constraint | allocator: the last batch's dual per row |
| banditlp_batches_total | counter | status | allocator: batches decided, by report status word |
| banditlp_decisions_total | counter | | allocator: decisions committed |
| banditlp_fallback_decisions_total | counter | | allocator: of them, the fallback's |
| banditlp_scoring_seconds | histogram | | processors: one take, decode -> scores delivered |
| banditlp_scored_pairs_total | counter | | processors: (user, item) pairs scored |
| banditlp_model_version | gauge | model | processors: scoring; trainer: published; allocator: newest of last batch |
| banditlp_parameter_version_decisions | gauge | parameter_version | allocator: last batch's decisions per arm |
| banditlp_training_seconds | histogram | | trainer: one retrain (fit + publish) |
| banditlp_health_batches_total | counter | | health: batches closed and published on ``health`` |
| banditlp_health_alarms_total | counter | alarm | health: alarms raised, by name (``rate_shift.conversion``, ...) |
| banditlp_health_value | gauge | metric | health: the last published batch's metrics (finite ones) |
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.metrics.batch import BatchObservation, constraint_rows

TP = tuple[str, int]

# Batch windows run from seconds to the hour-long open timeout.
WINDOW_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
# One LP: milliseconds (HiGHS, small) to minutes (millions of variables).
SOLVE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0)
# One scoring take of up to a few hundred records.
SCORING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TRAINING_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class WorkerMetrics:
    """Every ``banditlp_*`` instrument of one worker process (module docstring), in ``registry``.

    Args:
        registry: where the instruments are registered; a new ``CollectorRegistry`` when None.
        lag_interval_s: how often a worker refreshes the lag gauges (``set_lag``).
    """

    def __init__(self, registry: CollectorRegistry | None = None, lag_interval_s: float = 5.0) -> None:
        self.lag_interval_s = lag_interval_s
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.records_in = Counter("banditlp_records_in", "Records consumed.", ["topic"], registry=r)
        self.records_out = Counter(
            "banditlp_records_out", "Records produced (committed, where transactional).", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "banditlp_dead_letters",
            "Records dead-lettered, by source topic and error type.",
            ["topic", "reason"],
            registry=r,
        )
        self.lag = Gauge(
            "banditlp_consumer_lag_records",
            "High watermark minus the committed offset (the position where nothing is committed).",
            ["topic", "partition"],
            registry=r,
        )
        self.open_to_close = Histogram(
            "banditlp_batch_open_to_close_seconds",
            "Batch OPENED to CLOSED, as the allocator saw them.",
            buckets=WINDOW_BUCKETS,
            registry=r,
        )
        self.close_to_decision = Histogram(
            "banditlp_batch_close_to_decision_seconds",
            "Batch CLOSED seen to its decisions committed.",
            buckets=WINDOW_BUCKETS,
            registry=r,
        )
        self.solve_seconds = Histogram(
            "banditlp_lp_solve_seconds",
            "One LP (one Thompson draw) in the solver.",
            ["solver"],
            buckets=SOLVE_BUCKETS,
            registry=r,
        )
        self.solves = Counter("banditlp_lp_solves", "LPs solved (one per Thompson draw).", ["solver"], registry=r)
        self.iterations = Gauge("banditlp_lp_iterations", "Solver iterations of the last batch, all draws.", registry=r)
        self.objective = Gauge("banditlp_lp_objective", "Objective of the last batch's published plan.", registry=r)
        self.violation = Gauge(
            "banditlp_lp_constraint_violation",
            "The last batch's violation of each constraint row, in the row's units (0: it holds).",
            ["constraint"],
            registry=r,
        )
        self.dual = Gauge(
            "banditlp_lp_dual",
            "The last batch's dual (shadow price) of each constraint row.",
            ["constraint"],
            registry=r,
        )
        self.batches = Counter(
            "banditlp_batches", "Batches decided, by the report's status word.", ["status"], registry=r
        )
        self.decisions = Counter("banditlp_decisions", "Decisions committed (the LP's and the fallback's).", registry=r)
        self.fallback_decisions = Counter(
            "banditlp_fallback_decisions",
            "Decisions committed by the fallback (users the LP did not decide).",
            registry=r,
        )
        self.scoring_seconds = Histogram(
            "banditlp_scoring_seconds",
            "One scoring take: its records decoded, scored and their scores delivered.",
            buckets=SCORING_BUCKETS,
            registry=r,
        )
        self.scored_pairs = Counter("banditlp_scored_pairs", "(user, item) pairs scored.", registry=r)
        self.model_version = Gauge(
            "banditlp_model_version", "Version of the model in use (or published).", ["model"], registry=r
        )
        self.parameter_versions = Gauge(
            "banditlp_parameter_version_decisions",
            "Decisions of the last batch per tuner parameter arm.",
            ["parameter_version"],
            registry=r,
        )
        self.training_seconds = Histogram(
            "banditlp_training_seconds", "One retrain: fit, snapshot and publish.", buckets=TRAINING_BUCKETS, registry=r
        )
        self.health_batches = Counter(
            "banditlp_health_batches", "Batches whose health was published on the health topic.", registry=r
        )
        self.health_alarms = Counter(
            "banditlp_health_alarms", "Health alarms raised, by alarm name.", ["alarm"], registry=r
        )
        self.health_values = Gauge(
            "banditlp_health_value", "The last published batch's health metrics, by name.", ["metric"], registry=r
        )
        self._lag_children: set[TP] = set()
        self._constraints: set[str] = set()
        self._arms: set[str] = set()
        self._health_metrics: set[str] = set()

    # -- every worker ----------------------------------------------------------------------

    def consumed(self, topic: str, n: int = 1) -> None:
        self.records_in.labels(topic).inc(n)

    def produced(self, topic: str, n: int = 1) -> None:
        self.records_out.labels(topic).inc(n)

    def dead_lettered(self, topic: str, reason: str, n: int = 1) -> None:
        """``n`` records of ``topic`` dead-lettered; ``reason`` is the error's type name (bounded),
        not its message (which names records)."""
        self.dead_letters.labels(topic, reason).inc(n)

    def set_lag(self, lag: Mapping[TP, int]) -> None:
        """Replace the lag gauges by ``lag`` (partitions no longer held lose their series)."""
        for tp in self._lag_children - set(lag):
            self.lag.remove(tp[0], str(tp[1]))
        for (topic, partition), value in lag.items():
            self.lag.labels(topic, str(partition)).set(value)
        self._lag_children = set(lag)

    def set_model_version(self, model: str, version: int) -> None:
        self.model_version.labels(model).set(version)

    # -- allocator -------------------------------------------------------------------------

    def batch_decided(self, batch: BatchObservation) -> None:
        """Record one committed batch: its window times, LPs, rows and decisions."""
        report = batch.report
        if batch.open_to_close_s is not None:
            self.open_to_close.observe(batch.open_to_close_s)
        if batch.close_to_decision_s is not None:
            self.close_to_decision.observe(batch.close_to_decision_s)
        solver = str(report.get("solver", "none"))
        for seconds in batch.solve_seconds:
            self.solve_seconds.labels(solver).observe(seconds)
        if batch.solve_seconds:
            self.solves.labels(solver).inc(len(batch.solve_seconds))
        self.iterations.set(float(report.get("iterations", 0)))
        self.objective.set(float(report.get("objective", 0.0)))
        rows = constraint_rows(report)
        names = {row.name for row in rows}
        for gone in self._constraints - names:  # a row of an earlier batch's shape only
            self.violation.remove(gone)
            self.dual.remove(gone)
        for row in rows:
            self.violation.labels(row.name).set(row.violation)
            self.dual.labels(row.name).set(row.dual)
        self._constraints = names
        self.batches.labels(batch.status).inc()
        self.decisions.inc(batch.n_decisions)
        self.fallback_decisions.inc(batch.n_fallback)
        arms: dict[str, int] = {}
        newest: dict[str, int] = {}
        for (model, version, arm), n in batch.versions.items():
            arms[arm] = arms.get(arm, 0) + n
            newest[model] = max(newest.get(model, version), version)
        for gone in self._arms - set(arms):
            self.parameter_versions.remove(gone)
        for arm, n in arms.items():
            self.parameter_versions.labels(arm).set(n)
        self._arms = set(arms)
        for model, version in newest.items():
            self.set_model_version(model, version)

    # -- processors ------------------------------------------------------------------------

    def scored(self, seconds: float, n_pairs: int) -> None:
        self.scoring_seconds.observe(seconds)
        self.scored_pairs.inc(n_pairs)

    # -- trainer ---------------------------------------------------------------------------

    def trained(self, seconds: float, model: str, version: int) -> None:
        self.training_seconds.observe(seconds)
        self.set_model_version(model, version)

    # -- health ----------------------------------------------------------------------------

    def health_published(self, values: Mapping[str, float], alarms: Iterable[str]) -> None:
        """One batch's health published: its alarms counted by name, its finite metrics set (a
        metric the batch could not measure loses its series until one can)."""
        self.health_batches.inc()
        for name in alarms:
            self.health_alarms.labels(name).inc()
        finite = {k: float(v) for k, v in values.items() if math.isfinite(v)}
        for gone in self._health_metrics - set(finite):
            self.health_values.remove(gone)
        for name, v in finite.items():
            self.health_values.labels(name).set(v)
        self._health_metrics = set(finite)
