"""The batch LP's budget rows on the posterior means (``AllocatorWorkerConfig.mean_budget_rows``).

Truths used: the draws and means read straight from the scores records (users in id order, items in
record order); the stacked LP (each budget on the draw, then on the means) written out here and
solved by HiGHS through ``allocator.solve``; the LP on the draws alone, for the guard off and for a
guard that does not bind."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from allocator import AllocationProblem, solve
from streams.decide.arm_knobs import KnobTable, with_arm_knobs
from streams.decide.batch_lp import BatchLP
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.decision import decide_batch, plans_of
from streams.decide.estimates import FallbackMemory
from streams.decide.listing import CandidateListing
from streams.decide.solve import DualMemory
from streams.decide.window import BatchWindow
from streams.records import BudgetSpec, ProviderSpec, ScoresRecord
from tests.factories import SERDE, control_record, scores_record
from tests.unit.streams.decide.test_arm_knobs import TWO_ARMS, _two_arm_window, distribution

K, N_USERS, N_ITEMS = 3, 16, 5
OUTCOMES = ("reward", "unsubscription", "complaint")
LIMITS = {"unsubs": 2.5, "complaints": 3.0}
TOL = 1e-6


def _budgets() -> tuple[BudgetSpec, ...]:
    return (
        BudgetSpec("unsubs", "unsubscription", LIMITS["unsubs"]),
        BudgetSpec("complaints", "complaint", LIMITS["complaints"]),
    )


def _record(u: int, mean_scale: float | None) -> ScoresRecord:
    """User ``u``'s scores; ``mean_scale`` set: every cost mean is that multiple of the pair's
    smallest draw (below 1: below every draw) or, for a negative one, ``-mean_scale`` times its
    largest draw (above 1: above every draw)."""
    rec = scores_record(
        f"u{u:02d}",
        n=N_ITEMS,
        outcomes=OUTCOMES,
        cap=1 + u % 2,
        seed=100 + u,
        n_draws=K,
        providers=tuple(f"p{(u + j) % 3}" for j in range(N_ITEMS)),
    )
    if mean_scale is None:
        return rec
    means = dict(rec.means)
    for o in ("unsubscription", "complaint"):
        d = rec.draws[o]  # (K, n)
        means[o] = mean_scale * d.min(axis=0) if mean_scale > 0 else -mean_scale * d.max(axis=0)
    return replace(rec, means=means)


def _window(mean_scale: float | None = None, unscored: int = 0) -> BatchWindow:
    """``N_USERS`` users, two budgets, a provider minimum and a maximum; the last ``unscored``
    users are listed but never scored (the fallback decides them)."""
    control = control_record(
        expected=N_USERS,
        budgets=_budgets(),
        providers=(ProviderSpec("p0", 5.0, float("inf")), ProviderSpec("p1", 0.0, 7.0)),
    )
    window = BatchWindow("b1", 0.0)
    window.open(control, 0.0)
    for u in range(N_USERS):
        rec = _record(u, mean_scale)
        window.list_user(CandidateListing("b1", rec.user_id, rec.user_cap, rec.item_ids, rec.provider_ids))
        if u < N_USERS - unscored:
            assert window.add(rec) == "added"
    users = tuple(f"u{u:02d}" for u in range(N_USERS))
    window.close(control_record("CLOSED", expected=N_USERS, budgets=_budgets(), user_ids=users), 0.0)
    return window


def _pairs(window: BatchWindow, field: str, outcome: str, k: int = 0) -> np.ndarray:
    """``(E,)`` a field of every scored pair, users in id order: ``draws`` (draw ``k``) or ``means``."""
    recs = [window.scores[u] for u in sorted(window.scores)]
    return np.concatenate([r.draws[outcome][k] if field == "draws" else r.means[outcome] for r in recs])


def _stacked_problem(window: BatchWindow, k: int, mean_rows: bool) -> AllocationProblem:
    """Draw ``k``'s LP written out from the records: the budgets on the draw (then on the means)."""
    recs = [window.scores[u] for u in sorted(window.scores)]
    user = np.concatenate([np.full(len(r.item_ids), u) for u, r in enumerate(recs)])
    items = sorted({i for r in recs for i in r.item_ids})
    item = np.array([items.index(i) for r in recs for i in r.item_ids])
    providers = ["p0", "p1", "p2"]
    provider = np.array([providers.index(p) for r in recs for p in r.provider_ids])
    outcomes = ("unsubscription", "complaint")
    rows = [_pairs(window, "draws", o, k) for o in outcomes]
    limits = [LIMITS["unsubs"], LIMITS["complaints"]]
    if mean_rows:
        rows += [_pairs(window, "means", o) for o in outcomes]
        limits += limits
    return AllocationProblem(
        user=user,
        item=item,
        reward=_pairs(window, "draws", "reward", k),
        cost=np.stack(rows),
        budget=np.array(limits),
        provider=provider,
        provider_min=np.array([5.0, 0.0, 0.0]),
        provider_max=np.array([np.inf, 7.0, np.inf]),
        user_cap=np.array([float(r.user_cap or 1) for r in recs]),
    )


