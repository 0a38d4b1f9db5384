"""The drift experiment's measurement: how many batches after an injected shift its alarm fires,
and how often the same alarm fires in the unshifted world over the same batches.

Each kind of shift has the alarm that is meant to catch it (:data:`ALARM_OF`). For one
configuration and ``S`` seeds, :func:`measure_drift` runs the unshifted world and the world with
each shift from ``shift_batch`` on (same seeds: until the shift, a shifted run is its unshifted
run, batch for batch), and reports per kind:

* the delay of each seed: the first batch ``>= shift_batch`` in which the kind's alarm fired,
  minus ``shift_batch`` (0: in the shift's own batch); None when it never fired before the run
  ended (censored at ``batches - shift_batch``);
* the false-alarm rate of the same alarm in the unshifted runs over the same batches
  ``shift_batch .. batches - 1``: alarms per seed-batch, and the share of seeds with at least one.

The rates of every alarm over every monitored batch of the unshifted runs are reported beside,
and the null of the rate alarms: observed over expected outcomes of the sent pairs, pooled over
the monitored batches of the unshifted runs, with an exact Poisson 95% interval (the rate CUSUM's
null odds ratio, ``HealthThresholds.rate_null_odds_*``, is set from such a measurement on seeds
other than the measured ones: ``--kinds '' --first-seed 5``).
Run it: ``python -m evaluation.health.drift --out bench/results/drift-5seeds.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from banditlp.arrays import FloatArray
from evaluation.email_world import EmailWorldConfig
from evaluation.errors import EvaluationInputError
from evaluation.health.monitor import ALARM_NAMES, OUTCOMES, MonitorConfig
from evaluation.health.shift import SHIFT_KINDS, Shift

#: The alarm each kind of shift is meant to raise.
ALARM_OF = {
    "features": "feature_drift",
    "conversion": "rate_shift.conversion",
    "unsubscription": "rate_shift.unsubscription",
}
#: The second alarm of a kind, against the frozen read-out (reported beside, and "either" of both).
REF_ALARM_OF = {
    "conversion": "rate_shift_ref.conversion",
    "unsubscription": "rate_shift_ref.unsubscription",
}


def first_alarm_delays(alarms: FloatArray, shift_batch: int) -> list[int | None]:
    """Per seed, batches from ``shift_batch`` to the first alarm at or after it.

    Args:
        alarms: ``(S, B)`` 0/1 per seed and batch.
        shift_batch: The first shifted batch.

    Returns:
        ``S`` delays; None for a seed whose alarm never fired from ``shift_batch`` on.
    """
    a = np.asarray(alarms, dtype=float)
    if a.ndim != 2 or not 0 <= shift_batch < a.shape[1]:
        raise EvaluationInputError(f"need (S, B) alarms and 0 <= shift_batch < B, got {a.shape}, {shift_batch}")
    out: list[int | None] = []
    for row in a[:, shift_batch:] > 0:
        hits = np.flatnonzero(row)
        out.append(int(hits[0]) if hits.size else None)
    return out


def false_alarm_rates(alarms: FloatArray, first: int, last: int | None = None) -> dict[str, float]:
    """Alarm rates of unshifted runs over batches ``first .. last - 1``.

    Args:
        alarms: ``(S, B)`` 0/1 per seed and batch.
        first: The first batch counted.
        last: One past the last (B when None).

    Returns:
        ``per_batch`` (alarms per seed-batch), ``per_run`` (share of seeds with an alarm),
        ``batches`` (seed-batches counted) and ``alarms`` (their count).
    """
    a = np.asarray(alarms, dtype=float)[:, first:last] > 0
    n = int(a.size)
    return {
        "per_batch": float(a.sum() / n) if n else math.nan,
        "per_run": float(a.any(axis=1).mean()) if a.shape[0] and a.shape[1] else math.nan,
        "batches": float(n),
        "alarms": float(a.sum()),
    }


def observed_over_expected(observed: FloatArray, expected: FloatArray) -> dict[str, float]:
    """Pooled ``sum y / sum p`` of per-batch sums (nan batches left out) with an exact Poisson
    95% interval on the observed count (Garwood), for the null of the rate alarms."""
    y = np.asarray(observed, dtype=float)
    p = np.asarray(expected, dtype=float)
    keep = np.isfinite(y) & np.isfinite(p)
    total_y, total_p = float(y[keep].sum()), float(p[keep].sum())
    low = float(scipy.stats.chi2.ppf(0.025, 2 * total_y) / 2) if total_y > 0 else 0.0
    high = float(scipy.stats.chi2.ppf(0.975, 2 * total_y + 2) / 2)
    ratio = total_y / total_p if total_p > 0 else math.nan
    return {
        "ratio": ratio,
        "lower": low / total_p if total_p > 0 else math.nan,
        "upper": high / total_p if total_p > 0 else math.nan,
        "observed": total_y,
        "expected": total_p,
    }


def _alarm_matrix(runs: list[Any], name: str) -> FloatArray:
    return np.stack([run.series[f"alarm.{name}"] for run in runs])


def _series(runs: list[Any], name: str) -> FloatArray:
    return np.stack([run.series[f"health.{name}"] for run in runs])


def per_batch_ratio(runs: list[Any], observed: str, expected: str, first: int) -> list[float | None]:
    """Observed over expected per batch from ``first`` on, pooled over the runs (None where nothing was expected)."""
    y, p = _series(runs, observed)[:, first:], _series(runs, expected)[:, first:]
    ys, ps = np.nansum(y, axis=0), np.nansum(p, axis=0)
    return [float(a / b) if b > 0 else None for a, b in zip(ys, ps, strict=True)]


def reference_null(runs: list[Any], first: int) -> dict[str, Any]:
    """The frozen read-out's null per outcome: pooled observed over its expected outcomes of the
    sent pairs (with the Poisson interval), the same per batch, and the read-out's R² per run."""
    out: dict[str, Any] = {}
    for o in OUTCOMES:
        out[o] = {
            "pooled": observed_over_expected(
                _series(runs, f"rate_observed.{o}")[:, first:], _series(runs, f"rate_ref_expected.{o}")[:, first:]
            ),
            "per_batch": per_batch_ratio(runs, f"rate_observed.{o}", f"rate_ref_expected.{o}", first),
            "deployed_per_batch": per_batch_ratio(runs, f"rate_observed.{o}", f"rate_expected.{o}", first),
            "fit_r2": [float(r.series[f"health.reference_fit_r2.{o}"][first]) for r in runs],
        }
    return out


