"""The estimators against independent truths: closed-form policy values, textbook loops, limits and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditlp.arrays import FloatArray
from evaluation.errors import OPEInputError
from evaluation.ope import DM, DR, ESTIMATORS, IPS, SNIPS, DRos, Estimator, LoggedPairs, SwitchDR, logged_value
from tests.unit.evaluation.ope.test_worlds import World, multi_send_world, single_slot_world

N_LOGS = 500


def _estimates(world: World, estimators: list[Estimator], n_logs: int, seed: int) -> FloatArray:
    """``(len(estimators), n_logs)`` estimates on independent logs of ``world``."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(estimators), n_logs))
    for j in range(n_logs):
        log = world.log(rng)
        for i, estimator in enumerate(estimators):
            out[i, j] = estimator.estimate(log, world.target_pairs, world.predicted_pairs, outcome="reward")
    return out


def _within_3_se(samples: FloatArray, truth: float) -> bool:
    return abs(samples.mean() - truth) < 3 * samples.std(ddof=1) / math.sqrt(samples.size)


def test_ips_dr_and_snips_average_to_the_closed_form_value_over_simulated_logs() -> None:
    world = single_slot_world(300, seed=10)
    ips, dr, snips = _estimates(world, [IPS(), DR(), SNIPS()], N_LOGS, seed=11)
    assert _within_3_se(ips, world.value)
    assert _within_3_se(dr, world.value)
    assert _within_3_se(snips, world.value)  # SNIPS' O(1/n) bias is far below 3 SE here
    # The check has power: the behaviour's observed value is many SE away from the target's.
    observed = np.array([logged_value(world.log(np.random.default_rng(s)), "reward") for s in range(100)])
    assert abs(observed.mean() - world.value) > 10 * ips.std(ddof=1) / math.sqrt(N_LOGS)


def test_dr_varies_less_than_ips_with_a_decent_outcome_model() -> None:
    world = single_slot_world(300, seed=12, model_noise=0.05)
    ips, dr = _estimates(world, [IPS(), DR()], N_LOGS, seed=13)
    # The Bernoulli noise of the outcomes is left to both; DR removes the spread of the means.
    assert dr.var(ddof=1) < 0.8 * ips.var(ddof=1)


def test_ips_and_dr_are_unbiased_and_snips_consistent_for_the_per_round_total_when_rounds_send_several_pairs() -> None:
    world = multi_send_world(200, k=5, seed=14)
    ips, dr, snips = _estimates(world, [IPS(), DR(), SNIPS()], N_LOGS, seed=15)
    assert world.target.sum(axis=1).mean() > 1.5  # several sends per round: a total, not a mean per send
    assert _within_3_se(ips, world.value)
    assert _within_3_se(dr, world.value)
    assert _within_3_se(snips, world.value)  # scaled by the target's sends, SNIPS estimates the total too


def test_single_slot_estimates_equal_the_textbook_formulas_computed_round_by_round() -> None:
    world = single_slot_world(40, k=3, seed=16)
    log = world.log(np.random.default_rng(17))
    n, k = world.mu.shape
    sent, y = log.sent.reshape(n, k), log.outcomes["reward"].reshape(n, k)
    pi_b, pi_e, q = world.behaviour, world.target, world.predicted
    tau, lam = 1.5, 2.0
    ips = snips_num = snips_den = dm = dr = switch = dros = 0.0
    for i in range(n):
        a = int(np.flatnonzero(sent[i])[0])
        w = pi_e[i, a] / pi_b[i, a]
        r = y[i, a]
        v_dm = sum(pi_e[i, b] * q[i, b] for b in range(k))
        ips += w * r
        snips_num, snips_den = snips_num + w * r, snips_den + w
        dm += v_dm
        dr += v_dm + w * (r - q[i, a])
        switch += v_dm + (w * (r - q[i, a]) if w <= tau else 0.0)
        dros += v_dm + lam * w / (w * w + lam) * (r - q[i, a])
    expected = {
        "ips": ips / n,
        "snips": snips_num / snips_den,
        "dm": dm / n,
        "dr": dr / n,
        "switch_dr": switch / n,
        "dros": dros / n,
    }
    got = {
        name: est.estimate(log, world.target_pairs, world.predicted_pairs, outcome="reward")
        for name, est in [
            ("ips", IPS()),
            ("snips", SNIPS()),
            ("dm", DM()),
            ("dr", DR()),
            ("switch_dr", SwitchDR(tau=tau)),
            ("dros", DRos(lam=lam)),
        ]
    }
    assert got == pytest.approx(expected, rel=1e-12)
    # tau sits inside the range of the weights, so the switch is not DR or DM by accident.
    w_sent = (pi_e / pi_b)[sent]
    assert w_sent.min() < tau < w_sent.max()


