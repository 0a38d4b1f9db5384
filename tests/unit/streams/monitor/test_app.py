"""The monitor's store and app, without a broker: records fed to the store, ``/api/series``
checked against the values computed here from those records."""

from __future__ import annotations

import math

import pytest
from starlette.testclient import TestClient

from streams.errors import ConfigError
from streams.monitor import MonitorConfig, SeriesStore, build_app
from streams.monitor.store import health_row, report_row


def report(batch: str, objective: float, used: float, dual: float, n_fallback: int = 0) -> dict:
    return {
        "batch_id": batch,
        "status": "optimal",
        "solver": "highs",
        "objective": objective,
        "n_users": 10,
        "n_pairs": 40,
        "missing_users": [],
        "n_missing": n_fallback,
        "n_fallback": n_fallback,
        "budgets": [{"name": "unsub", "dual": dual, "used": used, "limit": 4.0, "fallback_used": 0.5}],
        "providers": [
            {"provider_id": "p0", "dual": -0.3, "exposure": 3.0, "min_exposure": 0.0, "max_exposure": 3.0},
            {"provider_id": "p1", "dual": 0.1, "exposure": 2.0, "min_exposure": 2.0, "max_exposure": None},
        ],
        "iterations": 12,
        "solve_seconds": 0.02,
        "window_seconds": 0.5,
        "decided_at_ms": 0,
    }


def test_a_report_row_is_what_the_reports_plots_show() -> None:
    row = report_row(report("b0", 7.5, 3.5, 0.25, n_fallback=2))
    assert row == {
        "objective": 7.5,
        "usage.unsub": (3.5 + 0.5) / 4.0,
        "dual.unsub": 0.25,
        "dual.provider": 0.3,  # the largest |dual| of the providers
        "fallback": 2.0,
        "missing": 2.0,
        "solve_seconds": 0.02,
        "window_seconds": 0.5,
    }


def health(batch: str, **values: float | None) -> dict:
    """A decoded ``health`` value (schemas/health.avsc)."""
    return {
        "batch_id": batch,
        "sequence": 3,
        "in_reference": False,
        "n_users": 10,
        "n_pairs": 40,
        "n_contexts": 10,
        "n_outcomes": 12,
        "model_versions": [2],
        "values": values,
        "alarms": [{"name": "feature_drift", "value": 0.4, "threshold": 0.2}],
        "computed_at_ms": 0,
    }


def test_a_health_row_is_its_plotted_values_and_the_alarm_count() -> None:
    record = health(
        "b0",
        selection_entropy=1.5,
        **{"ece.conversion": 0.02, "ece_threshold.conversion": 0.05, "feature_psi.3": 0.1, "feature_psi_max": 0.4},
        overlap_at_k=None,
    )
    assert health_row(record) == {
        "health.selection_entropy": 1.5,
        "health.ece.conversion": 0.02,
        "health.feature_psi_max": 0.4,
        "alarms": 1.0,
    }


def test_api_series_has_one_value_per_batch_in_arrival_order_and_null_where_missing() -> None:
    store = SeriesStore(history=10)
    reports = [report(f"b{i}", 10.0 + i, 1.0 + i, 0.1 * i, n_fallback=i) for i in range(4)]
    for r in reports:
        store.add_report(r)
    store.add_health({**health("b2", item_coverage=0.8, **{"rate_z.conversion": 1.2, "new_metric": 7.0}), "alarms": []})
    client = TestClient(build_app(store))
    got = client.get("/api/series")
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/json")
    data = got.json()
    assert data["batches"] == ["b0", "b1", "b2", "b3"]
    panels = {p["title"]: p for p in data["panels"]}
    assert panels["Objective"]["series"] == {"objective": [10.0, 11.0, 12.0, 13.0]}
    assert panels["Budget usage"]["series"]["usage.unsub"] == [(1.0 + i + 0.5) / 4.0 for i in range(4)]
    assert panels["Duals (shadow prices)"]["series"]["dual.unsub"] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert panels["Fallback decisions"]["series"]["fallback"] == [0.0, 1.0, 2.0, 3.0]
    assert set(panels["LP time"]["series"]) == {"solve_seconds", "window_seconds"}
    assert panels["Budget usage"]["ref"] == 1.0 and panels["Objective"]["ref"] is None
    assert panels["Exploration"]["series"] == {"health.item_coverage": [None, None, 0.8, None]}
    assert panels["Outcome rates"]["series"] == {"health.rate_z.conversion": [None, None, 1.2, None]}
    assert panels["Alarms"]["series"] == {"alarms": [None, None, 0.0, None]}
    assert panels["Health, other"]["series"] == {"health.new_metric": [None, None, 7.0, None]}
    assert "Calibration" not in panels  # no such value in any record


def test_without_health_records_there_is_no_health_panel() -> None:
    store = SeriesStore()
    store.add_report(report("b0", 1.0, 1.0, 0.0))
    titles = [p["title"] for p in TestClient(build_app(store)).get("/api/series").json()["panels"]]
    assert titles == ["Objective", "Budget usage", "Duals (shadow prices)", "Fallback decisions", "LP time"]


def test_the_history_is_bounded_oldest_first_out() -> None:
    store = SeriesStore(history=3)
    for i in range(5):
        store.add_report(report(f"b{i}", float(i), 1.0, 0.0))
    store.add_health(health("b4", item_coverage=1.0))  # merges into a kept batch
    data = store.series()
    assert data["batches"] == ["b2", "b3", "b4"] and len(store) == 3
    assert data["panels"][0]["series"]["objective"] == [2.0, 3.0, 4.0]


def test_non_finite_values_are_null_in_the_json() -> None:
    store = SeriesStore()
    store.add_report({**report("b0", math.nan, 1.0, 0.0), "window_seconds": math.inf})
    data = TestClient(build_app(store)).get("/api/series").json()
    panels = {p["title"]: p for p in data["panels"]}
    assert panels["Objective"]["series"]["objective"] == [None]
    assert panels["LP time"]["series"]["window_seconds"] == [None]


def test_the_page_is_self_contained_and_polls_the_api() -> None:
    store = SeriesStore()
    with TestClient(build_app(store, source="t-allocation-reports", poll_ms=1500)) as client:
        page = client.get("/").text
    assert "api/series" in page and "const POLL_MS = 1500;" in page and "t-allocation-reports" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no CDN, no remote script
    assert "<script src" not in page


def test_the_lifespan_runs_the_feed_hooks() -> None:
    calls: list[str] = []
    app = build_app(SeriesStore(), on_start=lambda: calls.append("start"), on_stop=lambda: calls.append("stop"))
    with TestClient(app) as client:
        client.get("/api/series")
        assert calls == ["start"]
    assert calls == ["start", "stop"]


def test_monitor_config_bounds() -> None:
    with pytest.raises(ConfigError):
        MonitorConfig(port=0)
    with pytest.raises(ConfigError):
        MonitorConfig(history=0)
    with pytest.raises(ConfigError):
        MonitorConfig(poll_ms=10)
