"""``banditlp replay``: options checked at the edge (one line, exit code 2), and ``evaluate
--dataset obd`` writing ope.json, the table and report.html without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli.app import app
from tests.unit.evaluation.datasets import OBD_CACHE, obd_root

runner = CliRunner()

BAD_OPTIONS = [
    (["replay", "evaluate", "--out", "x"], "exactly one of --from-prefix PREFIX and --dataset NAME"),
    (["replay", "evaluate", "--from-prefix", "p-", "--dataset", "obd", "--out", "x"], "exactly one of"),
    (
        ["replay", "evaluate", "--from-prefix", "p-", "--rows", "10", "--out", "x"],
        "--rows takes a dataset's first rows",
    ),
]


@pytest.mark.parametrize(("args", "match"), BAD_OPTIONS)
def test_bad_options_are_one_line_and_exit_code_2(args: list[str], match: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert match in " ".join(result.output.split())


def test_an_unknown_dataset_or_policy_is_a_typed_error(tmp_path: Path) -> None:
    obd_root()
    base = ["replay", "evaluate", "--out", str(tmp_path), "--cache-dir", str(OBD_CACHE)]
    for extra, match in (
        (["--dataset", "movielens"], "unknown dataset 'movielens'"),
        (["--dataset", "obd", "--policy", "oracle"], "unknown target policy 'oracle'"),
    ):
        result = runner.invoke(app, base + extra + ["--rows", "300"])
        assert result.exit_code == 2 and match in " ".join(result.output.split()), result.output


def test_evaluate_on_the_dataset_writes_ope_json_and_the_report(tmp_path: Path) -> None:
    obd_root()
    out = tmp_path / "ope"
    args = ["replay", "evaluate", "--dataset", "obd", "--rows", "1000", "--out", str(out), "--bootstrap", "50"]
    result = runner.invoke(app, [*args, "--n-sim", "5000", "--cache-dir", str(OBD_CACHE)])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "ope.json").read_text())
    assert list(document["policies"]) == ["uniform", "bts"]  # the dataset's default targets
    assert document["logged"]["n"] == 1000 and document["source"]["dataset"] == "obd"
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "bts" in result.output and "dros" in result.output
