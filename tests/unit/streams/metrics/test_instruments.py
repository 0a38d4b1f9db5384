"""The instruments against values computed here: a report's rows, the counters' sums, the lag."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.errors import ConfigError
from streams.metrics import MetricsConfig, WorkerMetrics, committed_lag, serve
from streams.metrics.batch import BatchObservation, constraint_rows


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def report(**over: object) -> dict:
    base = {
        "batch_id": "b1",
        "status": "optimal; fallback: 2 users, 1 sends",
        "solver": "highs",
        "objective": 12.5,
        "iterations": 17,
        "budgets": [
            {"name": "unsub", "dual": 0.75, "used": 10.5, "limit": 10.0, "fallback_used": 0.0},
            {"name": "spam", "dual": 0.0, "used": 3.0, "limit": 5.0, "fallback_used": 0.0},
        ],
        "providers": [
            {"provider_id": "p0", "dual": 0.2, "exposure": 3.0, "min_exposure": 4.0, "max_exposure": None},
            {"provider_id": "p1", "dual": -0.1, "exposure": 9.0, "min_exposure": 0.0, "max_exposure": 8.5},
            {"provider_id": "p2", "dual": 0.0, "exposure": 5.0, "min_exposure": 1.0, "max_exposure": 6.0},
        ],
    }
    base.update(over)
    return base


def test_constraint_rows_are_each_rows_distance_outside_its_bounds() -> None:
    rows = {r.name: (r.dual, r.violation) for r in constraint_rows(report())}
    assert rows == {
        "budget:unsub": (0.75, pytest.approx(0.5)),
        "budget:spam": (0.0, 0.0),
        "provider:p0": (0.2, pytest.approx(1.0)),  # 1 below its minimum
        "provider:p1": (-0.1, pytest.approx(0.5)),  # 0.5 above its maximum
        "provider:p2": (0.0, 0.0),
    }


def test_status_label_is_the_first_word() -> None:
    assert BatchObservation(report()).status == "optimal"
    assert BatchObservation(report(status="rejected: no Thompson draw")).status == "rejected"
    assert BatchObservation(report(status="")).status == "unknown"


def test_a_batch_sets_rows_and_counts_and_a_later_shape_drops_old_rows() -> None:
    m = WorkerMetrics()
    m.batch_decided(
        BatchObservation(
            report(),
            solve_seconds=(0.01, 0.02, 0.5),
            open_to_close_s=3.0,
            close_to_decision_s=0.4,
            n_decisions=300,
            n_fallback=2,
            versions={("email", 3, "default"): 250, ("email", 4, "arm-b"): 48},
        )
    )
    got = samples(generate_latest(m.registry).decode())
    assert got[("banditlp_lp_solves_total", (("solver", "highs"),))] == 3
    assert got[("banditlp_lp_solve_seconds_count", (("solver", "highs"),))] == 3
    assert got[("banditlp_lp_solve_seconds_sum", (("solver", "highs"),))] == pytest.approx(0.53)
    assert got[("banditlp_lp_iterations", ())] == 17
    assert got[("banditlp_lp_objective", ())] == 12.5
    assert got[("banditlp_lp_constraint_violation", (("constraint", "budget:unsub"),))] == pytest.approx(0.5)
    assert got[("banditlp_lp_dual", (("constraint", "provider:p1"),))] == -0.1
    assert got[("banditlp_batches_total", (("status", "optimal"),))] == 1
    assert got[("banditlp_decisions_total", ())] == 300
    assert got[("banditlp_fallback_decisions_total", ())] == 2
    assert got[("banditlp_model_version", (("model", "email"),))] == 4
    assert got[("banditlp_parameter_version_decisions", (("parameter_version", "arm-b"),))] == 48
    assert got[("banditlp_batch_open_to_close_seconds_sum", ())] == 3.0
    assert got[("banditlp_batch_close_to_decision_seconds_count", ())] == 1

    m.batch_decided(BatchObservation(report(providers=[], status="elastic"), n_decisions=10))
    got = samples(generate_latest(m.registry).decode())
    assert ("banditlp_lp_dual", (("constraint", "provider:p1"),)) not in got
    assert ("banditlp_parameter_version_decisions", (("parameter_version", "arm-b"),)) not in got
    assert got[("banditlp_decisions_total", ())] == 310
    assert got[("banditlp_batches_total", (("status", "elastic"),))] == 1
    assert got[("banditlp_lp_solves_total", (("solver", "highs"),))] == 3  # no LP this time


def test_two_registries_in_one_process_are_independent() -> None:
    a, b = WorkerMetrics(), WorkerMetrics()
    a.consumed("scores", 5)
    b.consumed("scores", 2)
    a.dead_lettered("scores", "DecodeError", 3)
    assert samples(generate_latest(a.registry).decode())[("banditlp_records_in_total", (("topic", "scores"),))] == 5
    got_b = samples(generate_latest(b.registry).decode())
    assert got_b[("banditlp_records_in_total", (("topic", "scores"),))] == 2
    assert not any(name == "banditlp_dead_letters_total" for name, _ in got_b)


def test_committed_lag_skips_unknown_offsets_and_never_goes_negative() -> None:
    high = {("a", 0): 100, ("a", 1): 50, ("a", 2): -1001, ("a", 3): 7}
    done = {("a", 0): 60, ("a", 1): 55, ("a", 2): 0, ("a", 3): None}
    assert committed_lag(high, done) == {("a", 0): 40, ("a", 1): 0}


def test_lag_gauges_follow_the_assignment() -> None:
    m = WorkerMetrics()
    m.set_lag({("t", 0): 4, ("t", 1): 2})
    m.set_lag({("t", 1): 9})
    got = samples(generate_latest(m.registry).decode())
    lag = {k: v for k, v in got.items() if k[0] == "banditlp_consumer_lag_records"}
    assert lag == {("banditlp_consumer_lag_records", (("partition", "1"), ("topic", "t"))): 9}


def test_serve_exposes_the_registry_and_a_taken_port_is_a_config_error() -> None:
    m = WorkerMetrics()
    m.produced("decisions", 7)
    server = serve(m.registry, 0)
    try:
        text = urllib.request.urlopen(server.url, timeout=10).read().decode()
        assert samples(text)[("banditlp_records_out_total", (("topic", "decisions"),))] == 7
        with pytest.raises(ConfigError, match="metrics endpoint"):
            serve(WorkerMetrics().registry, server.port)
    finally:
        server.close()


def test_metrics_config_bounds() -> None:
    assert not MetricsConfig().enabled and MetricsConfig(port=9000).enabled
    with pytest.raises(ConfigError):
        MetricsConfig(port=70000)
    with pytest.raises(ConfigError):
        MetricsConfig(lag_interval_s=0)


def test_a_retrain_is_timed_and_sets_the_published_version() -> None:
    m = WorkerMetrics()
    m.trained(2.5, "email", 3)
    m.trained(4.0, "email", 4)
    got = samples(generate_latest(m.registry).decode())
    assert got[("banditlp_training_seconds_count", ())] == 2
    assert got[("banditlp_training_seconds_sum", ())] == 6.5
    assert got[("banditlp_model_version", (("model", "email"),))] == 4


def test_scoring_takes_are_timed_and_their_pairs_counted() -> None:
    m = WorkerMetrics()
    for seconds, pairs in ((0.004, 80), (0.02, 400)):
        m.scored(seconds, pairs)
    got = samples(generate_latest(m.registry).decode())
    assert got[("banditlp_scored_pairs_total", ())] == 480
    assert got[("banditlp_scoring_seconds_count", ())] == 2
    assert got[("banditlp_scoring_seconds_bucket", (("le", "0.005"),))] == 1  # one take under 5 ms
