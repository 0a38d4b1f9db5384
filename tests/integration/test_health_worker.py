"""The health worker on a real broker: a small simulate (the email world through the real scorer
and allocator workers) with ``banditlp health`` beside them; one ``health`` record per batch,
whose metrics are recomputed here by brute force from the decisions, contexts and feedback read
back (not from the worker's own code). Its ``--metrics-port`` endpoint is scraped before the
first batch and after the last, parsed with prometheus-client's text parser, and its counters'
increments checked against the records on the topics and the alarms in the health records."""

from __future__ import annotations

import math
import os
import urllib.request
import uuid
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from evaluation.email_world import EmailWorldConfig
from streams.cli.processes import WorkerSet
from streams.kafka.topics import create_topics, delete_topics, topic_specs
from streams.settings import Settings
from streams.simulate.feed import SimulatorConfig, SimulatorFeed
from streams.simulate.warm_start import publish_warm_start
from tests.integration.kafka_reading import read_all, read_raw, wait_until
from tests.integration.test_metrics_endpoint import Samples, answers, free_port, scrape, value

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_BATCHES, N_USERS = 5, 150
WORLD = EmailWorldConfig(n_users=N_USERS, n_items=40, n_providers=8, candidates_per_user=10, seed=7)
REFERENCE = 3  # the worker's default reference window


def _entropy(items: list[str], p: list[float]) -> float:
    mass: dict[str, float] = defaultdict(float)
    for i, w in zip(items, p):
        mass[i] += w
    total = sum(mass.values())
    return -sum(m / total * math.log(m / total) for m in mass.values() if m > 0)


def _overlap(prev: dict[str, dict[str, float]], cur: dict[str, dict[str, float]], k: int = 1) -> float:
    def top(shares: dict[str, float]) -> set[str]:
        ranked = sorted((-p, i) for i, p in shares.items() if p > 0)  # ties to the smaller item name
        return {i for _, i in ranked[:k]}

    scores = []
    for user in prev.keys() & cur.keys():
        a, b = top(prev[user]), top(cur[user])
        d = min(k, max(len(a), len(b)))
        if d:
            scores.append(len(a & b) / d)
    return sum(scores) / len(scores)


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    edges = np.quantile(reference, np.arange(1, 10) / 10)
    r = np.bincount(np.digitize(reference, edges), minlength=10) / reference.size
    c = np.bincount(np.digitize(current, edges), minlength=10) / current.size
    r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    return float(((c - r) * np.log(c / r)).sum())


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("health")
    settings = kafka_settings.with_prefix(f"h{uuid.uuid4().hex[:10]}-")
    names, connection, serde = settings.names, settings.connection, settings.serde()
    create_topics(connection, names, topic_specs(4))
    publish_warm_start(connection, serde, names, WORLD, "email", n_batches=2, seed=0)
    env = {**os.environ, **settings.to_env(), "BANDITLP_STATE_DIR": str(tmp / "state"), "PYTHONUNBUFFERED": "1"}
    env.pop("BANDITLP_METRICS_PORT", None)
    port = free_port()
    (tmp / "logs").mkdir()
    workers = WorkerSet(tmp / "logs")
    feed = None
    try:
        workers.start("processors", ["worker", "processors"], env)
        workers.start("allocator", ["worker", "allocator", "--unknown-batch-timeout-s", "5"], env)
        workers.start("health", ["health", "--quiet-s", "5", "--metrics-port", str(port)], env)
        wait_until(lambda: answers(port), 120, "the health endpoint", alive=workers.check)
        wait_until(
            lambda: "batches already on" in (tmp / "logs" / "health.log").read_text(),
            120,
            "the health worker's start",
            alive=workers.check,
        )
        before = scrape(port)
        feed = SimulatorFeed(
            SimulatorConfig(names=names, world=WORLD, timeout_ms=120_000, decision_timeout_s=240.0), connection, serde
        )
        for b in range(N_BATCHES):
            workers.check()
            feed.run_batch(b)
        wait_until(
            lambda: len(read_all(connection, names("health"), "health")) >= N_BATCHES,
            120,
            "a health record per batch",
            alive=workers.check,
        )
        # the counter moves right after each record is produced
        wait_until(
            lambda: value(scrape(port), "banditlp_health_batches_total") >= N_BATCHES,
            60,
            "the health batches counted",
            alive=workers.check,
        )
        after = scrape(port)
        yield connection, names, tmp / "logs", (port, before, after)
    finally:
        if feed is not None:
            feed.close()
        workers.stop()
        delete_topics(connection, names.prefix)


