"""The live tuner's step without a broker: per-arm totals to observations (per send), and the arms it
publishes from them (at most max_arms, summing to 1, in the box, deterministic), on a known metric."""

from __future__ import annotations

import numpy as np
import pytest

from streams.tune.job import ArmTotals, TunerJobConfig, TunerState, initial_arms, observations, tuned_arms

CONFIG = TunerJobConfig(min_feedback=10, max_arms=4, n_samples=256, n_candidates=32, max_unsubscription_rate=0.05)


def state_of(reward: dict[float, float], unsub: dict[float, float], n: int = 1000) -> TunerState:
    state = TunerState()
    for tau in reward:
        arm = f"t{tau:g}"
        state.knobs_of[arm] = {"tau": tau}
        state.totals[arm] = ArmTotals(n, 0, round(unsub[tau] * n), reward[tau] * n)
    return state


def test_observations_are_per_send_and_only_of_arms_with_knobs_and_enough_feedback() -> None:
    state = state_of({0.5: 0.2, 1.0: 0.1}, {0.5: 0.01, 1.0: 0.03})
    state.totals["t1"].add({"n_feedback": 1000, "conversions": 5, "unsubscriptions": 30, "value_sum": 100.0})
    state.totals["unknown"] = ArmTotals(5000, 1, 1, 1.0)  # no knobs known: not an observation
    state.knobs_of["few"] = {"tau": 1.5}
    state.totals["few"] = ArmTotals(9, 1, 0, 1.0)  # under min_feedback
    X, Y, arms = observations(state, CONFIG)
    assert arms == ["t0.5", "t1"]
    np.testing.assert_allclose(X, [[0.5], [1.0]])
    np.testing.assert_allclose(Y, [[0.2, 0.01], [200.0 / 2000, 60 / 2000]])


def test_initial_arms_split_the_box_evenly() -> None:
    arms = initial_arms(CONFIG)
    assert [a.parameters["tau"] for a in arms] == pytest.approx([0.25, 0.75, 1.25, 1.75])
    assert sum(a.probability for a in arms) == pytest.approx(1.0)


def test_tuned_arms_concentrate_near_the_best_feasible_tau() -> None:
    taus = [0.1, 0.4, 0.7, 1.0, 1.3, 1.6, 1.9]
    reward = {t: 1.0 - (t - 0.7) ** 2 for t in taus}  # best at 0.7, feasible everywhere but tau > 1.5
    unsub = {t: 0.02 if t < 1.5 else 0.2 for t in taus}
    state = state_of(reward, unsub)
    arms = tuned_arms(state, CONFIG)
    assert arms is not None and 1 <= len(arms) <= CONFIG.max_arms
    assert sum(a.probability for a in arms) == pytest.approx(1.0)
    assert all(0.0 <= a.parameters["tau"] <= 2.0 for a in arms)
    mass_near = sum(a.probability for a in arms if abs(a.parameters["tau"] - 0.7) < 0.3)
    assert mass_near >= 0.8
    again = tuned_arms(state_of(reward, unsub), CONFIG)
    assert again == arms


def test_too_few_observations_publish_nothing() -> None:
    assert tuned_arms(state_of({0.5: 0.2}, {0.5: 0.01}), CONFIG) is None


def test_an_overlap_floor_keeps_the_mass_where_decisions_are_stable() -> None:
    """Reward grows with tau, overlap@K falls with it (1 - tau / 2): with a floor of 0.6 the best feasible
    tau is 0.8, without one 1.9."""
    taus = [0.1, 0.4, 0.7, 1.0, 1.3, 1.6, 1.9]
    config = TunerJobConfig(
        min_feedback=10, max_arms=4, n_samples=256, n_candidates=32, max_unsubscription_rate=0.05, min_overlap=0.6
    )
    state = state_of({t: 0.5 + 0.2 * t for t in taus}, {t: 0.01 for t in taus})
    for t in taus:
        state.totals[f"t{t:g}"].add(
            {"n_feedback": 0, "conversions": 0, "unsubscriptions": 0, "value_sum": 0.0,
             "overlap_sum": 100 * (1 - t / 2), "overlap_users": 100}
        )  # fmt: skip
    state.knobs_of["unstable"] = {"tau": 0.2}
    state.totals["unstable"] = ArmTotals(1000, 0, 0, 900.0)  # no user decided twice: not an observation
    X, Y, arms = observations(state, config)
    assert "unstable" not in arms and Y.shape == (7, 3)
    np.testing.assert_allclose(Y[:, 2], [1 - t / 2 for t in taus])
    arms_floor = tuned_arms(state, config)
    assert arms_floor is not None
    assert sum(a.probability for a in arms_floor if a.parameters["tau"] <= 0.8 + 0.15) >= 0.8
    arms_free = tuned_arms(state, TunerJobConfig(**{**config.__dict__, "min_overlap": None}))
    assert arms_free is not None and sum(a.probability for a in arms_free if a.parameters["tau"] > 1.5) >= 0.8
    with pytest.raises(Exception, match="min_overlap"):
        TunerJobConfig(min_overlap=1.5)