@pytest.mark.parametrize(
    ("estimator", "equals"),
    [
        (SwitchDR(tau=math.inf), DR()),
        (SwitchDR(tau=0.0), DM()),
        (DRos(lam=math.inf), DR()),
        (DRos(lam=0.0), DM()),
    ],
)
def test_switch_dr_and_dros_reach_dr_and_dm_at_their_limits(estimator: Estimator, equals: Estimator) -> None:
    world = single_slot_world(60, seed=18)
    log = world.log(np.random.default_rng(19))
    args = (log, world.target_pairs, world.predicted_pairs)
    assert estimator.estimate(*args, outcome="reward") == pytest.approx(
        equals.estimate(*args, outcome="reward"), rel=1e-12
    )


def test_dros_approaches_dr_and_dm_as_lam_grows_and_shrinks() -> None:
    world = single_slot_world(60, seed=20)
    log = world.log(np.random.default_rng(21))
    args = (log, world.target_pairs, world.predicted_pairs)
    dr, dm = DR().estimate(*args, outcome="reward"), DM().estimate(*args, outcome="reward")
    assert abs(dr - dm) > 1e-3
    assert DRos(lam=1e12).estimate(*args, outcome="reward") == pytest.approx(dr, rel=1e-9)
    assert DRos(lam=1e-12).estimate(*args, outcome="reward") == pytest.approx(dm, rel=1e-9)


def test_the_registry_names_every_estimator_by_its_name() -> None:
    assert sorted(ESTIMATORS) == ["dm", "dr", "dros", "ips", "snips", "switch_dr"]
    assert all(cls.name == name for name, cls in ESTIMATORS.items())
    assert {name for name, cls in ESTIMATORS.items() if cls.needs_predicted} == {"dm", "dr", "switch_dr", "dros"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SwitchDR(tau=-1.0), "tau must be a number >= 0"),
        (lambda: SwitchDR(tau=math.nan), "tau must be a number >= 0"),
        (lambda: SwitchDR(tau="3"), "tau must be a number >= 0"),  # type: ignore[arg-type]
        (lambda: DRos(lam=-0.5), "lam must be a number >= 0"),
        (lambda: DRos(lam=math.nan), "lam must be a number >= 0"),
    ],
)
def test_estimator_parameters_are_validated(make: object, message: str) -> None:
    with pytest.raises(OPEInputError, match=message):
        make()  # type: ignore[operator]


@pytest.mark.parametrize("name", ["dm", "dr", "switch_dr", "dros"])
def test_a_model_estimator_without_a_model_raises(name: str) -> None:
    world = single_slot_world(10, seed=22)
    log = world.log(np.random.default_rng(23))
    with pytest.raises(OPEInputError, match=f"estimator '{name}' needs an outcome model"):
        ESTIMATORS[name]().estimate(log, world.target_pairs, None, outcome="reward")
    with pytest.raises(OPEInputError, match="needs an outcome model"):
        ESTIMATORS[name]().estimate(log, world.target_pairs, {"other": world.predicted.ravel()}, outcome="reward")


