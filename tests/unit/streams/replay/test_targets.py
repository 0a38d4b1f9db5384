"""Target policies against independent truths: nn_lp's x is a HiGHS solve (scipy's) of the same LP,
greedy is each user's top-cap by a plain loop, uniform sends cap per user, logged is the log."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from streams.replay.errors import ReplayInputError
from streams.replay.log import ReplayLog
from streams.replay.targets import TARGETS, TargetSettings, make_target, register
from tests.unit.streams.replay.logs import lp_log as _log


def _scipy_lp(log: ReplayLog, batch: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(pairs of the batch, x, objective)``: the batch's LP built here and solved by scipy's HiGHS."""
    control = log.batches[batch]
    rounds = np.flatnonzero(log.round_batch == batch)
    pairs = np.concatenate([np.arange(log.starts[r], log.starts[r + 1]) for r in rounds])
    reward = log.means[pairs, 0] * np.maximum(log.means[pairs, 2], 0.0)
    rows, rhs = [], []
    for r in rounds:  # user caps
        rows.append(np.isin(pairs, np.arange(log.starts[r], log.starts[r + 1])).astype(float))
        rhs.append(float(log.user_cap[r]))
    for budget in control.budgets:
        rows.append(log.means[pairs, 1])
        rhs.append(budget.limit)
    providers = np.array([log.provider_ids[j] for j in pairs])
    for spec in control.providers:
        member = (providers == spec.provider_id).astype(float)
        if np.isfinite(spec.max_exposure):
            rows.append(member)
            rhs.append(spec.max_exposure)
        rows.append(-member)
        rhs.append(-spec.min_exposure)
    res = linprog(-reward, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=(0, 1), method="highs")
    assert res.status == 0, res.message
    return pairs, res.x, -res.fun


@pytest.mark.parametrize("solver", ["highs", "dual"])
def test_nn_lp_is_the_lp_on_the_calibrated_means_under_each_batch_s_constraints(solver: str) -> None:
    log = _log()
    x = make_target("nn_lp", TargetSettings(solver=solver)).probabilities(log)
    reward = log.mean("reward")
    for b in range(len(log.batches)):
        pairs, exact, objective = _scipy_lp(log, b)
        assert float(reward[pairs] @ x[pairs]) == pytest.approx(objective, rel=1e-4 if solver == "dual" else 1e-7)
        if solver == "highs":  # a unique optimum (continuous random coefficients): the same vertex
            np.testing.assert_allclose(x[pairs], exact, atol=1e-6)
        budget = log.batches[b].budgets[0].limit
        assert float(log.mean("unsubscription")[pairs] @ x[pairs]) <= budget * (1 + 1e-6)
    assert np.all((x >= 0) & (x <= 1))
    per_user = np.bincount(log.round_index, weights=x, minlength=log.n_rounds)
    assert np.all(per_user <= log.user_cap + 1e-9)


def test_an_infeasible_batch_is_solved_elastic_as_the_allocator_does() -> None:
    log = _log(budget=1e-6)  # the provider minimum cannot be met within this budget
    x = make_target("nn_lp").probabilities(log)
    assert np.all((x >= 0) & (x <= 1)) and x.sum() > 0


def test_greedy_sends_each_user_s_top_cap_pairs_by_mean_reward() -> None:
    log = _log()
    x = make_target("greedy").probabilities(log)
    reward = log.mean("reward")
    expected = np.zeros(log.n_pairs)
    for r in range(log.n_rounds):
        s, e = log.starts[r], log.starts[r + 1]
        best = sorted(range(s, e), key=lambda j: (-reward[j], j))[: log.user_cap[r]]
        expected[best] = 1.0
    np.testing.assert_array_equal(x, expected)


def test_uniform_sends_the_cap_per_user_spread_evenly_and_logged_is_the_log() -> None:
    log = _log(caps=(1, 2, 9))  # a cap of 9 is more than any user's candidates
    x = make_target("uniform").probabilities(log)
    per_user = np.bincount(log.round_index, weights=x, minlength=log.n_rounds)
    np.testing.assert_allclose(per_user, np.minimum(log.user_cap, np.diff(log.starts)))
    for r in range(log.n_rounds):
        assert np.ptp(x[log.starts[r] : log.starts[r + 1]]) == 0
    np.testing.assert_array_equal(make_target("logged").probabilities(log), log.propensity)


def test_the_registry_names_its_policies_and_refuses_unknown_or_repeated_ones() -> None:
    assert {"logged", "nn_lp", "greedy", "uniform", "bts"} <= set(TARGETS)
    with pytest.raises(ReplayInputError, match="unknown target policy 'nope'; known: bts, greedy"):
        make_target("nope")
    with pytest.raises(ReplayInputError, match="registered already"):
        register("greedy", lambda settings: make_target("uniform"))
    with pytest.raises(ReplayInputError, match="solver must be one of"):
        TargetSettings(solver="cplex")


def test_targets_that_read_calibrated_means_refuse_a_log_without_them() -> None:
    log = _log()
    means = log.means.copy()
    means[3, 0] = np.nan
    import dataclasses

    gap = dataclasses.replace(log, means=means)
    with pytest.raises(ReplayInputError, match="greedy needs a calibrated mean reward"):
        make_target("greedy").probabilities(gap)
    with pytest.raises(ReplayInputError, match="pairs without a calibrated mean of reward"):
        make_target("nn_lp").probabilities(gap)
