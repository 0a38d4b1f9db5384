"""Reports of runs as one self-contained HTML page each (``banditlp report RUN_DIR``).

Pure: reads a run directory's files, draws with matplotlib (Agg), writes HTML; no Kafka.

Modules, one concept each:

* ``page`` — a run directory -> a page; :func:`write_report` is the entry point;
* ``experiment_results`` — an experiment's ``results.json`` as typed values; ``sweeps`` its sweeps;
  ``json_values`` the number lists they are made of;
* ``experiment_summary`` — the per-method summary table and the paired reward comparison;
* ``experiment_figures`` — the experiment's figures; ``experiment_sections`` their order and text;
* ``demo_run`` — a demo's ``summary.json`` and PNG plots;
* ``bands`` — means over seeds and their 95% confidence bands;
* ``plotting`` — figures on an Agg canvas, PNG bytes, one colour per method;
* ``html_page`` — the page as values, rendered with every text escaped;
* ``errors`` — :class:`ReportInputError` and :class:`ReportWriteError`.
"""

from __future__ import annotations

from evaluation.reporting.errors import ReportError, ReportInputError, ReportWriteError
from evaluation.reporting.page import REPORT_HTML, build_page, build_report, write_report

__all__ = [
    "REPORT_HTML",
    "ReportError",
    "ReportInputError",
    "ReportWriteError",
    "build_page",
    "build_report",
    "write_report",
]