def test_one_health_record_per_batch_recomputed_from_the_decisions(run: Any) -> None:
    connection, names, logs, _ = run
    health = [v for _, v in read_all(connection, names("health"), "health")]
    decisions = [v for _, v in read_all(connection, names("decisions"), "decisions")]
    contexts = [v for _, v in read_all(connection, names("decision-contexts"), "decision-contexts")]
    feedback = [v for _, v in read_all(connection, names("feedback"), "feedback")]
    batch_ids = sorted({d["batch_id"] for d in decisions})
    assert len(batch_ids) == N_BATCHES
    assert sorted(h["batch_id"] for h in health) == batch_ids  # one record per batch, none twice
    health.sort(key=lambda h: h["sequence"])
    assert [h["sequence"] for h in health] == list(range(N_BATCHES))
    assert [h["in_reference"] for h in health] == [b < REFERENCE for b in range(N_BATCHES)]

    shares: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for d in decisions:
        shares[d["batch_id"]][d["user_id"]] = {
            a["item_id"]: a["x"] if a["propensity"] is None else a["propensity"] for a in d["allocation"]
        }
    features: dict[str, list[list[float]]] = defaultdict(list)
    for c in contexts:
        features[c["batch_id"]] += [cand["features"] for cand in c["candidates"]]
    reference = np.array([f for h in health[:REFERENCE] for f in features[h["batch_id"]]], dtype=float)
    previous = None
    for h in health:
        v, per_user = h["values"], shares[h["batch_id"]]
        items = [i for u in per_user.values() for i in u]
        p = [w for u in per_user.values() for w in u.values()]
        assert h["n_users"] == N_USERS and h["n_pairs"] == len(p)
        assert v["selection_entropy"] == pytest.approx(_entropy(items, p), rel=1e-9)
        mass: dict[str, float] = defaultdict(float)
        for i, w in zip(items, p):
            mass[i] += w
        assert v["item_coverage"] == pytest.approx(sum(m > 0 for m in mass.values()) / len(mass))
        assert v["allocation_variance"] == pytest.approx(float(np.mean([w * (1 - w) for w in p])), rel=1e-9)
        if previous is None:
            assert v["overlap_at_k"] is None
        else:
            assert v["overlap_at_k"] == pytest.approx(_overlap(previous, per_user))
        previous = per_user
        if h["sequence"] >= REFERENCE:
            current = np.array(features[h["batch_id"]], dtype=float)
            worst = max(_psi(reference[:, j], current[:, j]) for j in range(reference.shape[1]))
            assert v["feature_psi_max"] == pytest.approx(worst, rel=1e-6)
        for alarm in h["alarms"]:
            assert alarm["value"] > alarm["threshold"] or alarm["name"].endswith("_collapse")
    # Every sent item's outcome is counted once, with its own batch (the simulator publishes a
    # batch's feedback right after its decisions, well within the worker's 5 s quiet time).
    per_batch = defaultdict(int)
    for f in feedback:
        per_batch[f["batch_id"]] += 1
    assert [h["n_outcomes"] for h in health] == [per_batch[h["batch_id"]] for h in health]
    assert [h["values"]["outcomes.conversion"] for h in health] == [per_batch[h["batch_id"]] for h in health]
    converted = defaultdict(list)
    for f in feedback:
        converted[f["batch_id"]].append(float(f["converted"]))
    means = {(c["decision_id"], cand["item_id"]): cand["mean_conversion"] for c in contexts for cand in c["candidates"]}
    for h in health:
        p = [means[(f["decision_id"], f["item_id"])] for f in feedback if f["batch_id"] == h["batch_id"]]
        y = converted[h["batch_id"]]
        z = (sum(y) - sum(p)) / math.sqrt(sum(q * (1 - q) for q in p))
        assert h["values"]["rate_z.conversion"] == pytest.approx(z, rel=1e-9)
        # the batch's log-likelihood ratio of conversion odds x1.5 (the default ratio; null odds 1)
        llr = sum(yi * math.log(1.5) - math.log(1.0 + 0.5 * q) for q, yi in zip(p, y))
        assert h["values"]["rate_llr.conversion"] == pytest.approx(llr, rel=1e-9, abs=1e-12)
    log = (logs / "health.log").read_text()
    assert "Traceback" not in log


def test_the_health_endpoint_parses_and_its_counters_moved(run: Any) -> None:
    connection, names, _, (port, before, after) = run

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"banditlp_records_in", "banditlp_health_alarms", "banditlp_health_batches"} <= families
    # every record of the four topics read once (the worker reads them from the beginning)
    for subject in ("decisions", "decision-contexts", "feedback", "allocation-reports"):
        n = len(read_raw(connection, names(subject)))
        assert value(after, "banditlp_records_in_total", topic=names(subject)) == n > 0, subject
    health = [v for _, v in read_all(connection, names("health"), "health")]
    assert delta("banditlp_health_batches_total") == len(health) == N_BATCHES
    assert delta("banditlp_records_out_total", topic=names("health")) == N_BATCHES
    raised: dict[str, int] = defaultdict(int)
    for h in health:
        for a in h["alarms"]:
            raised[a["name"]] += 1
    counted = {
        dict(labels)["alarm"]: v for (name, labels), v in after.items() if name == "banditlp_health_alarms_total"
    }
    assert counted == raised
    last = max(health, key=lambda h: h["sequence"])["values"]
    gauges = _gauges(after)
    assert gauges == {k: pytest.approx(v) for k, v in last.items() if v is not None}
    assert not any(k[0] == "banditlp_dead_letters_total" for k in after)


def _gauges(samples: Samples) -> dict[str, float]:
    return {dict(labels)["metric"]: v for (name, labels), v in samples.items() if name == "banditlp_health_value"}
