"""The live tuner: each period, the per-arm metrics of the recent windows fitted by ``models.tuner``, the
distribution published.

The tune-metrics app (``banditlp worker tune-metrics``, ``streams.tune.metrics_app``) sums the learners'
per-arm feedback counts (the ``metrics`` topic) and the allocator's decisions per arm in tumbling windows;
the job follows its windowed tables' changelogs (``streams.tune.windows.WindowReader``). Each period it
sums, per arm, the windows among the newest ``windows`` window lengths (``streams.tune.windows.recent``:
an arm's older windows age out, so a changed world is tracked and an arm no longer served drops out),
and turns every arm it knows the knobs of (those of the distributions it has seen) with at least
``min_feedback`` feedback records into one observation

    x = the arm's knob values (``knobs`` order),  y = (value_sum / n_feedback, unsubscriptions / n_feedback),

the reward and the unsubscriptions per send, fits one GP per metric (``models.tuner``: reward the primary,
unsubscriptions per send ``<= max_unsubscription_rate`` the guardrail; with ``min_overlap`` also the arm's
mean overlap@K between consecutive decisions ``>= min_overlap``, exploration stability) and publishes the Thompson
distribution over the candidates, its ``max_arms`` most probable arms renormalised (fewer arms keep the
layout small and each arm's traffic large enough to measure). With fewer than ``min_arms`` observations it
publishes nothing; with no distribution on the topic yet it starts one: ``initial_arms`` settings evenly
over the box, equal shares.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from models.tuner.config import Guardrail, TunerConfig
from models.tuner.thompson import thompson_distribution
from streams.avro.serde import AvroSerde
from streams.errors import ConfigError
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.score.parameter_feed import ParameterDistributionRecord
from streams.tune.distribution import ArmSpec, default_arm_id, publish, read_latest
from streams.tune.run_log import TuneRunLog
from streams.tune.windows import ArmWindow, WindowReader, recent, summed

log = logging.getLogger("banditlp.tune")


@dataclass(frozen=True)
class TunerJobConfig:
    """The live tuner's settings.

    Attributes:
        experiment: the distribution's key (the scorers' ``--experiment``).
        knobs: ``((name, lo, hi), ...)``: the tuned knobs and their box.
        period_s: seconds between tuning steps.
        max_unsubscription_rate: the guardrail, unsubscriptions per send.
        min_feedback: feedback records an arm needs before it counts as an observation.
        min_arms: observations a step needs (fewer: nothing is published).
        max_arms: arms published at most (the most probable, renormalised).
        initial_arms: settings of the first distribution, when the topic has none.
        n_samples, n_candidates: S and the Sobol candidates of each step (``TunerConfig``).
        seed: the tuner's seed (each step's draws are ``default_rng([seed, step])``).
        windows: how many of the tune-metrics app's windows count (the newest ones; older ones age out).
        min_overlap: an exploration-stability guardrail, the arm's mean per-user overlap@K between
            consecutive decisions ``>= min_overlap`` (None: none; set, an arm needs a user decided
            twice in a row under it to count).
        metrics_app_id: the tune-metrics app whose windowed tables' changelogs are read.
    """

    experiment: str = "tau"
    knobs: tuple[tuple[str, float, float], ...] = (("tau", 0.0, 2.0),)
    period_s: float = 60.0
    max_unsubscription_rate: float = 0.01
    min_feedback: int = 50
    min_arms: int = 2
    max_arms: int = 8
    initial_arms: int = 4
    n_samples: int = 512
    n_candidates: int = 128
    seed: int = 0
    windows: int = 12
    min_overlap: float | None = None
    metrics_app_id: str = "banditlp-tune-metrics"

    def __post_init__(self) -> None:
        if not self.knobs or any(not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) for _, lo, hi in self.knobs):
            raise ConfigError(f"knobs must be (name, lo, hi) with finite lo < hi, got {self.knobs}")
        if not (self.period_s > 0 and self.min_feedback >= 1 and self.min_arms >= 1):
            raise ConfigError("period_s must be > 0, min_feedback and min_arms >= 1")
        if not (1 <= self.max_arms <= 1_000 and 1 <= self.initial_arms <= self.max_arms):
            raise ConfigError(f"need 1 <= initial_arms ({self.initial_arms}) <= max_arms ({self.max_arms}) <= 1000")
        if self.windows < 1:
            raise ConfigError(f"windows must be >= 1, got {self.windows}")
        if self.min_overlap is not None and not 0.0 <= self.min_overlap <= 1.0:
            raise ConfigError(f"min_overlap must be in [0, 1], got {self.min_overlap}")


@dataclass
class ArmTotals:
    """Feedback counted for one arm over the windows that count."""

    n_feedback: int = 0
    conversions: int = 0
    unsubscriptions: int = 0
    value_sum: float = 0.0
    overlap_sum: float = 0.0
    overlap_users: int = 0

    def add(self, value: dict[str, float]) -> None:
        self.n_feedback += int(value["n_feedback"])
        self.conversions += int(value["conversions"])
        self.unsubscriptions += int(value["unsubscriptions"])
        self.value_sum += float(value["value_sum"])
        self.overlap_sum += float(value.get("overlap_sum", 0.0))
        self.overlap_users += int(value.get("overlap_users", 0))

    @classmethod
    def of_windows(cls, windows: list[ArmWindow]) -> ArmTotals:
        """The sums of an arm's windows."""
        total = cls()
        total.add(summed(windows))
        return total