def test_each_plan_meets_every_budget_on_its_draw_and_on_the_means() -> None:
    window = _window()
    lp = BatchLP.build(window.opened, window.scores, mean_rows=True)  # type: ignore[arg-type]
    assert lp.budget_names == ["unsubs", "complaints", "unsubs@mean", "complaints@mean"]
    plans = plans_of(lp, lp.to_problem(), AllocatorWorkerConfig.for_prefix(solver="highs"), DualMemory())
    assert len(plans.solved) == K
    binds = 0
    for k, sol in enumerate(plans.solved):
        for name, outcome in (("unsubs", "unsubscription"), ("complaints", "complaint")):
            limit = LIMITS[name]
            assert _pairs(window, "draws", outcome, k) @ sol.x <= limit * (1 + TOL), (k, name)
            on_means = _pairs(window, "means", outcome) @ sol.x
            assert on_means <= limit * (1 + TOL), (k, name)
            binds += on_means >= limit * (1 - 1e-4)
    assert binds >= K  # the mean rows bind here: the test exercises them


@pytest.mark.parametrize("mean_rows", [False, True])
def test_each_plan_equals_highs_on_the_lp_written_out_here(mean_rows: bool) -> None:
    """The worker's plans (HiGHS first, and the dual solver first) have the objective of the stacked
    LP built from the records and solved by HiGHS; the HiGHS path has its x too (optimum unique)."""
    window = _window()
    lp = BatchLP.build(window.opened, window.scores, mean_rows=mean_rows)  # type: ignore[arg-type]
    highs = plans_of(lp, lp.to_problem(), AllocatorWorkerConfig.for_prefix(solver="highs"), DualMemory())
    dual = plans_of(lp, lp.to_problem(), AllocatorWorkerConfig.for_prefix(solver="dual"), DualMemory())
    for k in range(K):
        problem = _stacked_problem(window, k, mean_rows)
        ref = solve(problem, "highs")
        objective = float(problem.reward @ ref.x)
        assert float(problem.reward @ highs.solved[k].x) == pytest.approx(objective, rel=1e-7)
        np.testing.assert_allclose(highs.solved[k].x, ref.x, atol=1e-6)
        assert dual.solved[k].solver.startswith("dual")
        assert float(problem.reward @ dual.solved[k].x) == pytest.approx(objective, rel=2e-3)
        used = problem.cost @ dual.solved[k].x
        assert np.all(used <= problem.budget * (1 + TOL)), (k, used)


def test_a_mean_row_that_does_not_bind_changes_nothing() -> None:
    window = _window(mean_scale=0.05)  # means a twentieth of the smallest draw: far from binding
    cfg = AllocatorWorkerConfig.for_prefix(solver="highs")
    on = BatchLP.build(window.opened, window.scores, mean_rows=True)  # type: ignore[arg-type]
    off = BatchLP.build(window.opened, window.scores, mean_rows=False)  # type: ignore[arg-type]
    with_rows, without = (
        plans_of(on, on.to_problem(), cfg, DualMemory()),
        plans_of(off, off.to_problem(), cfg, DualMemory()),
    )
    for k in range(K):
        np.testing.assert_allclose(with_rows.solved[k].x, without.solved[k].x, atol=1e-9)
        assert with_rows.solved[k].objective == pytest.approx(without.solved[k].objective, rel=1e-12)
        used = on.draw(k).cost @ with_rows.solved[k].x
        assert np.all(used[2:] < 0.5 * on.budget[2:])  # slack, so priced at 0
        np.testing.assert_allclose(with_rows.solved[k].budget_dual[2:], 0.0, atol=1e-9)
    np.testing.assert_allclose(with_rows.propensity, without.propensity, atol=1e-9)


