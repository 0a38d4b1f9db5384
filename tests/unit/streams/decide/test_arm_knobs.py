"""Per-arm allocator knobs (``streams.decide.arm_knobs``): the objective coefficients and the per-arm
budget rows against hand computations, the table's version lookup, and a two-arm batch LP against an
LP written out here pair by pair and solved by HiGHS through scipy."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import linprog

from allocator import solve
from streams.decide.arm_knobs import ArmKnobs, KnobTable, arm_budget_rows, blended_objective, with_arm_knobs
from streams.decide.batch_lp import BatchLP
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.decision import decide_batch
from streams.decide.solve import DualMemory
from streams.decide.window import BatchWindow
from streams.errors import ValidationError
from streams.records import BudgetSpec, ScoresRecord
from streams.score.parameter_feed import ParameterDistributionRecord
from tests.factories import SERDE, control_record, scores_record

OUTCOMES = ("conversion", "value", "reward", "unsubscription")


def distribution(
    version: int, arms: dict[str, dict[str, float]], experiment: str = "ex"
) -> ParameterDistributionRecord:
    p = 1.0 / len(arms)
    return ParameterDistributionRecord.from_avro(
        {
            "experiment": experiment,
            "version": version,
            "created_at_ms": int(time.time() * 1000),
            "arms": [{"arm_id": a, "parameters": k, "probability": p} for a, k in arms.items()],
        }
    )


def scored(user: str, version: str, seed: int, n: int = 3, n_draws: int = 1) -> ScoresRecord:
    """A user's scores with ``reward = conversion * value`` on every draw, as the scorer writes them."""
    rec = scores_record(user, n=n, outcomes=OUTCOMES, seed=seed, n_draws=n_draws, cap=1)
    draws = dict(rec.draws)
    draws["value"] = 1.0 + 4.0 * draws["value"]
    draws["conversion"] = 0.3 * draws["conversion"]
    draws["unsubscription"] = 0.1 * draws["unsubscription"]
    draws["reward"] = draws["conversion"] * draws["value"]
    return replace(rec, parameter_version=version, draws=draws, samples={k: v[0] for k, v in draws.items()})


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"value_weight": 1.5}, "value_weight must be in"),
        ({"value_weight": -0.1}, "value_weight must be in"),
        ({"budget_scale": -1.0}, "budget_scale must be finite"),
        ({"budget_scale": float("inf")}, "budget_scale must be finite"),
    ],
)
def test_out_of_range_knobs_are_rejected(parameters: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ArmKnobs.of(parameters)


def test_knobs_read_from_an_arm_ignore_the_scorers_knobs() -> None:
    assert ArmKnobs.of({"tau": 2.0}).empty
    assert ArmKnobs.of({"tau": 2.0, "value_weight": 0.5, "budget_scale": 0.8}) == ArmKnobs(0.5, 0.8)


def test_blended_objective_by_hand() -> None:
    reward = np.array([[9.0, 9.0, 9.0]])
    conversion = np.array([[0.2, 0.4, 0.1]])
    value_reward = np.array([[1.0, 2.0, 0.5]])
    got = blended_objective(reward, conversion, value_reward, np.array([0.25, np.nan, 1.0]))
    # pair 0: 0.75 * 0.2 + 0.25 * 1.0; pair 1: no knob, the reward outcome; pair 2: all value
    np.testing.assert_allclose(got, [[0.4, 9.0, 0.5]], rtol=0, atol=1e-15)


def test_arm_budget_rows_by_hand() -> None:
    cost = np.array([[[1.0, 2.0, 3.0, 4.0]]])  # K = 1, one scaled budget, 4 pairs
    rows, limits = arm_budget_rows(
        cost, np.array([10.0]), np.array([0, 0, 1, 1]), np.array([3.0, 1.0]), np.array([0.5, 2.0])
    )
    np.testing.assert_array_equal(rows, [[[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 4.0]]])
    # group 0: 0.5 * 10 * 3/4; group 1: 2 * 10 * 1/4
    np.testing.assert_allclose(limits, [3.75, 5.0])


def test_the_table_finds_a_version_its_newest_arm_of_that_id_or_nothing() -> None:
    table = KnobTable()
    table.add(distribution(1, {"a": {"value_weight": 0.2}, "b": {"tau": 1.0}}))
    table.add(distribution(2, {"a": {"value_weight": 0.7}, "c": {"budget_scale": 0.5, "value_weight": 3.0}}))
    got = table.lookup(["ex@1:a", "ex@2:a", "ex@9:a", "ex@9:b", "ex@2:c", "default", "ex@1:zz", "other@1:a"])
    assert got["ex@1:a"] == ArmKnobs(0.2) and got["ex@2:a"] == ArmKnobs(0.7)
    assert got["ex@9:a"] == ArmKnobs(0.7)  # unseen version: the newest version listing arm a
    assert got["ex@9:b"].empty  # found in version 1, which sets no allocator knob
    assert got["ex@2:c"].empty  # out-of-range value_weight: the arm keeps no knobs
    assert got["default"].empty and got["ex@1:zz"].empty and got["other@1:a"].empty


def _two_arm_window(n_users: int = 8, n_draws: int = 1, limit: float = 0.25) -> BatchWindow:
    control = control_record(expected=n_users, budgets=(BudgetSpec("unsubs", "unsubscription", limit),))
    window = BatchWindow("b1", 0.0)
    window.open(control, 0.0)
    for u in range(n_users):
        version = "ex@1:greedy" if u % 2 == 0 else "ex@1:convert"
        assert window.add(scored(f"u{u}", version, seed=u, n=4, n_draws=n_draws)) == "added"
    window.close(control_record("CLOSED", expected=n_users), 0.0)
    return window


TWO_ARMS = {"greedy": {"value_weight": 1.0, "budget_scale": 1.5}, "convert": {"value_weight": 0.0, "budget_scale": 0.3}}


def test_coefficients_and_rows_of_a_batch_by_hand() -> None:
    window = _two_arm_window(n_users=4, n_draws=2)
    assert window.opened is not None
    table = KnobTable()
    table.add(distribution(1, TWO_ARMS))
    lp = BatchLP.build(window.opened, window.scores)
    got = with_arm_knobs(lp, window.opened, table)
    for u, user in enumerate(lp.user_ids):
        rec = window.scores[user]
        s = slice(lp.starts[u], lp.starts[u + 1])
        want = rec.draws["reward"] if rec.parameter_version.endswith("greedy") else rec.draws["conversion"]
        np.testing.assert_allclose(got.reward_draws[:, s], want, rtol=0, atol=0)
    np.testing.assert_array_equal(got.reward, got.reward_draws[0])
    # rows: the batch's, then one per arm in sorted parameter_version order (convert, greedy)
    assert got.budget_names == ["unsubs", "unsubs@ex@1:convert", "unsubs@ex@1:greedy"]
    np.testing.assert_allclose(got.budget, [0.25, 0.25 * 0.3 * 2 / 4, 0.25 * 1.5 * 2 / 4])
    for k in range(2):
        for r, arm in ((1, "convert"), (2, "greedy")):
            mine = np.array([window.scores[lp.user_ids[u]].parameter_version.endswith(arm) for u in lp.user])
            np.testing.assert_array_equal(got.cost_draws[k, r], np.where(mine, lp.cost_draws[k, 0], 0.0))
        np.testing.assert_array_equal(got.cost_draws[k, 0], lp.cost_draws[k, 0])
    assert got.draw(1).cost.shape == (3, lp.n_pairs)


def test_a_batch_with_no_knobs_is_the_same_lp() -> None:
    window = _two_arm_window(n_users=4)
    assert window.opened is not None
    table = KnobTable()
    table.add(distribution(1, {"greedy": {"tau": 1.0}, "convert": {"tau": 0.0}}))
    lp = BatchLP.build(window.opened, window.scores)
    assert with_arm_knobs(lp, window.opened, table) is lp


def _reference_lp(window: BatchWindow) -> tuple[float, np.ndarray]:
    """The two-arm LP written out pair by pair: max sum c x s.t. the batch's unsubscription row, one row
    per arm at ``scale * B * n_arm / n``, one item per user, 0 <= x <= 1 (HiGHS through scipy)."""
    limit = 0.25
    users = sorted(window.scores)
    c, unsub, arm_of, user_of = [], [], [], []
    for u, user in enumerate(users):
        rec = window.scores[user]
        arm = rec.parameter_version.split(":")[1]
        w = TWO_ARMS[arm]["value_weight"]
        for j in range(len(rec.item_ids)):
            conv, rew = rec.draws["conversion"][0, j], rec.draws["reward"][0, j]
            c.append((1 - w) * conv + w * rew)
            unsub.append(rec.draws["unsubscription"][0, j])
            arm_of.append(arm)
            user_of.append(u)
    n_pairs, n_users = len(c), len(users)
    n_arm = {a: sum(window.scores[u].parameter_version.endswith(a) for u in users) for a in TWO_ARMS}
    A, b = [unsub], [limit]
    for arm in sorted(TWO_ARMS):
        A.append([unsub[e] if arm_of[e] == arm else 0.0 for e in range(n_pairs)])
        b.append(TWO_ARMS[arm].get("budget_scale", 1.0) * limit * n_arm[arm] / n_users)
    for u in range(n_users):
        A.append([1.0 if user_of[e] == u else 0.0 for e in range(n_pairs)])
        b.append(1.0)
    res = linprog(-np.array(c), A_ub=np.array(A), b_ub=np.array(b), bounds=(0, 1), method="highs")
    assert res.status == 0
    return -float(res.fun), res.x


def test_a_two_arm_batch_lp_matches_the_lp_written_out_by_hand() -> None:
    window = _two_arm_window(n_users=8, limit=0.25)
    assert window.opened is not None
    table = KnobTable()
    table.add(distribution(1, TWO_ARMS))
    lp = with_arm_knobs(BatchLP.build(window.opened, window.scores), window.opened, table)
    res = solve(lp.to_problem(), solver="highs")
    objective, x_ref = _reference_lp(window)
    assert float(lp.reward @ res.x) == pytest.approx(objective, rel=1e-7)
    used = lp.cost @ res.x
    assert np.all(used <= lp.budget + 1e-9)
    # the per-arm rows change the answer: the pooled LP (the batch's row only) earns more here
    pooled = solve(replace(lp, cost=lp.cost[:1], budget=lp.budget[:1]).to_problem(), solver="highs")
    assert float(lp.reward @ pooled.x) > objective + 1e-6
    # here both arm rows bind (a positive price each) and the batch's row does not
    np.testing.assert_allclose(used[1:], lp.budget[1:], rtol=1e-7)
    assert np.all(np.asarray(res.budget_dual)[1:] > 1e-6) and used[0] < lp.budget[0] - 1e-3
    np.testing.assert_allclose((lp.cost @ x_ref)[1:], used[1:], atol=1e-7)


@pytest.mark.parametrize("mean_rows", [False, True])
def test_decide_batch_reports_the_arm_rows_and_meets_them(mean_rows: bool) -> None:
    window = _two_arm_window(n_users=8, n_draws=3)
    table = KnobTable()
    table.add(distribution(1, TWO_ARMS))
    cfg = AllocatorWorkerConfig.for_prefix(solver="highs", mean_budget_rows=mean_rows)
    decided = decide_batch(window, cfg, SERDE, DualMemory(), lambda: 0.0, knobs=table)
    report = SERDE.decode("allocation-reports", decided.report)
    rows = {b["name"]: b for b in report["budgets"]}
    names = {"unsubs", "unsubs@ex@1:convert", "unsubs@ex@1:greedy"}
    assert set(rows) == (names | {f"{n}@mean" for n in names} if mean_rows else names)
    assert rows["unsubs@ex@1:greedy"]["limit"] == pytest.approx(0.25 * 1.5 * 4 / 8)
    if mean_rows:  # every row's twin on the means has its limit
        assert all(rows[f"{n}@mean"]["limit"] == rows[n]["limit"] for n in names)
    assert all(b["used"] <= b["limit"] * (1 + 1e-6) + 1e-9 for b in rows.values())
    assert len(decided.records) == 8
    versions = {SERDE.decode("decisions", v)["parameter_version"] for _, v in decided.records}
    assert versions == {"ex@1:greedy", "ex@1:convert"}
