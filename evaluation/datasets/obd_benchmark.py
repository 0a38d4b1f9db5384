"""Benchmark "BTS from random logs": estimate Bernoulli Thompson sampling from the uniform log.

The Open Bandit Dataset logged the same campaigns under two policies, so the value of one is
observed directly and can be estimated off-policy from the other (Saito et al. 2021, Sec. 5).
For each campaign (all, men, women), every estimator of ``evaluation.ope`` estimates the click
rate of ``bts`` (ZOZOTOWN's prior, its action distribution by Monte Carlo) from the ``random``
log, with a 95% bootstrap interval, beside the click rate the ``bts`` log observed and the
relative error ``|estimate - observed| / observed``. As a check of the whole chain, the same
estimators estimate ``uniform`` (the random log's own policy) against the random log's click rate.

Open Bandit Pipeline published the mean relative error of the same experiment on the ``all``
campaign over 30 bootstrap resamples of the random log, the outcome model refitted on each
(:data:`OBP_PUBLISHED_RELATIVE_ERROR`). ``--resamples`` repeats that protocol here, so that the
comparison is like for like; the full-log estimates alone are one draw of it.

Reading the intervals: ``evaluate`` resamples rounds with the click model held fixed, so DM's
interval (a percent or two of the click rate wide) shows the spread of contexts, not the error of
the model fitted on ~40 clicks; the model-based estimators' intervals are conditional on it.
Switch-DR and DRos run at ``evaluation.ope``'s default thresholds, not tuned per log as Open
Bandit Pipeline's SLOPE does.

Command line::

    python -m evaluation.datasets.obd_benchmark --cache ~/.cache/banditlp/obd --out DIR

writes ``DIR/obd.json`` and ``DIR/obd_table.txt`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.stats import norm

from banditlp.arrays import FloatArray
from evaluation.datasets.bts import bts_action_dist, load_bts_prior, uniform_action_dist
from evaluation.datasets.errors import DatasetError
from evaluation.datasets.obd import CLICK, Campaign, OBDLog, load_obd, obd_logged_pairs, obd_target
from evaluation.datasets.obd_fetch import CAMPAIGNS, fetch_obd
from evaluation.datasets.obd_model import DEFAULT_C, DEFAULT_FOLDS, cross_fit_click_model
from evaluation.errors import EvaluationError
from evaluation.ope.bootstrap import Estimate, evaluate
from evaluation.ope.estimators import ESTIMATORS

#: Estimators compared, in the order of the tables (``evaluation.ope``'s registry names).
ESTIMATOR_NAMES = ("ips", "snips", "dm", "dr", "switch_dr", "dros")

#: Open Bandit Pipeline's mean relative estimation error of BTS estimated from the random log,
#: campaign ``all``, small-sized sample, 30 bootstrap resamples, logistic regression (C = 100)
#: cross-fitted over 3 folds, Switch-DR and DRos tuned by SLOPE over lambda in {10, ..., inf}.
#: Source: st-tech/zr-obp, ``examples/obd/README.md`` (commit 8cbd5fa, 2022), the output of
#: ``evaluate_off_policy_estimators.py --n_runs 30 --base_model logistic_regression
#: --evaluation_policy bts --behavior_policy random --campaign all``; OBP's names ipw, snipw,
#: switch-dr and dr-os are ours ips, snips, switch_dr and dros.
OBP_PUBLISHED_RELATIVE_ERROR: dict[str, float] = {
    "ips": 0.311082,
    "snips": 0.311795,
    "dm": 0.156876,
    "dr": 0.292464,
    "switch_dr": 0.258410,
    "dros": 0.159520,
}
OBP_PUBLISHED_SOURCE = (
    "st-tech/zr-obp examples/obd/README.md @ 8cbd5fa: BTS from random, campaign all, "
    "mean relative error over 30 bootstrap resamples"
)


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    """Settings of one benchmark run; the same settings give the same numbers.

    Attributes:
        n_sim: Monte Carlo simulations of BTS's action distribution.
        n_bootstrap: Bootstrap resamples behind each interval.
        alpha: Intervals at level ``1 - alpha``.
        seed: Seed of the simulations, the folds and the resamples.
        resamples: Bootstrap resamples of the random log in the repeat of Open Bandit
            Pipeline's protocol (the model refitted on each); 0 skips it.
        n_folds: Folds of the click model's cross-fitting.
        C: Inverse L2 strength of the click model.
    """

    n_sim: int = 100_000
    n_bootstrap: int = 500
    alpha: float = 0.05
    seed: int = 0
    resamples: int = 30
    n_folds: int = DEFAULT_FOLDS
    C: float = DEFAULT_C


def _wilson(clicks: float, n: int, alpha: float) -> tuple[float, float]:
    """Wilson score interval of a click rate (its sampling noise: the truth is itself a sample)."""
    z = float(norm.ppf(1 - alpha / 2))
    p = clicks / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _relative_error(value: float, observed: float) -> float:
    return abs(value - observed) / observed


def _estimates_json(estimates: dict[str, Estimate], observed: float) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "value": e.value,
            "ci": list(e.ci),
            "relative_error": _relative_error(e.value, observed),
            "ci_contains_observed": bool(e.ci[0] <= observed <= e.ci[1]),
        }
        for name, e in estimates.items()
    }


def _point_estimates(log: OBDLog, action_dist: FloatArray, config: BenchmarkConfig, seed: int) -> dict[str, float]:
    """Every estimator's value on ``log`` with a click model fitted on it (no interval)."""
    logged = obd_logged_pairs(log)
    target = obd_target(log, action_dist)
    predicted = {CLICK: cross_fit_click_model(log, n_folds=config.n_folds, C=config.C, seed=seed).ravel()}
    return {name: ESTIMATORS[name]().estimate(logged, target, predicted, outcome=CLICK) for name in ESTIMATOR_NAMES}