def test_with_the_guard_off_the_lp_is_the_draws_alone() -> None:
    window = _window()
    lp = BatchLP.build(window.opened, window.scores, mean_rows=False)  # type: ignore[arg-type]
    assert not lp.mean_rows and lp.budget_names == ["unsubs", "complaints"]
    for k in range(K):
        want, got = _stacked_problem(window, k, mean_rows=False), lp.draw(k).to_problem()
        np.testing.assert_array_equal(got.cost, want.cost)
        np.testing.assert_array_equal(got.budget, want.budget)
        np.testing.assert_array_equal(got.reward, want.reward)
    # the worker's config: on by default, off through the config; the report follows the LP's rows
    assert AllocatorWorkerConfig.for_prefix().mean_budget_rows
    for flag, names in (
        (False, ["unsubs", "complaints"]),
        (True, ["unsubs", "complaints", "unsubs@mean", "complaints@mean"]),
    ):
        cfg = AllocatorWorkerConfig.for_prefix(solver="highs", mean_budget_rows=flag)
        report = SERDE.decode("allocation-reports", decide_batch(window, cfg, SERDE, DualMemory(), lambda: 0.0).report)
        assert [b["name"] for b in report["budgets"]] == names


def test_the_report_shows_the_draw_and_the_mean_usage_of_the_picked_plan() -> None:
    window = _window()
    cfg = AllocatorWorkerConfig.for_prefix(solver="highs")
    decided = decide_batch(window, cfg, SERDE, DualMemory(), lambda: 0.0)
    report = SERDE.decode("allocation-reports", decided.report)
    x = np.concatenate([[a["x"] for a in SERDE.decode("decisions", v)["allocation"]] for _, v in decided.records])
    rows = {b["name"]: b for b in report["budgets"]}
    on_means = _pairs(window, "means", "unsubscription") @ x
    assert rows["unsubs@mean"]["used"] == pytest.approx(on_means, rel=1e-12)
    on_draws = [_pairs(window, "draws", "unsubscription", k) @ x for k in range(K)]
    assert any(rows["unsubs"]["used"] == pytest.approx(u, rel=1e-12) for u in on_draws)  # the picked draw's
    assert rows["unsubs@mean"]["limit"] == rows["unsubs"]["limit"] == LIMITS["unsubs"]


def test_the_fallback_keeps_the_mean_rows_and_prices_each_budget_by_both_duals() -> None:
    """6 of 16 users unscored; the cost means near the largest draw of their pair, so the LP's plan
    binds its mean rows and leaves room on its draw's rows: a fallback that kept the draw's rows
    only would spend that room; it must keep the mean rows too."""
    window = _window(mean_scale=-0.8, unscored=6)
    cfg = AllocatorWorkerConfig.for_prefix(solver="highs")
    decided = decide_batch(window, cfg, SERDE, DualMemory(), lambda: 0.0, None, FallbackMemory())
    report = SERDE.decode("allocation-reports", decided.report)
    assert report["n_fallback"] == 6
    rows = {b["name"]: b for b in report["budgets"]}
    room_on_draw = 0.0
    for name in LIMITS:
        draw, mean = rows[name], rows[f"{name}@mean"]
        assert mean["fallback_used"] == draw["fallback_used"]  # its sends, costed on estimates alone
        for row in (draw, mean):
            assert row["used"] + row["fallback_used"] <= row["limit"] * (1 + TOL), row
        room_on_draw += draw["limit"] - draw["used"]
    assert room_on_draw > 0.5  # the draw's rows alone would have left the fallback room
    # a budget's price is its row's dual plus its twin's
    lp = BatchLP.build(window.opened, window.scores, mean_rows=True)  # type: ignore[arg-type]
    np.testing.assert_array_equal(lp.batch_row_duals(np.array([1.0, 2.0, 0.25, 0.5])), [1.25, 2.5])
    off = BatchLP.build(window.opened, window.scores, mean_rows=False)  # type: ignore[arg-type]
    np.testing.assert_array_equal(off.batch_row_duals(np.array([1.0, 2.0, 7.0])), [1.0, 2.0])  # arm row: not
    with_knobs = replace(lp, budget_names=[*lp.budget_names, "unsubs@arm"], budget=np.r_[lp.budget, 1.0])
    np.testing.assert_array_equal(with_knobs.batch_row_duals(np.array([1.0, 2.0, 0.25, 0.5, 9.0])), [1.25, 2.5])


