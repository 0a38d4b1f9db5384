"""The two-stage experiment's parts on a small world (the full run is the module's command)."""

from __future__ import annotations

from evaluation.bandits.two_stage_experiment import BUDGET_POLICIES, arms, run_arm, table
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
