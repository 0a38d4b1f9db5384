"""``banditlp lp``: generate, solve, and a clean exit code 2 on invalid input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from allocator.result import load_result
from streams.cli.lp import lp_app

runner = CliRunner()


def test_generate_then_solve_with_both_solvers(tmp_path: Path) -> None:
    prob = tmp_path / "p.npz"
    r = runner.invoke(lp_app, ["generate", str(prob), "--users", "100", "--candidates", "3-8", "--seed", "1"])
    assert r.exit_code == 0, r.output
    objectives = {}
    for solver in ("highs", "dual"):
        out = tmp_path / f"{solver}.npz"
        r = runner.invoke(lp_app, ["solve", str(prob), "--solver", solver, "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert "objective" in r.output and "status" in r.output
        res = load_result(out)
        assert res.status == "optimal" and res.x.shape[0] == res.x.size
        objectives[solver] = res.objective
    assert abs(objectives["dual"] - objectives["highs"]) <= 1e-3 * abs(objectives["highs"])


def test_invalid_problem_exits_2_without_traceback(tmp_path: Path) -> None:
    prob = tmp_path / "p.npz"
    runner.invoke(lp_app, ["generate", str(prob), "--users", "20"])
    with np.load(prob) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["reward"][3] = np.nan
    np.savez(tmp_path / "bad.npz", **arrays)
    r = runner.invoke(lp_app, ["solve", str(tmp_path / "bad.npz")])
    assert r.exit_code == 2
    assert "reward: NaN at index 3" in r.output
    assert "Traceback" not in r.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    r = runner.invoke(lp_app, ["solve", str(tmp_path / "nope.npz")])
    assert r.exit_code == 2 and "Traceback" not in r.output