def test_a_batch_the_mean_rows_make_infeasible_is_decided_elastic() -> None:
    """Cost means 1.2 times the largest draw: p0's minimum of 5 sends no longer fits the budgets on
    the means, so every plan is solved elastic (a row gives way at a penalty) and reported so;
    without the mean rows the same batch is feasible."""
    window = _window(mean_scale=-1.2)
    off = decide_batch(
        window,
        AllocatorWorkerConfig.for_prefix(solver="highs", mean_budget_rows=False),
        SERDE,
        DualMemory(),
        lambda: 0.0,
    )
    assert off.status == "optimal"
    on = decide_batch(window, AllocatorWorkerConfig.for_prefix(solver="highs"), SERDE, DualMemory(), lambda: 0.0)
    report = SERDE.decode("allocation-reports", on.report)
    assert on.status == "elastic" and report["solver"].endswith("+elastic") and len(on.records) == N_USERS
    rows = {b["name"]: b for b in report["budgets"]}
    p0 = next(p for p in report["providers"] if p["provider_id"] == "p0")
    over = max(max(b["used"] / b["limit"] - 1.0 for b in rows.values()), 1.0 - p0["exposure"] / 5.0)
    assert 0.0 < over < 0.1  # something gave way, a little
    assert report["max_relative_violation"] == pytest.approx(over, rel=1e-6)  # and the report says by how much
    for _, value in on.records:
        d = SERDE.decode("decisions", value)
        assert len(d["chosen"]) <= 1 + int(d["user_id"][1:]) % 2  # the caps stay hard


def test_arm_rows_get_mean_twins_on_the_batchs_own_budgets() -> None:
    """Two arms with a ``budget_scale``: each arm row is followed by its twin on the arm's pairs'
    means (written out here from the records), limited to the same share; solved, each arm meets its
    share under its draw and under the means."""
    window = _two_arm_window(n_users=8, n_draws=2)
    assert window.opened is not None
    table = KnobTable()
    table.add(distribution(1, TWO_ARMS))
    lp = with_arm_knobs(BatchLP.build(window.opened, window.scores, mean_rows=True), window.opened, table)
    arms = ["unsubs@ex@1:convert", "unsubs@ex@1:greedy"]
    assert lp.budget_names == ["unsubs", "unsubs@mean", *arms, *(f"{a}@mean" for a in arms)]
    users = sorted(window.scores)
    means = np.concatenate([window.scores[u].means["unsubscription"] for u in users])
    n_arm = {a: sum(window.scores[u].parameter_version.endswith(a) for u in users) for a in TWO_ARMS}
    for r, arm in enumerate(("convert", "greedy")):
        mine = np.concatenate([np.full(4, window.scores[u].parameter_version.endswith(arm)) for u in users])
        share = 0.25 * TWO_ARMS[arm]["budget_scale"] * n_arm[arm] / len(users)
        assert lp.budget[2 + r] == lp.budget[4 + r] == pytest.approx(share)
        for k in range(2):
            draw = np.concatenate([window.scores[u].draws["unsubscription"][k] for u in users])
            np.testing.assert_array_equal(lp.cost_draws[k, 2 + r], np.where(mine, draw, 0.0))
            np.testing.assert_array_equal(lp.cost_draws[k, 4 + r], np.where(mine, means, 0.0))
    for k in range(2):
        res = solve(lp.draw(k).to_problem(), solver="highs")
        assert np.all(lp.draw(k).cost @ res.x <= lp.budget * (1 + TOL))


def test_the_allocator_worker_command_takes_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.decide.worker
    from streams.cli.app import app

    seen: list[AllocatorWorkerConfig] = []
    monkeypatch.setattr(
        streams.decide.worker,
        "run_allocator",
        lambda cfg, connection, serde, max_seconds=None, metrics=None: seen.append(cfg) or 0,
    )
    for args in ([], ["--no-mean-budget-rows"], ["--mean-budget-rows"]):
        result = CliRunner().invoke(app, ["worker", "allocator", *args])
        assert result.exit_code == 0, result.output
    assert [cfg.mean_budget_rows for cfg in seen] == [True, False, True]
