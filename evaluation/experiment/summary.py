"""The figures an experiment is judged by, per method, over seeds and batches.

Each method's measures are ``(S, B)`` arrays (seeds x batches). The figures (``DIR/summary.json``
and the terminal table):

* ``unsub_usage_mean``: mean budget usage over batches ``summary_from .. B`` and every seed;
* ``unsub_usage_max``: the largest usage of any batch of any seed; ``batches_over_budget`` and
  ``batches_over_1_05``: how many (seed, batch) pairs exceed 1 (beyond 1e-6) and 1.05;
* ``provider_min_shortfall_mean`` / ``_max``: over every batch and seed;
* ``cumulative_reward``: the mean over seeds of the sum over batches, with its 95% t interval;
* ``reward_vs_baseline``: the same for the per-seed difference to the baseline method (paired
  by seed: both ran on the same warm start and the same outcome draws);
* ``oracle_fraction_last``: the oracle fraction of the last batch, mean over seeds and interval;
  ``oracle_fraction_mean``: over every batch and seed;
* ``overlap_at_k_mean``, ``allocation_variance_mean``, ``elastic_batches``.

A sweep point gets the same figures (:func:`summarise_sweeps`), without the baseline comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from banditlp.arrays import FloatArray
from evaluation.experiment.runner import SeedRun

#: Confidence level of every interval.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its t interval (``low``/``high`` nan for a single seed)."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class MethodSummary:
    """One method's figures (see the module docstring)."""

    name: str
    unsub_usage_mean: float
    unsub_usage_max: float
    batches_over_budget: int
    batches_over_1_05: int
    provider_min_shortfall_mean: float
    provider_min_shortfall_max: float
    cumulative_reward: Interval
    reward_vs_baseline: Interval | None
    oracle_fraction_last: Interval
    oracle_fraction_mean: float
    overlap_at_k_mean: float
    allocation_variance_mean: float
    elastic_batches: int


def mean_interval(values: FloatArray) -> Interval:
    """Mean of ``(n,)`` values with its Student-t interval at :data:`CONFIDENCE` (nan ends when n < 2)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, v.size - 1)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return Interval(mean, mean - half, mean + half)


def stack(runs: list[SeedRun]) -> dict[str, FloatArray]:
    """Measure -> ``(S, B)`` over the seeds' runs."""
    return {key: np.stack([run.series[key] for run in runs]) for key in runs[0].series}


def _nanmean(a: FloatArray) -> float:
    finite = a[np.isfinite(a)]
    return float(finite.mean()) if finite.size else math.nan


def summarise(
    methods: Mapping[str, Mapping[str, FloatArray]], *, baseline: str | None, summary_from: int
) -> list[MethodSummary]:
    """The figures of every method.

    Args:
        methods: Method -> measure -> ``(S, B)``; every method has the core measures.
        baseline: The method rewards are compared against (None or absent: no comparison).
        summary_from: First batch (1-based) of ``unsub_usage_mean``.

    Returns:
        One summary per method, in the mapping's order.
    """
    base = methods.get(baseline) if baseline is not None else None
    out = []
    for name, m in methods.items():
        usage = m["unsub_usage"]
        cumulative = m["reward"].sum(axis=1)
        versus = None
        if base is not None and base["reward"].shape == m["reward"].shape:
            versus = mean_interval(cumulative - base["reward"].sum(axis=1))
        variance = m.get("allocation_variance")
        elastic = m.get("lp_elastic")
        out.append(
            MethodSummary(
                name=name,
                unsub_usage_mean=_nanmean(usage[:, summary_from - 1 :]),
                unsub_usage_max=float(np.nanmax(usage)),
                batches_over_budget=int(np.sum(usage > 1 + 1e-6)),
                batches_over_1_05=int(np.sum(usage > 1.05)),
                provider_min_shortfall_mean=_nanmean(m["provider_min_shortfall"]),
                provider_min_shortfall_max=float(np.nanmax(m["provider_min_shortfall"])),
                cumulative_reward=mean_interval(cumulative),
                reward_vs_baseline=versus,
                oracle_fraction_last=mean_interval(m["oracle_fraction"][:, -1]),
                oracle_fraction_mean=_nanmean(m["oracle_fraction"]),
                overlap_at_k_mean=_nanmean(m["overlap_at_k"]),
                allocation_variance_mean=math.nan if variance is None else _nanmean(variance),
                elastic_batches=0 if elastic is None else int(np.nansum(elastic)),
            )
        )
    return out


