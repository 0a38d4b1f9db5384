"""Exact propensities of the Thompson + LP mixture policy (``streams.decide.decision``).

One fixed batch with fixed scores of K = 4 Thompson draws: the K plans are solved once, then the
policy's random part (which plan, then systematic sampling of it) is repeated 2,000 times. The
empirical send frequency of every pair is checked against the logged propensity, each plan
against the constraints of its own draw (and, with the mean rows, the budget on the posterior
means), and every decision against its user's cap; with the mean rows on and off, and with the
exploration floor off and on (``allocator.exploration``: every pair then has a propensity > 0)."""

from __future__ import annotations

import numpy as np
import pytest

from allocator import violations
from allocator.exploration import with_floor
from streams.decide.batch_lp import BatchLP
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.decision import decide_batch, pick_and_round, plans_of
from streams.decide.solve import DualMemory
from streams.decide.window import BatchWindow
from streams.records import BudgetSpec, ProviderSpec
from tests.factories import SERDE, control_record, scores_record

K, N_USERS, N_ITEMS, REPEATS = 4, 12, 5, 2_000


def _window() -> BatchWindow:
    """12 users x 5 items, caps 1-2, an unsubscription budget and provider bounds that bind."""
    control = control_record(
        expected=N_USERS,
        budgets=(BudgetSpec("unsubs", "unsubscription", 2.0),),
        providers=(ProviderSpec("p0", 6.0, float("inf")), ProviderSpec("p1", 0.0, 8.0)),
    )
    window = BatchWindow("b1", 0.0)
    window.open(control, 0.0)
    for u in range(N_USERS):
        rec = scores_record(
            f"u{u:02d}",
            n=N_ITEMS,
            cap=1 + u % 2,
            seed=u,
            n_draws=K,
            providers=tuple(f"p{(u + j) % 3}" for j in range(N_ITEMS)),
        )
        assert window.add(rec) == "added"
    window.close(control_record("CLOSED", expected=N_USERS), 0.0)
    return window


def _means(window: BatchWindow) -> np.ndarray:
    """``(E,)`` every pair's calibrated mean unsubscription, users in id order (the LP's)."""
    return np.concatenate([window.scores[u].means["unsubscription"] for u in sorted(window.scores)])


FLOORS = pytest.mark.parametrize("floor", [0.0, 0.2])


@FLOORS
@pytest.mark.parametrize("mean_rows", [False, True])
def test_each_plan_meets_the_budget_and_provider_rows_of_its_own_draw(mean_rows: bool, floor: float) -> None:
    window = _window()
    lp = BatchLP.build(window.opened, window.scores, mean_rows=mean_rows)  # type: ignore[arg-type]
    cfg = AllocatorWorkerConfig.for_prefix(solver="highs", exploration_floor=floor)
    plans = plans_of(lp, lp.to_problem(), cfg, DualMemory())
    assert lp.n_draws == K and len(plans.solved) == K
    means = _means(window)
    on_means = []
    for k, sol in enumerate(plans.solved):
        v = violations(lp.draw(k).to_problem(), sol.x)
        assert v.max_relative_violation <= 1e-6, (k, v.listing())
        draw = np.concatenate([window.scores[u].draws["unsubscription"][k] for u in sorted(window.scores)])
        assert draw @ sol.x <= 2.0 + 1e-6  # the budget on this draw's sampled costs
        on_means.append(means @ sol.x)
    if mean_rows:  # and on the posterior means, in every plan
        assert max(on_means) <= 2.0 + 1e-6, on_means
    elif floor == 0:  # which the plans on the draws alone overspend here: the rows above bind
        assert min(on_means) > 2.0 * 1.2, on_means
    if floor > 0:  # each plan is its unfloored plan with the floor of its own draw's LP
        bare = plans_of(lp, lp.to_problem(), AllocatorWorkerConfig.for_prefix(solver="highs"), DualMemory())
        for k, sol in enumerate(plans.solved):
            floored = with_floor(lp.draw(k).to_problem(), bare.solved[k].x, floor)
            np.testing.assert_allclose(sol.x, floored.x, rtol=0, atol=1e-12)
    # the plans differ (else the mixture would explore nothing) and the propensity is their mean
    assert not np.allclose(plans.solved[0].x, plans.solved[1].x)
    np.testing.assert_allclose(plans.propensity, np.mean([s.x for s in plans.solved], axis=0))


@FLOORS
@pytest.mark.parametrize("mean_rows", [False, True])
def test_empirical_send_frequencies_equal_the_logged_propensities_and_caps_hold(mean_rows: bool, floor: float) -> None:
    window = _window()
    lp = BatchLP.build(window.opened, window.scores, mean_rows=mean_rows)  # type: ignore[arg-type]
    problem = lp.to_problem()
    cfg = AllocatorWorkerConfig.for_prefix(solver="highs", exploration_floor=floor)
    plans = plans_of(lp, problem, cfg, DualMemory())
    sent = np.zeros(lp.n_pairs)
    for r in range(REPEATS):
        k, chosen = pick_and_round(lp, problem, plans, "sample", np.random.default_rng(r))
        per_user = np.bincount(lp.user, weights=chosen, minlength=lp.n_users)
        planned = np.bincount(lp.user, weights=plans.solved[k].x, minlength=lp.n_users)
        assert np.all(per_user <= lp.user_cap)
        # systematic sampling sends floor or ceil of the plan's expected count: the cap exactly
        # whenever the plan fills it
        full = np.isclose(planned, lp.user_cap)
        assert np.all(per_user[full] == lp.user_cap[full])
        sent += chosen
    p = plans.propensity
    freq = sent / REPEATS
    se = np.sqrt(p * (1 - p) / REPEATS)
    certain = (p < 1e-12) | (p > 1 - 1e-12)
    assert np.all(freq[certain] == np.round(p[certain]))  # never sent, or always
    z = np.abs(freq - p)[~certain] / se[~certain]
    assert ((p > 0.05) & (p < 0.95)).sum() >= 10  # enough genuinely random pairs to test
    assert z.max() <= 3.0, sorted(z)[-5:]


@FLOORS
@pytest.mark.parametrize("mean_rows", [False, True])
def test_every_candidate_logs_the_mixture_propensity_and_k_on_its_decision(mean_rows: bool, floor: float) -> None:
    window = _window()
    cfg = AllocatorWorkerConfig.for_prefix(solver="highs", mean_budget_rows=mean_rows, exploration_floor=floor)
    lp = BatchLP.build(window.opened, window.scores, mean_rows=mean_rows)  # type: ignore[arg-type]
    expected = plans_of(lp, lp.to_problem(), cfg, DualMemory()).propensity
    decided = decide_batch(window, cfg, SERDE, DualMemory(), lambda: 0.0)
    assert len(decided.records) == N_USERS
    logged = []
    for _, value in decided.records:
        d = SERDE.decode("decisions", value)
        assert d["n_draws"] == K and d["policy"] == "banditlp"
        by_item = {a["item_id"]: a["propensity"] for a in d["allocation"]}
        assert all(c["propensity"] == by_item[c["item_id"]] for c in d["chosen"])
        assert all(by_item[c["item_id"]] > 0 for c in d["chosen"])  # nothing sent that cannot be
        logged += [a["propensity"] for a in d["allocation"]]
    np.testing.assert_allclose(logged, expected, rtol=0, atol=1e-12)
