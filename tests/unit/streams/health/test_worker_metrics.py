"""The health worker's instruments: alarms counted by name, the last batch's finite metrics as
gauges (a metric the batch could not measure loses its series), read back through the text format."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import WorkerMetrics


def _samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_alarms_are_counted_by_name_and_gauges_follow_the_last_batch() -> None:
    m = WorkerMetrics()
    m.health_published({"selection_entropy": 1.5, "overlap_at_k": math.nan}, ["feature_drift"])
    m.health_published(
        {"selection_entropy": 1.25, "overlap_at_k": 0.5}, ["feature_drift", "rate_shift.conversion", "feature_drift"]
    )
    m.health_published({"selection_entropy": 1.0, "overlap_at_k": math.nan}, [])
    s = _samples(m)
    assert s[("banditlp_health_batches_total", ())] == 3
    alarms = {dict(k[1])["alarm"]: v for k, v in s.items() if k[0] == "banditlp_health_alarms_total"}
    assert alarms == {"feature_drift": 3, "rate_shift.conversion": 1}
    gauges = {dict(k[1])["metric"]: v for k, v in s.items() if k[0] == "banditlp_health_value"}
    assert gauges == {"selection_entropy": 1.0}
