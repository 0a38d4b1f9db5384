"""``banditlp experiment`` end to end on a tiny world, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from evaluation.experiment import check_results
from streams.cli.experiment import experiment

TINY = ["--users", "40", "--items", "8", "--providers", "2", "--candidates", "4", "--world-seed", "3"]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("experiment")(experiment)

    @app.command("other")
    def other() -> None:  # a second command, so typer keeps "experiment" as a subcommand
        """Nothing."""

    return app


def test_the_command_writes_results_and_summary_and_prints_the_tables(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["experiment", *TINY, "--seeds", "2", "--batches", "3", "--warm-start-batches", "2"]
    args += ["--methods", "banditlp,nn_lp,oracle_lp", "--tau", "1,0.5", "--train-rows", "30"]
    args += ["--summary-from", "2", "--variance-draws", "1", "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    check_results(doc)
    assert list(doc["methods"]) == ["banditlp", "nn_lp", "oracle_lp"]
    assert doc["config"]["taus"] == [1.0, 0.5] and doc["config"]["train_rows"] == [30]
    assert set(doc["sweeps"]) == {"tau", "train_rows"}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"banditlp", "nn_lp", "oracle_lp"}
    assert set(summary["sweeps"]["tau"]) == {"0.5", "1"}
    assert summary["methods"]["oracle_lp"]["unsub_usage_max"] <= 1 + 1e-6
    for text in ("banditlp", "oracle_lp", "reward", "sweeps", "results:"):
        assert text in result.output


def test_bad_options_end_with_one_line_and_code_2(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_tau = runner.invoke(_app(), ["experiment", *TINY, "--tau", "1,hot", "--out", str(tmp_path)])
    assert bad_tau.exit_code == 2 and "expected a comma list of numbers" in bad_tau.output
    unknown = runner.invoke(_app(), ["experiment", *TINY, "--methods", "banditlp,magic", "--out", str(tmp_path)])
    assert unknown.exit_code == 2
    assert "unknown method 'magic'" in unknown.output
    no_guard = runner.invoke(_app(), ["experiment", *TINY, "--version-guard", "0", "--out", str(tmp_path)])
    assert no_guard.exit_code == 2 and "version_guard must be >= 1" in no_guard.output
    assert not (tmp_path / "results.json").exists()
