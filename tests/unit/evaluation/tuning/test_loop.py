"""The tuning loop on 2 seeds with a small budget: tune.json's shape, seeding, and the CLI's contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation.tuning.churn import churn
from evaluation.tuning.loop import LoopConfig, run_method, score
from evaluation.tuning.methods import METHODS
from evaluation.tuning.problem import SyntheticProblem, grid_truth, near_best_feasible
from evaluation.tuning.report import run_experiment, tune_json, write_outputs
from streams.cli.app import app

SMALL = LoopConfig(budget=16, rounds=2, n_samples=128, n_candidates=64)


def test_two_seeds_write_the_documented_json(tmp_path: Path) -> None:
    result = run_experiment(SyntheticProblem(grid=201), SMALL, [0, 1])
    paths = write_outputs(result, tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert set(doc) == {"methods", "best_feasible"}
    assert set(doc["methods"]) == set(METHODS)
    for entry in doc["methods"].values():
        assert set(entry) == {"mass_near_best_feasible", "best_feasible_found"}
        assert len(entry["mass_near_best_feasible"]) == len(entry["best_feasible_found"]) == 2
        assert all(0.0 <= m <= 1.0 for m in entry["mass_near_best_feasible"])
        assert all(b is None or b <= doc["best_feasible"] + 1e-3 for b in entry["best_feasible_found"])
    assert doc == tune_json(result)
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tuner |" in paths["table"].read_text()


def test_scores_recomputed_from_the_run() -> None:
    p = SyntheticProblem(grid=201)
    truth = grid_truth(p)
    run = run_method(p, "tuner", 3, SMALL)
    assert run.X.shape == (16, 2) and run.Y.shape == (16, 3)
    s = score(p, truth, run)
    near = np.array([near_best_feasible(p, truth, x[None, :])[0] for x in run.final.points])
    assert s.mass_near_best_feasible == float(run.final.probs[near].sum())
    feas = [x for x in run.X if p.feasible(x[None, :])[0]]
    assert s.best_feasible_found == max(float(p.metrics(x[None, :])[0, 0]) for x in feas)
    again = run_method(p, "tuner", 3, SMALL)
    np.testing.assert_array_equal(run.X, again.X)
    np.testing.assert_array_equal(run.final.probs, again.final.probs)


def test_cli_requires_synthetic_and_writes_outputs(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["tune", "--seeds", "1", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "--synthetic" in r.output
    args = ["tune", "--synthetic", "--seeds", "1", "--budget", "8", "--rounds", "2", "--samples", "64"]
    args += ["--candidates", "32", "--methods", "tuner,random_search", "--out", str(tmp_path)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "tune.json").read_text())
    assert set(doc["methods"]) == {"tuner", "random_search"}


def test_churn_of_the_tuner_history_is_at_least_tv_and_below_a_fresh_hash() -> None:
    run = run_method(
        SyntheticProblem(grid=201), "tuner", 0, LoopConfig(budget=12, rounds=3, n_samples=256, n_candidates=32)
    )
    assert len(run.history) == 3 and run.history[-1] is run.final
    rows = churn(run.history, n_users=20_000)
    assert [r.step for r in rows] == [1, 2]
    for r in rows:
        assert r.relayout_exact == pytest.approx(r.tv, abs=1e-9)
        assert r.relayout <= r.tv + 4 * np.sqrt(r.tv / 20_000) + 1e-12
        assert r.relayout <= r.cumulative + 1e-12 or r.cumulative >= r.tv - 0.02
        assert r.fresh_hash >= r.relayout
