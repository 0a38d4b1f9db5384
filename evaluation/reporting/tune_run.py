"""A live tuning run's directory (``banditlp tune --live|--publish --out DIR``), read into report sections.

``DIR/tune-live.json`` (written by ``streams.tune.run_log``) holds one entry per step of the tuner job:
the distribution in force after it (arms, knob values, probabilities), the version it published (null:
nothing), and the per-arm metrics of the windows that counted. The page shows the published versions,
the distribution over the steps (one panel per knob: each arm a dot of area proportional to its
probability, the probability-weighted mean as a line), each arm's reward and unsubscriptions per send
over the steps (the guardrail as a line), and the last step's per-arm metrics as a table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from evaluation.reporting.errors import ReportInputError
from evaluation.reporting.html_page import Cell, Plot, Section, Table
from evaluation.reporting.json_values import json_kind
from evaluation.reporting.plotting import BOUND_COLOUR, MethodStyles, new_figure, png_bytes

TUNE_LIVE_JSON = "tune-live.json"
#: The per-arm metric fields of a step, in the table's order, and their headers.
METRICS = {
    "n_feedback": "feedback",
    "reward_per_send": "reward / send",
    "unsubscriptions_per_send": "unsubs / send",
    "decisions": "decisions",
    "sends": "sends",
    "overlap_at_k": "overlap@K",
    "allocation_variance": "alloc. variance",
    "windows": "windows",
}
#: Knob panels drawn at most.
MAX_KNOB_PANELS = 3


@dataclass(frozen=True)
class TuneStep:
    """One step: the distribution in force after it and the per-arm metrics it saw.

    Attributes:
        arms: ``arm_id -> (knob values, probability)``.
        metrics: ``arm_id -> {field: value}`` (NaN where nothing was measured).
    """

    step: int
    at_ms: int
    version: int | None
    arms: dict[str, tuple[dict[str, float], float]]
    metrics: dict[str, dict[str, float]]


@dataclass(frozen=True)
class TuneRun:
    """``tune-live.json`` as typed values."""

    experiment: str
    knobs: tuple[tuple[str, float, float], ...]
    windows: int | None
    max_unsubscription_rate: float | None
    steps: tuple[TuneStep, ...]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportInputError(f"{where} must be an object, got {json_kind(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ReportInputError(f"{where} must be a list, got {json_kind(value)}")
    return value


def _number(value: Any, where: str, allow_null: bool = True) -> float:
    if value is None and allow_null:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportInputError(f"{where} must be a number, got {json_kind(value)} {value!r:.40}")
    return float(value)


def _step(entry: Any, where: str) -> TuneStep:
    entry = _mapping(entry, where)
    arms: dict[str, tuple[dict[str, float], float]] = {}
    for k, a in enumerate(_list(entry.get("arms", []), f"{where}.arms")):
        a = _mapping(a, f"{where}.arms[{k}]")
        params = _mapping(a.get("parameters", {}), f"{where}.arms[{k}].parameters")
        arms[str(a.get("arm_id"))] = (
            {str(n): _number(v, f"{where}.arms[{k}].parameters.{n}", False) for n, v in params.items()},
            _number(a.get("probability"), f"{where}.arms[{k}].probability", False),
        )
    metrics: dict[str, dict[str, float]] = {}
    for k, m in enumerate(_list(entry.get("metrics", []), f"{where}.metrics")):
        m = _mapping(m, f"{where}.metrics[{k}]")
        metrics[str(m.get("arm_id"))] = {f: _number(m.get(f), f"{where}.metrics[{k}].{f}") for f in METRICS}
    version = entry.get("version")
    return TuneStep(
        step=int(_number(entry.get("step"), f"{where}.step", False)),
        at_ms=int(_number(entry.get("at_ms", 0), f"{where}.at_ms", False)),
        version=None if version is None else int(_number(version, f"{where}.version", False)),
        arms=arms,
        metrics=metrics,
    )


def load_tune_run(path: Path) -> TuneRun:
    """Read a tuning run's ``tune-live.json``.

    Raises:
        ReportInputError: it cannot be read, is not JSON, or breaks the layout (the message names where).
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: cannot read it: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    document = _mapping(document, str(path))
    steps = _list(document.get("steps"), f"{path}: steps")
    if not steps:
        raise ReportInputError(f"{path}: steps is empty")
    knobs = []
    for k, knob in enumerate(_list(document.get("knobs", []), f"{path}: knobs")):
        knob = _list(knob, f"{path}: knobs[{k}]")
        if len(knob) != 3:
            raise ReportInputError(f"{path}: knobs[{k}] must be [name, lo, hi]")
        knobs.append(
            (str(knob[0]), _number(knob[1], f"{path}: knobs[{k}][1]"), _number(knob[2], f"{path}: knobs[{k}][2]"))
        )
    windows = document.get("windows")
    rate = document.get("max_unsubscription_rate")
    return TuneRun(
        experiment=str(document.get("experiment", "")),
        knobs=tuple(knobs),
        windows=None if windows is None else int(_number(windows, f"{path}: windows", False)),
        max_unsubscription_rate=None if rate is None else _number(rate, f"{path}: max_unsubscription_rate", False),
        steps=tuple(_step(s, f"{path}: steps[{k}]") for k, s in enumerate(steps)),
    )


def _fmt(value: float, digits: int = 4) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}g}"


def _knob_text(params: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in sorted(params.items())) or "—"


