"""An experiment's batch health on disk: ``health.json`` (every metric and alarm of every batch)
and ``health.png`` (the alarm statistics against their thresholds, per seed).

``health.json``::

    {"shift": {"kind", "batch", "size"} | null,
     "thresholds": {...HealthThresholds...},
     "methods": {NAME: [{"seed": s, "batches": [{"batch": b, "values": {metric: number | null},
                                                 "alarms": [{"name", "batch", "value", "threshold"}]}]}]}}
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.health.alarms import HealthThresholds
from evaluation.health.monitor import BatchHealth
from evaluation.health.shift import Shift

HEALTH_JSON = "health.json"
HEALTH_PNG = "health.png"

# (metric, title, the threshold drawn: a HealthThresholds key, a per-batch value, or None)
_PANELS = (
    ("feature_psi_max", "feature PSI (max over features)", "psi"),
    ("prediction_shift_psi.conversion", "prediction PSI (batch model), conversion", "prediction_psi"),
    ("rate_cusum.conversion", "rate LLR CUSUM, conversion", "rate_h.conversion"),
    ("rate_cusum.unsubscription", "rate LLR CUSUM, unsubscription", "rate_h.unsubscription"),
    ("rate_ref_cusum.conversion", "rate LLR CUSUM vs frozen read-out, conversion", "rate_ref_h.conversion"),
    ("rate_ref_cusum.unsubscription", "rate LLR CUSUM vs frozen read-out, unsubscription", "rate_ref_h.unsubscription"),
    ("ece.conversion", "ECE, conversion (last N)", None),
    ("ece.unsubscription", "ECE, unsubscription (last N)", None),
    ("selection_entropy", "selection entropy (nats)", None),
    ("item_coverage", "item coverage", None),
    ("overlap_at_k", "overlap@K (per user)", None),
    ("allocation_variance", "allocation variance", None),
)


def _number(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def health_document(
    per_method: dict[str, list[list[BatchHealth]]],
    seeds: tuple[int, ...],
    shift: Shift | None,
    thresholds: HealthThresholds,
) -> dict[str, Any]:
    """The ``health.json`` document (see the module docstring)."""
    return {
        "shift": None if shift is None else shift.to_json(),
        "thresholds": dataclasses.asdict(thresholds),
        "methods": {
            name: [
                {
                    "seed": seed,
                    "batches": [
                        {
                            "batch": h.batch,
                            "values": {k: _number(v) for k, v in h.values.items()},
                            "alarms": [dataclasses.asdict(a) for a in h.alarms],
                        }
                        for h in run
                    ],
                }
                for seed, run in zip(seeds, runs)
            ]
            for name, runs in per_method.items()
        },
    }


def write_health(
    per_method: dict[str, list[list[BatchHealth]]],
    seeds: tuple[int, ...],
    shift: Shift | None,
    out_dir: Path,
    thresholds: HealthThresholds | None = None,
) -> tuple[Path, Path]:
    """Write ``health.json`` and ``health.png`` into ``out_dir``; returns their paths."""
    t = thresholds or HealthThresholds()
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = health_document(per_method, seeds, shift, t)
    json_path = out_dir / HEALTH_JSON
    json_path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    png_path = out_dir / HEALTH_PNG
    plot_health(per_method, shift, t, png_path)
    return json_path, png_path


def plot_health(
    per_method: dict[str, list[list[BatchHealth]]], shift: Shift | None, thresholds: HealthThresholds, path: Path
) -> None:
    """One panel per alarm statistic: one line per method and seed, the threshold dashed, the
    shift's batch dotted, and a cross on each batch where the panel's alarm fired."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limits = {"psi": thresholds.psi, "prediction_psi": thresholds.prediction_psi}
    columns = 2
    rows = math.ceil(len(_PANELS) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(11.2, 2.6 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, title, limit) in zip(axes.flat, _PANELS):
        for m, (name, runs) in enumerate(per_method.items()):
            for s, run in enumerate(runs):
                b = np.array([h.batch for h in run]) + 1
                v = np.array([h.values.get(metric, math.nan) for h in run], dtype=float)
                ax.plot(b, v, color=colours[m % len(colours)], alpha=0.7, linewidth=1.0, label=name if s == 0 else None)
                fired = [h.batch + 1 for h in run if any(_panel_alarm(a.name, metric) for a in h.alarms)]
                if fired:
                    ax.plot(fired, v[np.array(fired) - int(b[0])], "x", color="#d62728", markersize=5)
        if limit in limits:
            ax.axhline(limits[limit], color="#000000", linestyle="--", linewidth=0.8)
        elif limit is not None:  # solved per run: each run's own threshold
            for runs in per_method.values():
                for run in runs:
                    hs = [h.values.get(limit, math.nan) for h in run]
                    if any(math.isfinite(v) for v in hs):
                        ax.plot(
                            np.array([h.batch for h in run]) + 1, hs, color="#000000", linestyle="--", linewidth=0.6
                        )
        if shift is not None:
            ax.axvline(shift.batch + 1, color="#7f7f7f", linestyle=":", linewidth=1.0)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(_PANELS) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8, loc="upper left")
    label = "no shift" if shift is None else f"shift: {shift.kind} {shift.size:.3g} from batch {shift.batch + 1}"
    figure.suptitle(f"Batch health ({label}); dashed: alarm threshold, x: alarm", fontsize=10)
    figure.supxlabel("batch", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _panel_alarm(alarm: str, metric: str) -> bool:
    # The alarm a panel's statistic raises.
    return {
        "feature_psi_max": alarm == "feature_drift",
        "prediction_shift_psi.conversion": alarm == "prediction_drift.conversion",
        "rate_cusum.conversion": alarm == "rate_shift.conversion",
        "rate_cusum.unsubscription": alarm == "rate_shift.unsubscription",
        "rate_ref_cusum.conversion": alarm == "rate_shift_ref.conversion",
        "rate_ref_cusum.unsubscription": alarm == "rate_shift_ref.unsubscription",
        "ece.conversion": alarm == "calibration.conversion",
        "ece.unsubscription": alarm == "calibration.unsubscription",
        "selection_entropy": alarm == "entropy_collapse",
        "item_coverage": alarm == "coverage_collapse",
        "overlap_at_k": alarm == "overlap_collapse",
        "allocation_variance": alarm == "variance_collapse",
    }.get(metric, False)
