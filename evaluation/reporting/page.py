"""One run directory -> one self-contained HTML report page.

A run directory is an experiment's (``results.json``), a demo's (``summary.json`` and PNG
plots), a replay's (``ope.json``, from ``banditlp replay evaluate``) or a live tuning run's
(``tune-live.json``, from ``banditlp tune --live --out``); one holding several gets each part, the
experiment's first, the tuning run's last.
"""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.reporting.demo_run import SUMMARY_JSON, demo_sections
from evaluation.reporting.errors import ReportInputError, ReportWriteError
from evaluation.reporting.experiment_results import RESULTS_JSON, load_results
from evaluation.reporting.experiment_sections import experiment_sections
from evaluation.reporting.html_page import Page, Section, render_page
from evaluation.reporting.ope_run import OPE_JSON, ope_sections
from evaluation.reporting.tune_run import TUNE_LIVE_JSON, tune_run_sections

#: Where the page goes unless told otherwise, inside the run directory.
REPORT_HTML = "report.html"


def build_page(run_dir: Path | str) -> Page:
    """Read a run directory into a report page.

    Args:
        run_dir: The directory.

    Returns:
        The page.

    Raises:
        ReportInputError: if the directory does not exist, holds none of ``results.json``,
            ``summary.json``, ``ope.json`` and ``tune-live.json``, or one of its files is malformed.
    """
    directory = Path(run_dir)
    if not directory.is_dir():
        raise ReportInputError(f"{directory}: no such run directory")
    has_results = (directory / RESULTS_JSON).is_file()
    # `banditlp experiment` writes a summary.json of its own beside results.json (per-method
    # figures under "methods"); only a demo's summary.json is the demo part of a page.
    has_summary = (directory / SUMMARY_JSON).is_file() and not (
        has_results and _is_experiment_summary(directory / SUMMARY_JSON)
    )
    has_ope = (directory / OPE_JSON).is_file()
    has_tune = (directory / TUNE_LIVE_JSON).is_file()
    if not (has_results or has_summary or has_ope or has_tune):
        raise ReportInputError(
            f"{directory}: not a run directory: it holds neither {RESULTS_JSON} (an experiment's, from "
            f"`banditlp experiment`) nor {SUMMARY_JSON} (a demo's, from `banditlp demo`) nor {OPE_JSON} "
            f"(a replay's, from `banditlp replay evaluate`) nor {TUNE_LIVE_JSON} (a tuning run's, from "
            "`banditlp tune --live --out`)"
        )
    sections: list[Section] = []
    kinds: list[str] = []
    if has_results:
        sections.extend(experiment_sections(load_results(directory / RESULTS_JSON)))
        kinds.append(RESULTS_JSON)
    if has_summary:
        demo = demo_sections(directory)
        if has_results:  # both parts on one page: say which summary is the demo's
            demo = [_titled(s, "Demo: ") for s in demo]
        sections.extend(demo)
        kinds.append(SUMMARY_JSON)
    if has_ope:
        sections.extend(ope_sections(directory))
        kinds.append(OPE_JSON)
    if has_tune:
        sections.extend(tune_run_sections(directory))
        kinds.append(TUNE_LIVE_JSON)
    kind = "Experiment" if has_results else "Demo" if has_summary else "Replay" if has_ope else "Tuning"
    return Page(
        title=f"{kind} report: {directory.resolve().name}",
        subtitle=f"Run directory {directory.resolve()} · read from {' and '.join(kinds)}",
        sections=tuple(sections),
    )


def build_report(run_dir: Path | str) -> str:
    """The report page of a run directory as one HTML document (see :func:`build_page`)."""
    return render_page(build_page(run_dir))


def write_report(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Build the report of a run directory and write it.

    Args:
        run_dir: The directory.
        out: The file to write (default ``run_dir/report.html``); its folder is created.

    Returns:
        The path written.

    Raises:
        ReportInputError: as :func:`build_page`.
        ReportWriteError: if the file cannot be written.
    """
    document = build_report(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / REPORT_HTML
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document, encoding="utf-8")
    except OSError as exc:
        raise ReportWriteError(f"{path}: cannot write the report: {exc}") from exc
    return path


def _titled(section: Section, prefix: str) -> Section:
    return Section(
        anchor=section.anchor,
        title=prefix + section.title,
        paragraphs=section.paragraphs,
        plots=section.plots,
        tables=section.tables,
        notes=section.notes,
    )


def _is_experiment_summary(path: Path) -> bool:
    """Whether ``path`` is the experiment's own summary (a mapping with ``methods``), not a demo's."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and isinstance(value.get("methods"), dict)
