"""A demo's run directory, read into report sections: its summary table and its plots.

``banditlp demo`` (``streams.cli.demo.report_run``) writes ``summary.json`` (measure -> formatted
value, from ``evaluation.run_summary.summary_rows``) and the PNG plots of
``evaluation.report.write_plots`` into the run directory. The plots are embedded as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.report import CUMULATIVE_REWARD_PNG, EXPLORATION_PNG, PROVIDER_EXPOSURE_PNG, UNSUB_BUDGET_PNG
from evaluation.reporting.errors import ReportInputError
from evaluation.reporting.html_page import PNG_SIGNATURE, Plot, Section, Table
from evaluation.reporting.json_values import json_kind

SUMMARY_JSON = "summary.json"

# The demo's plots: file -> (anchor, title, what it shows).
_KNOWN_PLOTS = {
    CUMULATIVE_REWARD_PNG: (
        "demo-reward",
        "Reward",
        "Cumulative expected reward of the policy and of the oracle LP (which knows the true probabilities), "
        "the realised reward, and the cumulative regret.",
    ),
    UNSUB_BUDGET_PNG: (
        "demo-unsub-budget",
        "Unsubscription budget",
        "Expected unsubscriptions under the true probabilities divided by the budget, per batch; above the "
        "dashed line at 1.0 the batch is over budget.",
    ),
    PROVIDER_EXPOSURE_PNG: (
        "demo-provider-exposure",
        "Provider exposure",
        "The worst provider's exposure against its minimum (and maximum) per batch; below 1.0 a minimum is missed.",
    ),
    EXPLORATION_PNG: (
        "demo-exploration",
        "Exploration",
        "Distinct items sent per batch, and the policy's mean selection entropy and posterior std where reported.",
    ),
}


def load_summary(path: Path) -> dict[str, str]:
    """Read a demo's ``summary.json``.

    Args:
        path: The file.

    Returns:
        Measure -> value, in the file's order (values as text).

    Raises:
        ReportInputError: if it cannot be read, is not JSON, or is not an object.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: cannot read it: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(document, dict):
        raise ReportInputError(f"{path}: expected a JSON object (measure -> value), got {json_kind(document)}")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in document.items()}


def read_png(path: Path) -> bytes:
    """The bytes of a PNG file.

    Raises:
        ReportInputError: if it cannot be read or is not a PNG.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read it: {exc}") from exc
    if not data.startswith(PNG_SIGNATURE):
        raise ReportInputError(f"{path}: not a PNG image (its first bytes are {data[:8]!r})")
    return data


def demo_sections(run_dir: Path) -> list[Section]:
    """The summary table and one section per plot of a demo's run directory.

    Args:
        run_dir: A directory holding ``summary.json`` (and usually the PNG plots).

    Returns:
        The summary section, then the known plots in the demo's order, then any other PNGs.

    Raises:
        ReportInputError: if ``summary.json`` or a PNG is malformed.
    """
    summary = load_summary(run_dir / SUMMARY_JSON)
    table = Table(
        header=("measure", "value"),
        rows=tuple((measure, value) for measure, value in summary.items()),
        caption="Summary of the run (summary.json)",
    )
    pngs = sorted(p for p in run_dir.glob("*.png") if p.is_file())
    known = [run_dir / name for name in _KNOWN_PLOTS if (run_dir / name) in pngs]
    others = [p for p in pngs if p.name not in _KNOWN_PLOTS]
    notes = () if pngs else ("No PNG plots were found in the run directory.",)
    sections = [
        Section(
            anchor="demo-summary",
            title="Summary",
            paragraphs=("Measures of the streamed run; expected quantities are under the true probabilities.",),
            tables=(table,),
            notes=notes,
        )
    ]
    for path in known:
        anchor, title, caption = _KNOWN_PLOTS[path.name]
        plot = Plot(png=read_png(path), alt=f"{title} ({path.name})", caption=caption)
        sections.append(Section(anchor=anchor, title=title, plots=(plot,)))
    if others:
        plots = tuple(Plot(png=read_png(p), alt=p.name, caption=p.name) for p in others)
        sections.append(Section(anchor="demo-other-plots", title="Other plots", plots=plots))
    return sections
