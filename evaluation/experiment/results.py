"""``DIR/results.json``: what an experiment measured, per method, seed and batch.

Format (every number finite or ``null``; ``null`` marks a batch without a value, e.g. overlap@K
of the first batch, or a diagnostic a method has no model for)::

    {"config": {...ExperimentConfig.to_json()...},
     "methods": {NAME: {
         "reward": [[per batch] per seed],            # expected reward under the true probabilities
         "oracle_fraction": [[...]],                  # reward / the oracle LP's
         "unsub_usage": [[...]],                      # expected unsubscriptions (true) / budget
         "provider_min_shortfall": [[...]],           # largest relative shortfall below a minimum
         "overlap_at_k": [[...]],                     # top-K items shared with the previous batch
         "allocation_variance": [[...]], "provider_max_excess": [[...]], "oracle_reward": [[...]],
         "unsub_usage_sent": [[...]], "realised_reward": [[...]], "realised_unsubscriptions": [[...]],
         "sends": [[...]], "lp_elastic": [[...]],
         "chosen_unsub": {"true": [[...]], "predicted": [[...]], "calibrated": [[...]], "decision": [[...]]},
         "calibration_error": {"conversion_all": [[...]], "conversion_chosen": [[...]],
                               "unsubscription_all": [[...]], "unsubscription_chosen": [[...]]},
         "version_spread": {"conversion": [[...]], "unsubscription": [[...]]},
         "calibration_curve": {"unsubscription_chosen": {"prob_pred": [[per bin] per seed],
                                                         "prob_true": [[...]]}, ...}}},
     "sweeps": {"tau": {"0.5": {NAME: {measure: [[...]], ...}}, ...},
                "train_rows": {"500": {NAME: {...}}, ...}}}

Dotted measure names of a run (``chosen_unsub.true``) become one level of nesting. A sweep point
holds the same flat and grouped measures as a method of the comparison (no curves). ``sweeps`` is
absent when no sweep ran.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.errors import EvaluationInputError
from evaluation.experiment.runner import ExperimentRun, SeedRun

RESULTS_JSON = "results.json"

#: The measures every method has, in the shape ``[[per batch] per seed]``.
CORE_MEASURES = ("reward", "oracle_fraction", "unsub_usage", "provider_min_shortfall", "overlap_at_k")


def _number(value: float) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _per_seed(runs: list[SeedRun], key: str) -> list[list[float | None]]:
    return [[_number(v) for v in run.series[key]] for run in runs]


def method_document(runs: list[SeedRun], *, curves: bool = True) -> dict[str, Any]:
    """One method's measures (see the module docstring).

    Args:
        runs: One run per seed, in seed order (the same measures in each).
        curves: Include the calibration curves.

    Returns:
        Measure -> per-seed lists, dotted names grouped.
    """
    doc: dict[str, Any] = {}
    for key in runs[0].series:
        group, _, sub = key.partition(".")
        if sub:
            doc.setdefault(group, {})[sub] = _per_seed(runs, key)
        else:
            doc[key] = _per_seed(runs, key)
    names = list(runs[0].curves)
    if curves and names:
        doc["calibration_curve"] = {
            name: {
                "prob_pred": [[_number(v) for v in run.curves[name][0]] for run in runs],
                "prob_true": [[_number(v) for v in run.curves[name][1]] for run in runs],
            }
            for name in names
        }
    return doc


def results_document(run: ExperimentRun) -> dict[str, Any]:
    """The whole ``results.json`` document of an experiment."""
    doc: dict[str, Any] = {
        "config": run.config.to_json(),
        "methods": {name: method_document(runs) for name, runs in run.methods.items()},
    }
    if run.sweeps:
        doc["sweeps"] = {
            sweep: {
                label: {name: method_document(runs, curves=False) for name, runs in per_method.items()}
                for label, per_method in points.items()
            }
            for sweep, points in run.sweeps.items()
        }
    return doc


def write_results(run: ExperimentRun, out_dir: Path) -> Path:
    """Write ``out_dir/results.json`` (the folder is created when missing).

    Returns:
        The file's path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS_JSON
    path.write_text(json.dumps(results_document(run), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def check_results(doc: Any) -> None:
    """Check that a decoded ``results.json`` has the documented shape.

    Every method holds the :data:`CORE_MEASURES` as lists of ``seeds`` lists of ``batches``
    numbers or nulls (``seeds`` and ``batches`` from the config), and every other measure (flat
    or grouped) has the same shape.

    Raises:
        EvaluationInputError: naming the first key out of shape.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict) or not isinstance(doc.get("methods"), dict):
        raise EvaluationInputError("results must be an object with 'config' and 'methods' objects")
    seeds = len(doc["config"].get("seeds", []))
    batches = doc["config"].get("batches")

    def matrix(value: Any, where: str) -> None:
        ok = (
            isinstance(value, list)
            and len(value) == seeds
            and all(
                isinstance(r, list)
                and len(r) == batches
                and all(v is None or (isinstance(v, int | float) and math.isfinite(v)) for v in r)
                for r in value
            )
        )
        if not ok:
            raise EvaluationInputError(f"{where}: expected {seeds} lists of {batches} numbers or nulls")

    def measures(doc_m: Any, where: str, *, core: bool) -> None:
        if not isinstance(doc_m, dict):
            raise EvaluationInputError(f"{where}: expected an object of measures")
        if core:
            for key in CORE_MEASURES:
                if key not in doc_m:
                    raise EvaluationInputError(f"{where}: missing measure {key!r}")
        for key, value in doc_m.items():
            if key == "calibration_curve":
                continue
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    matrix(sub_value, f"{where}.{key}.{sub}")
            else:
                matrix(value, f"{where}.{key}")

    for name, doc_m in doc["methods"].items():
        measures(doc_m, f"methods.{name}", core=True)
    for sweep, points in doc.get("sweeps", {}).items():
        for label, per_method in points.items():
            for name, doc_m in per_method.items():
                measures(doc_m, f"sweeps.{sweep}.{label}.{name}", core=True)


def per_seed_array(doc_measure: list[list[float | None]]) -> np.ndarray:
    """``[[per batch] per seed]`` -> ``(S, B)`` float array, nan for null."""
    return np.array([[math.nan if v is None else v for v in row] for row in doc_measure], dtype=float)
