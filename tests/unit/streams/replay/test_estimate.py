"""Estimating targets on a replayed log: exactly ``evaluation.ope.evaluate`` where the target is
supported; off support the model estimators use the model and IPS counts nothing; budget usage;
the ``ope.json`` layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.ope import DM, DR, IPS, SNIPS, LoggedPairs, evaluate
from streams.replay.errors import ReplayInputError
from streams.replay.estimate import budget_usage, estimate_policy, evaluate_log
from tests.unit.streams.replay.logs import lp_log as _log


def _synthetic(seed: int = 0, n: int = 400, k: int = 5) -> tuple[LoggedPairs, dict[str, np.ndarray]]:
    """``n`` rounds of ``k`` candidates, one send each from a random behaviour with full support."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), size=n)
    choice = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    sent = np.zeros((n, k), dtype=bool)
    sent[np.arange(n), choice] = True
    mean = rng.uniform(0.0, 1.0, (n, k))
    logged = LoggedPairs(
        round_index=np.repeat(np.arange(n), k),
        n_rounds=n,
        sent=sent.ravel(),
        propensity=p.ravel(),
        outcomes={
            "reward": (rng.random((n, k)) < mean).astype(float).ravel(),
            "unsubscription": (rng.random((n, k)) < 0.1).astype(float).ravel(),
        },
    )
    predicted = {"reward": (mean + rng.normal(0, 0.1, (n, k))).ravel(), "unsubscription": np.full(n * k, 0.1)}
    return logged, predicted


def test_with_full_support_every_estimate_and_interval_is_evaluation_ope_s() -> None:
    logged, predicted = _synthetic()
    target = np.random.default_rng(1).dirichlet(np.ones(5), size=400).ravel()
    ours, unsupported = estimate_policy(logged, target, predicted, n_bootstrap=300, seed=7)
    theirs = evaluate(logged, target, predicted, n_bootstrap=300, seed=7)
    assert unsupported == 0.0
    assert ours == theirs  # the same values and intervals, estimator by estimator


def test_off_support_the_model_estimators_use_the_model_and_ips_counts_nothing() -> None:
    logged, predicted = _synthetic()
    p = np.array(logged.propensity)
    unsent = np.flatnonzero(~logged.sent)[::3]
    p[unsent] = 0.0  # pairs the behaviour never sends
    holes = LoggedPairs(logged.round_index, logged.n_rounds, logged.sent, p, dict(logged.outcomes))
    target = np.random.default_rng(2).dirichlet(np.ones(5), size=400).ravel()
    on = np.where(p > 0, target, 0.0)  # the supported part: evaluation.ope accepts it
    off = target - on
    ours, unsupported = estimate_policy(holes, target, predicted, n_bootstrap=50, seed=0)
    assert unsupported == pytest.approx(off.sum() / target.sum())
    for outcome in ("reward", "unsubscription"):
        y = predicted[outcome]
        model_off = float(off @ y) / logged.n_rounds
        for estimator in (DM(), DR()):
            supported = estimator.estimate(holes, on, predicted, outcome=outcome)
            assert ours[outcome][estimator.name].value == pytest.approx(supported + model_off, rel=1e-12)
        assert ours[outcome]["ips"].value == pytest.approx(IPS().estimate(holes, on, outcome=outcome), rel=1e-12)
        # SNIPS: the supported pairs' ratio times all the target's sends
        ratio = SNIPS().estimate(holes, on, outcome=outcome) / (on.sum() / logged.n_rounds)
        assert ours[outcome]["snips"].value == pytest.approx(ratio * target.sum() / logged.n_rounds, rel=1e-12)


BAD_TARGETS = [
    (np.full(3, 0.5), "must be \\(2000,\\) probabilities"),
    (np.full(2000, 1.5), "in \\[0, 1\\]"),
    (np.full(2000, np.nan), "in \\[0, 1\\]"),
]


@pytest.mark.parametrize(("target", "match"), BAD_TARGETS)
def test_a_malformed_target_is_a_typed_error(target: np.ndarray, match: str) -> None:
    logged, predicted = _synthetic()
    with pytest.raises(ReplayInputError, match=match):
        estimate_policy(logged, target, predicted)


def test_budget_usage_is_the_target_s_expected_cost_over_each_batch_s_limit() -> None:
    log = _log()
    target = np.full(log.n_pairs, 0.5)
    usage = budget_usage(log, target)
    for b, control in enumerate(log.batches):
        pairs = log.batch_of_pairs() == b
        expected = 0.5 * log.means[pairs, 1].sum() / control.budgets[0].limit
        assert usage[control.batch_id]["unsubs"] == pytest.approx(expected)


def test_ope_json_holds_every_policy_s_estimates_the_logged_means_and_the_extras() -> None:
    log = _log()
    result = evaluate_log(log, ["logged", "nn_lp", "uniform"], n_bootstrap=50, seed=1, source={"kind": "test"})
    document = json.loads(json.dumps(result.as_json()))  # JSON-ready
    assert list(document["policies"]) == ["logged", "nn_lp", "uniform"]
    for entry in document["policies"].values():
        for outcome in ("reward", "unsubscription"):
            assert set(entry[outcome]) == {"ips", "snips", "dm", "dr", "switch_dr", "dros"}
            for e in entry[outcome].values():
                assert set(e) == {"value", "ci"} and e["ci"][0] <= e["ci"][1]
        assert set(entry["budget_usage"]) == {"b1", "b2"}
    logged = document["logged"]
    assert logged["n"] == log.n_rounds and logged["reward"] == pytest.approx(log.value.sum() / log.n_rounds)
    # the logged policy's IPS is its observed mean: every weight is 1
    assert document["policies"]["logged"]["reward"]["ips"]["value"] == pytest.approx(logged["reward"])
    assert document["join"]["rounds"] == log.n_rounds and document["source"] == {"kind": "test"}


def test_evaluate_log_refuses_no_repeated_or_unknown_policies() -> None:
    log = _log()
    for policies, match in (([], "at least one"), (["uniform", "uniform"], "repeated"), (["x"], "unknown")):
        with pytest.raises(ReplayInputError, match=match):
            evaluate_log(log, policies, n_bootstrap=10)