def run_campaign(root: Path, campaign: Campaign, config: BenchmarkConfig) -> dict[str, Any]:
    """One campaign: BTS and uniform estimated from the random log, against the observed rates.

    Returns:
        A JSON-ready mapping: sizes, the observed click rates with Wilson intervals, each
        estimator's estimate, interval and relative error for ``bts`` and ``uniform``, and the
        resampling protocol's mean and std of relative errors (when ``config.resamples > 0``).
    """
    random_log = load_obd(root, "random", campaign)
    bts_log = load_obd(root, "bts", campaign)
    dist = {
        "bts": bts_action_dist(
            load_bts_prior(root, campaign), random_log.len_list, n_sim=config.n_sim, seed=config.seed
        ),
        "uniform": uniform_action_dist(random_log.n_actions, random_log.len_list),
    }
    observed_log = {"bts": bts_log, "uniform": random_log}
    logged = obd_logged_pairs(random_log)
    predicted = cross_fit_click_model(random_log, n_folds=config.n_folds, C=config.C, seed=config.seed).ravel()
    out: dict[str, Any] = {"n_rounds": random_log.n_rounds, "n_actions": random_log.n_actions, "policies": {}}
    for policy, action_dist in dist.items():
        truth = observed_log[policy]
        observed = float(truth.reward.mean())
        estimates = evaluate(
            logged,
            obd_target(random_log, action_dist),
            {CLICK: predicted},
            estimators=ESTIMATOR_NAMES,
            n_bootstrap=config.n_bootstrap,
            alpha=config.alpha,
            seed=config.seed,
        )[CLICK]
        out["policies"][policy] = {
            "observed": {
                "value": observed,
                "ci": list(_wilson(float(truth.reward.sum()), truth.n_rounds, config.alpha)),
                "log": f"{truth.behavior}/{campaign}",
            },
            "estimates": _estimates_json(estimates, observed),
        }
    if config.resamples > 0:
        observed = float(bts_log.reward.mean())
        rng = np.random.default_rng(config.seed)
        errors = np.array(
            [
                [
                    _relative_error(v, observed)
                    for v in _point_estimates(
                        random_log.take(rng.integers(0, random_log.n_rounds, random_log.n_rounds)),
                        dist["bts"],
                        config,
                        config.seed + run,
                    ).values()
                ]
                for run in range(config.resamples)
            ]
        )
        out["policies"]["bts"]["resampled_relative_error"] = {
            name: {"mean": float(errors[:, j].mean()), "std": float(errors[:, j].std(ddof=1))}
            for j, name in enumerate(ESTIMATOR_NAMES)
        }
    return out