def measure_drift(
    config: Any,
    shift_batch: int,
    sizes: dict[str, float] | None = None,
    kinds: tuple[str, ...] = SHIFT_KINDS,
    on_run: Callable[[str, float], None] | None = None,
    with_null: bool = True,
) -> dict[str, Any]:
    """Run the unshifted world and each shift, and measure delays and false-alarm rates.

    Args:
        config: The :class:`~evaluation.experiment.config.ExperimentConfig` of every run (its
            ``shift`` and ``health`` are set here).
        shift_batch: The first shifted batch.
        sizes: Kind -> shift size (the kind's default when absent).
        kinds: The kinds measured.
        on_run: Called with each run's label and its seconds.
        with_null: Run the unshifted world too (without it, no false-alarm rates: those of
            another measurement of the same configuration and seeds apply, its null runs being
            the same).

    Returns:
        The document written to ``drift-*.json`` (see the module docstring).
    """
    from evaluation.experiment.runner import run_experiment

    sizes = sizes or {}
    reference = MonitorConfig().reference_batches
    method = config.methods[0]
    plain = dataclasses.replace(config, shift=None, health=True)
    doc: dict[str, Any] = {
        "config": {k: v for k, v in plain.to_json().items() if k != "method_configs"},
        "method": method,
        "shift_batch": shift_batch,
        "reference_batches": reference,
        "kinds": {},
    }
    null_runs = None
    if with_null:
        started = time.monotonic()
        null_runs = run_experiment(plain).methods[method]
        if on_run is not None:
            on_run("none", time.monotonic() - started)
        doc["null_rates"] = {name: false_alarm_rates(_alarm_matrix(null_runs, name), reference) for name in ALARM_NAMES}
        doc["null_observed_over_expected"] = {
            o: observed_over_expected(
                np.stack([r.series[f"health.rate_observed.{o}"] for r in null_runs])[:, reference:],
                np.stack([r.series[f"health.rate_expected.{o}"] for r in null_runs])[:, reference:],
            )
            for o in OUTCOMES
        }
        doc["null_reference"] = reference_null(null_runs, reference)
    for kind in kinds:
        shift = Shift.of(kind, shift_batch, sizes.get(kind))
        started = time.monotonic()
        shifted = run_experiment(dataclasses.replace(config, shift=shift, health=True))
        if on_run is not None:
            on_run(kind, time.monotonic() - started)
        alarm = ALARM_OF[kind]
        delays = first_alarm_delays(_alarm_matrix(shifted.methods[method], alarm), shift_batch)
        fired = [d for d in delays if d is not None]
        other = {
            name: first_alarm_delays(_alarm_matrix(shifted.methods[method], name), shift_batch)
            for name in ALARM_NAMES
            if name != alarm
        }
        doc["kinds"][kind] = {
            "shift": shift.to_json(),
            "alarm": alarm,
            "delays": delays,
            "detected": len(fired),
            "seeds": len(delays),
            "max_delay": max(fired) if fired else None,
            "mean_delay": float(np.mean(fired)) if fired else None,
            "censored_at": config.batches - shift_batch,
            "false_alarms_same_batches": (
                None if null_runs is None else false_alarm_rates(_alarm_matrix(null_runs, alarm), shift_batch)
            ),
            "other_alarm_delays": other,
        }
        ref = REF_ALARM_OF.get(kind)
        if ref is not None:
            runs = shifted.methods[method]
            either = np.maximum(_alarm_matrix(runs, alarm), _alarm_matrix(runs, ref))
            null_either = (
                None
                if null_runs is None
                else np.maximum(_alarm_matrix(null_runs, alarm), _alarm_matrix(null_runs, ref))
            )
            ref_delays = first_alarm_delays(_alarm_matrix(runs, ref), shift_batch)
            either_delays = first_alarm_delays(either, shift_batch)
            doc["kinds"][kind]["reference"] = {
                "alarm": ref,
                "delays": ref_delays,
                "detected": sum(d is not None for d in ref_delays),
                "false_alarms_same_batches": (
                    None if null_runs is None else false_alarm_rates(_alarm_matrix(null_runs, ref), shift_batch)
                ),
                "either_delays": either_delays,
                "either_detected": sum(d is not None for d in either_delays),
                "either_false_alarms_same_batches": (
                    None if null_either is None else false_alarm_rates(null_either, shift_batch)
                ),
                "shifted_reference": reference_null(runs, shift_batch),
            }
    return doc