def summary_json(summaries: list[MethodSummary]) -> dict[str, dict[str, object]]:
    """Method -> its figures as JSON values (nan as null)."""

    def clean(value: object) -> object:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    return {s.name: {k: clean(v) for k, v in asdict(s).items() if k != "name"} for s in summaries}


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def _fmt_interval(i: Interval | None, digits: int = 1) -> str:
    if i is None or not math.isfinite(i.mean):
        return "n/a"
    if not math.isfinite(i.low):
        return f"{i.mean:.{digits}f}"
    return f"{i.mean:.{digits}f} [{i.low:.{digits}f}, {i.high:.{digits}f}]"


#: Column headers of :func:`table_rows`.
TABLE_COLUMNS = (
    "method",
    "cum. reward [95% CI]",
    "vs baseline [95% CI]",
    "oracle frac. last",
    "unsub usage mean",
    "unsub usage max",
    ">1.05",
    "prov. min shortfall",
    "overlap@K",
    "alloc. var.",
)


def table_rows(summaries: list[MethodSummary]) -> list[tuple[str, ...]]:
    """One row of :data:`TABLE_COLUMNS` per method, formatted for a terminal table."""
    return [
        (
            s.name,
            _fmt_interval(s.cumulative_reward),
            _fmt_interval(s.reward_vs_baseline),
            _fmt_interval(s.oracle_fraction_last, 3),
            _fmt(s.unsub_usage_mean),
            _fmt(s.unsub_usage_max),
            str(s.batches_over_1_05),
            f"{_fmt(s.provider_min_shortfall_mean)} / {_fmt(s.provider_min_shortfall_max)}",
            _fmt(s.overlap_at_k_mean),
            _fmt(s.allocation_variance_mean, 4),
        )
        for s in summaries
    ]


#: Column headers of :func:`sweep_rows`.
SWEEP_COLUMNS = (
    "sweep",
    "value",
    "method",
    "cum. reward [95% CI]",
    "oracle frac. last",
    "unsub usage mean",
    "unsub usage max",
    "overlap@K",
    "alloc. var.",
)

#: Sweep points: sweep -> value label -> method -> runs per seed.
Sweeps = Mapping[str, Mapping[str, Mapping[str, list[SeedRun]]]]


def summarise_sweeps(sweeps: Sweeps, *, summary_from: int) -> dict[str, dict[str, list[MethodSummary]]]:
    """Sweep -> value label -> the figures of each method at that point (no baseline comparison)."""
    return {
        sweep: {
            label: summarise(
                {name: stack(runs) for name, runs in per_method.items()}, baseline=None, summary_from=summary_from
            )
            for label, per_method in points.items()
        }
        for sweep, points in sweeps.items()
    }


def sweep_rows(summaries: Mapping[str, Mapping[str, list[MethodSummary]]]) -> list[tuple[str, ...]]:
    """One row of :data:`SWEEP_COLUMNS` per sweep point and method."""
    return [
        (
            sweep,
            label,
            s.name,
            _fmt_interval(s.cumulative_reward),
            _fmt_interval(s.oracle_fraction_last, 3),
            _fmt(s.unsub_usage_mean),
            _fmt(s.unsub_usage_max),
            _fmt(s.overlap_at_k_mean),
            _fmt(s.allocation_variance_mean, 4),
        )
        for sweep, points in summaries.items()
        for label, per_method in points.items()
        for s in per_method
    ]
