"""The two-stage experiment's parts on a small world (the full run is the module's command)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import patch

from evaluation.bandits.two_stage_experiment import BUDGET_POLICIES, arms, main, run_arm, table
from evaluation.bandits.two_stage_merge import main as merge_main
from evaluation.bandits.two_stage_study import ceilings, diagnose
from evaluation.bandits.two_stage_world import TwoStageWorld


def test_every_arm_runs_and_honours_the_budget() -> None:
    world = TwoStageWorld(n_items=400, n_topics=10, n_users=5, dim=3)
    budgeted = arms(world, 40)
    assert [a.label for a in budgeted] == list(BUDGET_POLICIES)
    assert {"glm_ucb", "n_glm_ucb", "n_dropout_ucb", "gblm_ucb", "two_stage_random"} <= set(BUDGET_POLICIES)
    runs = {a.label: [run_arm(a, world, 15, seed) for seed in (0, 1)] for a in budgeted}
    for label, rs in runs.items():
        if label != "random":
            assert all(r.scores_per_round <= 40 for r in rs)
        assert all(r.result.rewards.shape == (15,) for r in rs)
    galm = next(a for a in budgeted if a.label == "galm_ucb")
    assert run_arm(galm, world, 15, 0).result.actions.tolist() == runs["galm_ucb"][0].result.actions.tolist()
    unbudgeted = {a.label: [run_arm(a, world, 10, 0)] for a in arms(world, None)}
    assert unbudgeted["galm_ucb"][0].scores_per_round == 400
    assert unbudgeted["two_stage_galm_ucb"][0].scores_per_round < 400
    assert unbudgeted["gblm_ucb"][0].scores_per_round == 400
    assert [a.label for a in arms(world, 40, only=["gblm_ucb", "random"])] == ["random", "gblm_ucb"]
    assert "| two_stage_galm_ucb_dynamic |" in table("t", runs)


def test_runs_split_over_processes_merge_into_the_one_process_table(tmp_path: Path) -> None:
    """Each arm is seeded on its own: two ``--only`` halves merged give the full run's rows."""
    common = ["--rounds", "12", "--seeds", "2", "--budget", "40", "--parts", "budget"]
    small = {"n_items": 300, "n_topics": 10, "n_users": 5, "dim": 3}
    names = "random,n_greedy,gblm_ucb"
    with patch("evaluation.bandits.two_stage_experiment.TwoStageWorld", lambda: TwoStageWorld(**small)):
        main(["--out", str(tmp_path / "all"), "--only", names, *common])
        main(["--out", str(tmp_path / "a"), "--only", "random,gblm_ucb", *common])
        main(["--out", str(tmp_path / "b"), "--only", "n_greedy", *common])
    merge_main(["--out", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b")])
    full = json.loads((tmp_path / "all" / "budget" / "summary.json").read_text())["policies"]
    merged = json.loads((tmp_path / "m" / "budget" / "summary.json").read_text())["policies"]
    assert set(full) == set(merged) == set(names.split(","))
    for name in full:
        assert merged[name]["cumulative_reward"] == full[name]["cumulative_reward"]
        assert merged[name]["regret_curve"] == full[name]["regret_curve"]
    rows = [line.split("|")[1:4] for line in (tmp_path / "m" / "table.md").read_text().splitlines() if "± " in line]
    expect = [line.split("|")[1:4] for line in (tmp_path / "all" / "table.md").read_text().splitlines() if "± " in line]
    assert rows == expect


def test_the_study_measures_no_bonus_for_a_greedy_head_and_orders_the_ceilings() -> None:
    world = TwoStageWorld(n_items=300, n_topics=10, n_users=5, dim=3)
    c = ceilings(world, 40, 30, seed=0)
    assert c.uniform <= c.best_non_personalised <= c.oracle
    greedy = diagnose("n_greedy", {"budget": 40, "propensity_draws": 1}, world, 30, seed=0)
    assert greedy.median_bonus_spread == 0.0
    assert greedy.changed_gain == 0.0
    ucb = diagnose("galm_ucb", {"budget": 40, "propensity_draws": 1, "beta": 5.0}, world, 30, seed=0)
    assert ucb.median_bonus_spread > 0.0 and ucb.share_changed > 0.0
