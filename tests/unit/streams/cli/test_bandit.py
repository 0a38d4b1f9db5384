"""``banditlp bandit run | list``: a tiny run writes exactly the documented summary; typed errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from models.policies.registry import policy_names
from streams.cli.app import app

runner = CliRunner()


def test_list_prints_every_registered_name_one_a_line() -> None:
    r = runner.invoke(app, ["bandit", "list"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == list(policy_names())
    assert {"linucb", "lints", "shared_lints", "hybrid_linucb", "epsilon_greedy"} <= set(r.output.split())


def test_a_tiny_run_writes_summary_csv_and_png(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["bandit", "run", "--policy", "linucb,shared_lints", "--env", "evaluation.bandits.worlds:linear_gaussian"]
    args += ["--param", "linucb.alpha=0.5", "--param", "shared_lints.tau=0.5"]
    args += ["--env-arg", "n_actions=3", "--env-arg", "dim=2", "--rounds", "25", "--seeds", "2", "--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"rounds", "policies"} and summary["rounds"] == 25
    assert set(summary["policies"]) == {"linucb", "shared_lints"}
    for entry in summary["policies"].values():
        assert set(entry) == {"cumulative_regret", "cumulative_reward", "regret_curve", "seconds"}
        assert len(entry["cumulative_regret"]) == len(entry["cumulative_reward"]) == len(entry["seconds"]) == 2
        assert len(entry["regret_curve"]) == 25
        assert entry["regret_curve"][-1] == sum(entry["cumulative_regret"]) / 2
    rows = (out / "regret.csv").read_text().splitlines()
    assert rows[0] == "round,linucb,shared_lints" and len(rows) == 26
    assert (out / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_exit_with_code_2(tmp_path: Path) -> None:
    base = ["bandit", "run", "--rounds", "3", "--seeds", "1", "--out", str(tmp_path / "x")]
    cases = [
        (["--policy", "no_such_policy"], "unknown policy"),
        (["--policy", "linucb", "--env", "nomodule"], "package.module:factory"),
        (["--policy", "linucb", "--env", "evaluation.bandits.worlds:missing"], "no callable"),
        (["--policy", "linucb", "--env-arg", "colour=red"], "colour"),
        (["--policy", "linucb", "--env-arg", "novalue"], "key=value"),
        (["--policy", "linucb", "--env-arg", "link=cube"], "link"),
        (["--policy", "linucb", "--param", "lints.tau=0"], "NAME.key=value"),
        (["--policy", "linucb", "--param", "linucb.alpha=-1"], "alpha"),
        (["--policy", "linucb", "--param", "linucb.nope=1"], "nope"),
    ]
    for extra, message in cases:
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2, (extra, r.output)
        assert message in r.output, (extra, r.output)
