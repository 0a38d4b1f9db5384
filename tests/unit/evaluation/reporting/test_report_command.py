"""`banditlp report RUN_DIR`: the page is written; a bad run directory is one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from streams.cli.report import report
from tests.unit.evaluation.reporting.factories import write_experiment


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(report)
    return app


def test_report_writes_the_page(tmp_path: Path) -> None:
    run_dir = write_experiment(tmp_path / "run", methods=("banditlp",), seeds=1, batches=3, calibration=False)
    result = CliRunner().invoke(_app(), [str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.html").is_file() and "report.html" in result.output
    out = tmp_path / "page.html"
    assert CliRunner().invoke(_app(), [str(run_dir), "--out", str(out)]).exit_code == 0
    assert out.is_file()


def test_a_bad_run_directory_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{")
    result = CliRunner().invoke(_app(), [str(tmp_path)])
    text = " ".join(result.output.split())  # rich wraps the line at the test terminal's width
    assert result.exit_code == 2
    assert text.startswith("error: ") and "results.json: not valid JSON" in text
    assert "Traceback" not in text
    empty = CliRunner().invoke(_app(), [str(tmp_path / "nothing")])
    assert empty.exit_code == 2 and "no such run directory" in " ".join(empty.output.split())