def run_benchmark(root: Path, config: BenchmarkConfig) -> dict[str, Any]:
    """All three campaigns and the means of their relative errors: the ``obd.json`` document."""
    campaigns = {campaign: run_campaign(root, campaign, config) for campaign in CAMPAIGNS}
    mean: dict[str, dict[str, float]] = {}
    for policy in ("bts", "uniform"):
        mean[policy] = {
            name: float(
                np.mean([c["policies"][policy]["estimates"][name]["relative_error"] for c in campaigns.values()])
            )
            for name in ESTIMATOR_NAMES
        }
    doc: dict[str, Any] = {
        "benchmark": "bts from random logs (Open Bandit Dataset sample, obp 0.5.7)",
        "config": asdict(config),
        "estimators": {name: repr(ESTIMATORS[name]()) for name in ESTIMATOR_NAMES},
        "campaigns": campaigns,
        "mean_relative_error": mean,
        "obp_published": {"source": OBP_PUBLISHED_SOURCE, "relative_error": OBP_PUBLISHED_RELATIVE_ERROR},
    }
    if config.resamples > 0:
        doc["mean_resampled_relative_error"] = {
            name: float(
                np.mean([c["policies"]["bts"]["resampled_relative_error"][name]["mean"] for c in campaigns.values()])
            )
            for name in ESTIMATOR_NAMES
        }
    return doc


def _interval(entry: dict[str, Any]) -> str:
    low, high = entry["ci"]
    return f"{entry['value']:.5f} [{low:.5f}, {high:.5f}]"


def tables(doc: dict[str, Any]) -> list[Table]:
    """The benchmark's tables: BTS from the random logs, then the uniform check."""
    campaigns = doc["campaigns"]
    resampled = "mean_resampled_relative_error" in doc
    bts = Table(title="BTS estimated from the random logs: click rate [95% CI], relative error to the BTS logs")
    bts.add_column("estimator")
    for campaign in campaigns:
        bts.add_column(campaign, justify="right")
        bts.add_column("rel. err", justify="right")
    bts.add_column("mean rel. err", justify="right")
    if resampled:
        bts.add_column(f"resampled ×{doc['config']['resamples']}: all / mean", justify="right")
    bts.add_column("OBP published (all)", justify="right")
    observed_row = ["observed (bts logs)"]
    for c in campaigns.values():
        observed_row += [_interval(c["policies"]["bts"]["observed"]), ""]
    bts.add_row(*observed_row, "", *([""] if resampled else []), "", end_section=True)
    for name in ESTIMATOR_NAMES:
        row = [name]
        for c in campaigns.values():
            entry = c["policies"]["bts"]["estimates"][name]
            row += [_interval(entry), f"{entry['relative_error']:.3f}"]
        row.append(f"{doc['mean_relative_error']['bts'][name]:.3f}")
        if resampled:
            all_mean = campaigns["all"]["policies"]["bts"]["resampled_relative_error"][name]["mean"]
            row.append(f"{all_mean:.3f} / {doc['mean_resampled_relative_error'][name]:.3f}")
        row.append(f"{doc['obp_published']['relative_error'][name]:.3f}")
        bts.add_row(*row)

    uniform = Table(title="Uniform estimated from its own random logs: click rate [95% CI], relative error")
    uniform.add_column("estimator")
    for campaign in campaigns:
        uniform.add_column(campaign, justify="right")
        uniform.add_column("rel. err", justify="right")
    observed_row = ["observed (random logs)"]
    for c in campaigns.values():
        observed_row += [_interval(c["policies"]["uniform"]["observed"]), ""]
    uniform.add_row(*observed_row, end_section=True)
    for name in ESTIMATOR_NAMES:
        row = [name]
        for c in campaigns.values():
            entry = c["policies"]["uniform"]["estimates"][name]
            mark = "" if entry["ci_contains_observed"] else " (CI misses)"
            row += [_interval(entry), f"{entry['relative_error']:.3f}{mark}"]
        uniform.add_row(*row)
    return [bts, uniform]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evaluation.datasets.obd_benchmark --cache DIR --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.datasets.obd_benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cache", type=Path, required=True, help="cache folder of the dataset (fetched when missing)")
    parser.add_argument("--out", type=Path, required=True, help="folder for obd.json and obd_table.txt")
    defaults = BenchmarkConfig()
    parser.add_argument("--n-sim", type=int, default=defaults.n_sim)
    parser.add_argument("--n-bootstrap", type=int, default=defaults.n_bootstrap)
    parser.add_argument("--resamples", type=int, default=defaults.resamples)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    config = BenchmarkConfig(n_sim=args.n_sim, n_bootstrap=args.n_bootstrap, resamples=args.resamples, seed=args.seed)
    try:
        doc = run_benchmark(fetch_obd(args.cache), config)
    except (DatasetError, EvaluationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console(record=True, width=240)
    for table in tables(doc):
        console.print(table)
    console.print(f"OBP published: {OBP_PUBLISHED_SOURCE}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "obd.json").write_text(json.dumps(doc, indent=2) + "\n")
        (args.out / "obd_table.txt").write_text(console.export_text())
    except OSError as exc:
        print(f"error: cannot write to {args.out}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