def _when(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if at_ms else "—"


def _distribution_plot(run: TuneRun) -> Plot | None:
    names = [k for k, _, _ in run.knobs] or sorted({n for s in run.steps for p, _ in s.arms.values() for n in p})
    names = names[:MAX_KNOB_PANELS]
    if not names:
        return None
    figure = new_figure(7.5, 2.6 * len(names))
    for row, name in enumerate(names):
        ax = figure.add_subplot(len(names), 1, row + 1)
        xs, ys, sizes, mean_x, mean_y = [], [], [], [], []
        for s in run.steps:
            weighted = [(p[name], q) for p, q in s.arms.values() if name in p]
            for value, q in weighted:
                xs.append(s.step)
                ys.append(value)
                sizes.append(20 + 400 * q)
            total = sum(q for _, q in weighted)
            if total > 0:
                mean_x.append(s.step)
                mean_y.append(sum(v * q for v, q in weighted) / total)
        ax.scatter(xs, ys, s=sizes, alpha=0.45, color="#1f77b4", label="arm (area ∝ probability)")
        ax.plot(mean_x, mean_y, color="#ff7f0e", marker=".", label="probability-weighted mean")
        ax.set_ylabel(name)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best", fontsize=8)
    return Plot(
        png_bytes(figure),
        "the parameter distribution over the tuner's steps",
        "Each step's distribution in force: every arm a dot at its knob value, of area proportional to its "
        "probability; the line is the probability-weighted mean.",
    )


def _metrics_plot(run: TuneRun) -> Plot | None:
    arms = sorted({a for s in run.steps for a in s.metrics})
    if not arms:
        return None
    styles = MethodStyles(arms)
    figure = new_figure(7.5, 5.0)
    for row, (field, label) in enumerate(
        (("reward_per_send", "reward per send"), ("unsubscriptions_per_send", "unsubscriptions per send"))
    ):
        ax = figure.add_subplot(2, 1, row + 1)
        for arm in arms:
            points = [(s.step, s.metrics[arm][field]) for s in run.steps if arm in s.metrics]
            points = [(x, y) for x, y in points if math.isfinite(y)]
            if points:
                x, y = np.array(points).T
                ax.plot(x, y, marker="o", color=styles.colour(arm), label=arm)
        if field == "unsubscriptions_per_send" and run.max_unsubscription_rate is not None:
            ax.axhline(run.max_unsubscription_rate, color=BOUND_COLOUR, linestyle="--", label="guardrail")
        ax.set_ylabel(label)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(arms) <= 10:
            ax.legend(loc="best", fontsize=7)
    return Plot(
        png_bytes(figure),
        "per-arm reward and unsubscriptions per send over the steps",
        "Each arm's sums over the windows that counted at the step (the tune-metrics app's windows).",
    )


def tune_run_sections(run_dir: Path) -> list[Section]:
    """The report sections of a tuning run's directory.

    Raises:
        ReportInputError: ``tune-live.json`` is malformed.
    """
    run = load_tune_run(run_dir / TUNE_LIVE_JSON)
    published = [s for s in run.steps if s.version is not None]
    intro = (
        f"Experiment {run.experiment!r}: {len(run.steps)} steps, {len(published)} published versions"
        + (f"; knobs {', '.join(f'{n} in [{lo:g}, {hi:g}]' for n, lo, hi in run.knobs)}" if run.knobs else "")
        + (f"; the newest {run.windows} windows count" if run.windows is not None else "")
        + (
            f"; guardrail: unsubscriptions per send <= {run.max_unsubscription_rate:g}"
            if run.max_unsubscription_rate is not None
            else ""
        )
        + "."
    )
    rows = []
    for s in run.steps:
        best = max(s.arms.items(), key=lambda kv: kv[1][1], default=None)
        rows.append(
            (
                Cell(str(s.step), "num"),
                _when(s.at_ms),
                Cell("—" if s.version is None else str(s.version), "num"),
                Cell(str(len(s.arms)), "num"),
                "—" if best is None else best[0],
                "—" if best is None else _knob_text(best[1][0]),
                Cell("—" if best is None else f"{best[1][1]:.3f}", "num"),
            )
        )
    versions = Table(
        ("step", "at (UTC)", "published version", "arms", "most probable arm", "its knobs", "p"),
        tuple(rows),
        caption="Steps and the versions they published (— : too few observations, nothing published)",
    )
    plots = tuple(p for p in (_distribution_plot(run),) if p is not None)
    sections = [Section("tune", "Tuning run", (intro,), plots, (versions,))]
    last = run.steps[-1]
    if any(s.metrics for s in run.steps):
        guard = run.max_unsubscription_rate
        metric_rows = []
        for arm, m in sorted(last.metrics.items()):
            params, p = last.arms.get(arm, ({}, math.nan))
            cells: list[Cell | str] = [arm, _knob_text(params), Cell(_fmt(p, 3), "num")]
            for f in METRICS:
                bad = f == "unsubscriptions_per_send" and guard is not None and m[f] > guard
                cells.append(Cell(_fmt(m[f]), "num bad" if bad else "num"))
            metric_rows.append(tuple(cells))
        table = Table(
            ("arm", "knobs", "p", *METRICS.values()),
            tuple(metric_rows),
            caption=f"Per-arm metrics at the last step ({last.step})",
            note="Per send of feedback; overlap@K is the mean over users decided twice in a row under the arm; "
            "allocation variance is the mean p(1 - p) per candidate. Red: over the guardrail.",
        )
        plot = _metrics_plot(run)
        sections.append(Section("tune-metrics", "Per-arm metrics", (), (plot,) if plot is not None else (), (table,)))
    return sections
