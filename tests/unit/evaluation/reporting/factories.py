"""Synthetic run directories for the report tests: an experiment's results.json and a demo's files.

The experiment's numbers are shaped like a real run's (methods learn towards the oracle, the
budget usage hovers around 1.0) but come from a seeded generator, not from an experiment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.email_world import EmailWorld, EmailWorldConfig
from evaluation.report import write_plots
from evaluation.run_summary import summarise, summary_rows

METHODS = (
    "banditlp",
    "banditlp_naive_calibration",
    "nn_lp",
    "nnts",
    "linucb_lp",
    "random_lp",
    "oracle_lp",
)

# (final share of the oracle's reward, mean budget usage, learning speed) per method.
_SHAPE = {
    "banditlp": (0.88, 0.97, 0.35),
    "banditlp_naive_calibration": (0.9, 1.12, 0.35),
    "nn_lp": (0.8, 1.0, 0.25),
    "nnts": (0.93, 1.6, 0.3),
    "linucb_lp": (0.7, 0.99, 0.2),
    "random_lp": (0.45, 0.95, 0.0),
    "oracle_lp": (1.0, 1.0, 1.0),
}


def experiment_document(
    *,
    seeds: int = 5,
    batches: int = 20,
    methods: tuple[str, ...] = METHODS,
    calibration: bool = True,
    sweep: bool = True,
    extra_series: bool = True,
    rng_seed: int = 0,
) -> dict[str, Any]:
    """A results.json document: every method's per-seed, per-batch measures, and optionally a τ sweep."""
    rng = np.random.default_rng(rng_seed)
    oracle = 100.0 + rng.normal(0.0, 5.0, size=(seeds, batches))
    document: dict[str, Any] = {
        "config": {"world": "email", "seeds": seeds, "batches": batches, "users": 300, "tau": [1.0]},
        "methods": {},
    }
    steps = np.arange(1, batches + 1)
    for index, name in enumerate(methods):
        final, usage, speed = _SHAPE.get(name, (0.6 + 0.05 * index, 1.0, 0.3))
        learned = final - (final - 0.45) * np.exp(-speed * (steps - 1)) if speed else np.full(batches, final)
        fraction = np.clip(learned + rng.normal(0.0, 0.02, size=(seeds, batches)), 0.0, 1.2)
        noise = rng.normal(0.0, 0.03, size=(seeds, batches))
        if name == "oracle_lp":  # the oracle solves the true LP: full reward, the budget exactly
            fraction, noise = np.ones((seeds, batches)), np.zeros((seeds, batches))
        measures: dict[str, Any] = {
            "reward": (oracle * fraction).tolist(),
            "oracle_fraction": fraction.tolist(),
            "unsub_usage": (usage + noise).tolist(),
            # LP methods keep provider minimums; nnts has no provider constraints and misses them.
            "provider_min_shortfall": (
                np.clip(rng.normal(0.1, 0.05, size=(seeds, batches)), 0.0, None)
                if name == "nnts"
                else np.zeros((seeds, batches))
            ).tolist(),
            "overlap_at_k": np.clip(
                0.3 + 0.5 * (1 - np.exp(-0.2 * steps)) + rng.normal(0, 0.03, (seeds, batches)), 0, 1
            ).tolist(),
        }
        if calibration and name != "oracle_lp":
            measures["calibration_error"] = {
                "unsub": np.abs(rng.normal(0.004, 0.001, size=(seeds, batches))).tolist(),
                "conversion": np.abs(rng.normal(0.01, 0.003, size=(seeds, batches))).tolist(),
            }
            bins = np.linspace(0.005, 0.095, 10)
            measures["calibration_curve"] = {
                "unsub": {"predicted": bins.tolist(), "observed": (bins * (1.0 + 0.1 * index)).tolist()}
            }
        if extra_series:
            measures["allocation_variance"] = np.abs(rng.normal(0.05, 0.01, size=(seeds, batches))).tolist()
        document["methods"][name] = measures
    if sweep:
        document["tau_sweep"] = {
            str(tau): {
                name: {"reward": 1800.0 + 50 * tau * (i + 1), "unsub_usage": 0.9 + 0.05 * tau * (i + 1)}
                for i, name in enumerate(methods[:3])
            }
            for tau in (0.25, 0.5, 1.0, 2.0)
        }
    return document


def write_experiment(run_dir: Path, **options: Any) -> Path:
    """Write ``run_dir/results.json`` from :func:`experiment_document` and return ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(experiment_document(**options)))
    return run_dir


def write_demo(run_dir: Path, batches: int = 4) -> Path:
    """Write a demo's ``summary.json`` and PNG plots into ``run_dir`` as ``banditlp demo`` does."""
    world = EmailWorld(EmailWorldConfig(n_users=40, n_items=12, n_providers=3, candidates_per_user=4, seed=4))
    rng = np.random.default_rng(1)
    outcomes = []
    for batch_index in range(batches):
        batch = world.candidates(batch_index)
        x = world.greedy(batch).x if batch_index % 2 else world.oracle(batch).x
        outcomes.append(world.batch_outcome(batch, x, rng, mean_entropy=0.2, mean_posterior_std=0.1))
    write_plots(outcomes, run_dir)
    (run_dir / "summary.json").write_text(json.dumps(dict(summary_rows(summarise(outcomes))), indent=2))
    return run_dir