def table(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """The drift table's rows: kind, size, alarm, delays, detected, false alarms per batch and per run."""
    rows: list[tuple[str, ...]] = []
    for kind, k in doc["kinds"].items():
        fa = k["false_alarms_same_batches"]
        rows.append(
            (
                kind,
                f"{k['shift']['size']:.3g}",
                k["alarm"],
                ", ".join("-" if d is None else str(d) for d in k["delays"]),
                f"{k['detected']}/{k['seeds']}",
                "n/a" if fa is None else f"{fa['per_batch']:.3f} ({int(fa['alarms'])}/{int(fa['batches'])})",
                "n/a" if fa is None else f"{fa['per_run']:.2f}",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the drift measurement and write its JSON (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="The JSON file written.")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="The first experiment seed.")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument(
        "--shift-batch", type=int, default=8, help="The first shifted batch, 0-based (8: the 9th batch)."
    )
    parser.add_argument("--users", type=int, default=EmailWorldConfig().n_users)
    parser.add_argument("--method", default="banditlp")
    parser.add_argument("--variance-draws", type=int, default=0, help="Extra plans per batch (0 is fastest).")
    parser.add_argument("--kinds", default=",".join(SHIFT_KINDS), help="Comma list of the shifts measured.")
    parser.add_argument("--size", action="append", default=[], help="KIND=SIZE (repeatable); default sizes else.")
    parser.add_argument("--no-null", action="store_true", help="Skip the unshifted runs (no false-alarm rates).")
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    sizes = {k: float(v) for k, v in (item.split("=", 1) for item in args.size)}
    import torch

    from evaluation.experiment.config import ExperimentConfig

    torch.set_num_threads(1)
    config = ExperimentConfig(
        world=EmailWorldConfig(n_users=args.users),
        seeds=args.seeds,
        first_seed=args.first_seed,
        batches=args.batches,
        methods=(args.method,),
        baseline=args.method,
        variance_draws=args.variance_draws,
    )
    doc = measure_drift(
        config,
        args.shift_batch,
        sizes,
        kinds,
        on_run=lambda label, s: print(f"{label}: {s:.0f} s", flush=True),
        with_null=not args.no_null,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    for row in table(doc):
        print(" | ".join(row))
    for outcome, r in doc.get("null_observed_over_expected", {}).items():
        print(f"null {outcome}: observed/expected {r['ratio']:.3f} [{r['lower']:.3f}, {r['upper']:.3f}]")
    for outcome, r in doc.get("null_reference", {}).items():
        pooled = r["pooled"]
        print(
            f"null {outcome} against the frozen read-out: {pooled['ratio']:.3f} [{pooled['lower']:.3f}, "
            f"{pooled['upper']:.3f}], R2 {np.round(r['fit_r2'], 2).tolist()}, per batch "
            f"{[None if v is None else round(v, 2) for v in r['per_batch']]}"
        )
    for kind, k in doc["kinds"].items():
        if "reference" in k:
            ref = k["reference"]
            print(f"{kind}: {ref['alarm']} delays {ref['delays']}, either {ref['either_delays']}")


if __name__ == "__main__":
    main()