@dataclass
class TunerState:
    """What the job holds between periods: the windows that count and their totals per arm, each arm's
    knobs, the newest record."""

    totals: dict[str, ArmTotals] = field(default_factory=dict)
    windows: dict[str, list[ArmWindow]] = field(default_factory=dict)
    knobs_of: dict[str, dict[str, float]] = field(default_factory=dict)
    current: ParameterDistributionRecord | None = None
    step: int = 0

    def hold(self, record: ParameterDistributionRecord) -> None:
        self.current = record
        for arm in record.arms:
            self.knobs_of[arm.arm_id] = dict(arm.parameters)


def observations(state: TunerState, config: TunerJobConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(X (n, d), Y (n, m), arm ids)``: every arm with known knobs and ``min_feedback`` feedback, its
    reward and unsubscriptions per send (m = 2), and its mean overlap@K when ``min_overlap`` is set (m = 3)."""
    names = [k for k, _, _ in config.knobs]
    stability = config.min_overlap is not None
    rows, ys, arms = [], [], []
    for arm, t in sorted(state.totals.items()):
        knobs = state.knobs_of.get(arm)
        if knobs is None or t.n_feedback < config.min_feedback or any(k not in knobs for k in names):
            continue
        if stability and t.overlap_users < 1:
            continue
        rows.append([knobs[k] for k in names])
        y = [t.value_sum / t.n_feedback, t.unsubscriptions / t.n_feedback]
        ys.append(y + [t.overlap_sum / t.overlap_users] if stability else y)
        arms.append(arm)
    d, m = len(names), 3 if stability else 2
    return np.array(rows, dtype=np.float64).reshape(-1, d), np.array(ys, dtype=np.float64).reshape(-1, m), arms


def initial_arms(config: TunerJobConfig) -> list[ArmSpec]:
    """``initial_arms`` settings evenly over the box (the midpoints of equal slices of each knob), equal shares."""
    n = config.initial_arms
    arms = []
    for j in range(n):
        knobs = {name: lo + (j + 0.5) / n * (hi - lo) for name, lo, hi in config.knobs}
        arms.append(ArmSpec(default_arm_id(knobs), knobs, 1.0 / n))
    return arms


def tuned_arms(state: TunerState, config: TunerJobConfig) -> list[ArmSpec] | None:
    """The next arms from the observations (None: fewer than ``min_arms``): the Thompson distribution
    of ``models.tuner``, its ``max_arms`` most probable arms with their probabilities renormalised."""
    X, Y, _ = observations(state, config)
    if X.shape[0] < config.min_arms:
        return None
    tuner = TunerConfig(
        bounds=tuple((lo, hi) for _, lo, hi in config.knobs),
        guardrails=(Guardrail(config.max_unsubscription_rate, "<="),)
        + ((Guardrail(config.min_overlap, ">="),) if config.min_overlap is not None else ()),
        n_samples=config.n_samples,
        n_candidates=config.n_candidates,
        seed=config.seed,
        step=state.step,
    )
    dist = thompson_distribution(X, Y, tuner)
    top = np.argsort(-dist.probs, kind="stable")[: config.max_arms]
    top = top[dist.probs[top] > 0]
    probs = dist.probs[top] / dist.probs[top].sum()
    names = [k for k, _, _ in config.knobs]
    return [
        ArmSpec(dist.arm_ids[j], {k: float(v) for k, v in zip(names, dist.points[j])}, float(p))
        for j, p in zip(top, probs)
    ]


class TunerJob:
    """The live loop: read metrics, and each ``period_s`` tune and publish (``run``; ``step`` once).

    ``run_log``: each step is logged there too (``streams.tune.run_log``: the run directory's
    ``tune-live.json``, which ``banditlp report`` renders)."""

    def __init__(
        self,
        config: TunerJobConfig,
        connection: ConnectionConfig,
        serde: AvroSerde,
        names: TopicNames,
        run_log: TuneRunLog | None = None,
    ) -> None:
        self.config = config
        self.run_log = run_log
        self.connection = connection
        self.serde = serde
        self.topic = names("parameter-distribution")
        app = f"{names.prefix}{config.metrics_app_id}"
        self.reader = WindowReader(connection, (f"{app}-arm-feedback-changelog", f"{app}-arm-batches-changelog"))
        self.state = TunerState()

    def read_metrics(self, for_s: float) -> int:
        """Follow the windows for ``for_s`` seconds, then take the ones that count and their totals per arm
        (``state.windows``, ``state.totals``); how many changelog entries were read.

        Raises:
            BrokerError: the tune-metrics app's changelogs do not exist.
        """
        n = self.reader.read(for_s)
        self.state.windows = recent(self.reader.windows(), self.config.windows)
        self.state.totals = {arm: ArmTotals.of_windows(ws) for arm, ws in self.state.windows.items()}
        return n

    def step(self) -> ParameterDistributionRecord | None:
        """One tuning step: publish the next distribution (the initial one when the topic has none);
        None when there are too few observations to tune."""
        cfg = self.config
        # the newest on the topic, not the job's own last one: an operator may have published since
        # (a version the job reused would be ignored by the scorers, which keep the first of a version)
        held = read_latest(self.connection, self.serde, self.topic, cfg.experiment)
        if held is not None and (self.state.current is None or held.version > self.state.current.version):
            self.state.hold(held)
        if self.state.current is None:
            arms: list[ArmSpec] | None = initial_arms(cfg)
        else:
            arms = tuned_arms(self.state, cfg)
        self.state.step += 1
        if arms is None:
            log.info(
                "step %d: fewer than %d arms with %d feedback records; nothing published",
                self.state.step,
                cfg.min_arms,
                cfg.min_feedback,
            )
            if self.run_log is not None:
                self.run_log.step(None, self.state.current, self.state.windows)
            return None
        record = publish(self.connection, self.serde, self.topic, cfg.experiment, arms, previous=self.state.current)
        self.state.hold(record)
        if self.run_log is not None:
            self.run_log.step(record, record, self.state.windows)
        return record

    def run(self, stop: threading.Event, periods: int | None = None) -> None:
        """Read metrics and tune every ``period_s`` until ``stop`` is set (or after ``periods`` steps)."""
        done = 0
        try:
            while not stop.is_set() and (periods is None or done < periods):
                if done == 0 and self.state.current is None:
                    held = read_latest(self.connection, self.serde, self.topic, self.config.experiment)
                    if held is not None:
                        self.state.hold(held)
                    else:
                        self.step()  # the first distribution at once, when the topic has none
                self.read_metrics(self.config.period_s)
                if stop.is_set():
                    break
                self.step()
                done += 1
        finally:
            self.reader.close()