@pytest.mark.parametrize(
    ("round_weight", "message"),
    [
        (np.ones(9), r"round_weight must have shape \(10,\)"),
        (np.ones((2, 10)), r"round_weight must have shape \(10,\)"),
        (np.r_[np.ones(9), -1.0], "round_weight must be finite and >= 0"),
        (np.r_[np.ones(9), np.nan], "round_weight must be finite and >= 0"),
        (np.zeros(10), "round_weight must have a positive total"),
    ],
)
def test_bad_round_weights_raise(round_weight: FloatArray, message: str) -> None:
    world = single_slot_world(10, seed=24)
    log = world.log(np.random.default_rng(25))
    with pytest.raises(OPEInputError, match=message):
        IPS().estimate(log, world.target_pairs, outcome="reward", round_weight=round_weight)


# --- invariants over random logs ---------------------------------------------------------------


@st.composite
def _multi_send_cases(draw: st.DrawFn) -> tuple[LoggedPairs, FloatArray, dict[str, FloatArray], FloatArray]:
    """A random log of 1-6 rounds of 0-4 pairs each, a target, a model, and integer round counts."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 5, size=n)
    if sizes.sum() == 0:
        sizes[0] = 1
    round_index = np.repeat(np.arange(n, dtype=np.int64), sizes)
    m = round_index.size
    propensity = rng.uniform(0.05, 1.0, size=m)
    sent = rng.random(m) < propensity
    y = np.where(sent, rng.normal(size=m), np.nan)
    target = rng.random(m) * (rng.random(m) < 0.8)
    predicted = {"y": rng.normal(size=m)}
    counts = rng.integers(0, 4, size=n).astype(float)
    if counts.sum() == 0:
        counts[0] = 1.0
    log = LoggedPairs(round_index, n, sent, propensity, {"y": y})
    return log, target, predicted, counts


@settings(max_examples=60, deadline=None)
@given(_multi_send_cases(), st.sampled_from(sorted(ESTIMATORS)))
def test_round_weights_of_all_twos_give_the_estimate_of_ones(
    case: tuple[LoggedPairs, FloatArray, dict[str, FloatArray], FloatArray], name: str
) -> None:
    log, target, predicted, _ = case
    estimator = ESTIMATORS[name]()
    ones = estimator.estimate(log, target, predicted, outcome="y")
    twos = estimator.estimate(log, target, predicted, outcome="y", round_weight=np.full(log.n_rounds, 2.0))
    assert twos == pytest.approx(ones, rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(_multi_send_cases(), st.sampled_from(sorted(ESTIMATORS)))
def test_integer_round_weights_equal_the_log_with_each_round_repeated_that_many_times(
    case: tuple[LoggedPairs, FloatArray, dict[str, FloatArray], FloatArray], name: str
) -> None:
    log, target, predicted, counts = case
    # The repeated log, built round by round: copy c of round r becomes a round of its own.
    rows: list[int] = []
    copy_of_row: list[int] = []
    n_copies = 0
    for r in range(log.n_rounds):
        members = np.flatnonzero(log.round_index == r).tolist()
        for _ in range(int(counts[r])):
            rows.extend(members)
            copy_of_row.extend([n_copies] * len(members))
            n_copies += 1
    estimator = ESTIMATORS[name]()
    weighted = estimator.estimate(log, target, predicted, outcome="y", round_weight=counts)
    if not rows:  # only rounds without pairs were kept: every estimate is 0
        assert weighted == 0.0
        return
    take = np.array(rows, dtype=np.int64)
    repeated = LoggedPairs(
        round_index=np.array(copy_of_row, dtype=np.int64),
        n_rounds=n_copies,
        sent=log.sent[take],
        propensity=log.propensity[take],
        outcomes={"y": log.outcomes["y"][take]},
    )
    expected = estimator.estimate(repeated, target[take], {"y": predicted["y"][take]}, outcome="y")
    assert weighted == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(_multi_send_cases())
def test_ips_of_the_behaviour_itself_is_its_observed_value(
    case: tuple[LoggedPairs, FloatArray, dict[str, FloatArray], FloatArray],
) -> None:
    log, _, _, _ = case
    assert IPS().estimate(log, log.propensity, outcome="y") == pytest.approx(
        logged_value(log, "y"), rel=1e-12, abs=1e-12
    )
