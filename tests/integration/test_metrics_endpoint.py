"""Every worker's ``--metrics-port`` endpoint, scraped before and after one batch on a real broker.

The three workers (``banditlp worker processors``, ``allocator``, ``trainer``) run as processes
with an endpoint each. The test scrapes them once the workers are idle, plays one batch of the
simulated email world (``SimulatorFeed.run_batch``: candidates, OPENED/CLOSED, the decisions read
back, feedback) with one undecodable candidates record among it, and scrapes again. Every
exposition is parsed with prometheus-client's own text parser, and the counters' increments are
checked against counts taken here, not from the workers: the candidates and control records the
feed produced, the pairs in its batch, the decisions, the report and the dead letters read back
from their topics, the feedback it produced, and the training rows on their topic.
"""

from __future__ import annotations

import os
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from evaluation.email_world import EmailWorldConfig
from streams.cli.processes import WorkerSet
from streams.kafka import clients
from streams.kafka.topics import TopicNames, create_topics, delete_topics, topic_specs
from streams.settings import Settings
from streams.simulate.feed import BatchRun, SimulatorConfig, SimulatorFeed
from streams.simulate.warm_start import publish_warm_start
from tests.integration.kafka_reading import read_all, read_raw, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_USERS, N_CANDIDATES = 200, 8
WORLD = EmailWorldConfig(n_users=N_USERS, n_items=30, n_providers=6, candidates_per_user=N_CANDIDATES, seed=11)
WORKERS = ("processors", "allocator", "trainer")
JUNK_KEY = b"junk-metrics-0"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    """Every sample of the endpoint, parsed by prometheus-client's text parser."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def answers(port: int) -> bool:
    try:
        scrape(port)
        return True
    except OSError:
        return False


@dataclass
class Run:
    names: TopicNames
    ports: dict[str, int]
    before: dict[str, Samples]
    after: dict[str, Samples]
    batch: BatchRun
    batch_id: str
    n_pairs: int
    warm_rows: int
    bootstrap: str
    workers: WorkerSet

    def delta(self, worker: str, name: str, **labels: str) -> float:
        return value(self.after[worker], name, **labels) - value(self.before[worker], name, **labels)


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("metrics")
    settings = kafka_settings.with_prefix(f"t{uuid.uuid4().hex[:10]}-")
    names, connection, serde = settings.names, settings.connection, settings.serde()
    create_topics(connection, names, topic_specs(4))
    warm_rows = publish_warm_start(connection, serde, names, WORLD, "email", n_batches=1, seed=0)
    env = {**os.environ, **settings.to_env(), "BANDITLP_STATE_DIR": str(tmp / "state"), "PYTHONUNBUFFERED": "1"}
    env.pop("BANDITLP_METRICS_PORT", None)
    (tmp / "logs").mkdir()
    workers = WorkerSet(tmp / "logs")
    ports = {name: free_port() for name in WORKERS}
    feed = None
    try:
        workers.start("processors", ["worker", "processors", "--metrics-port", str(ports["processors"])], env)
        # The processors worker joins its group first: on a broker a few seconds old the allocator's
        # first committed-offsets call can fail with NOT_COORDINATOR (exit 2) while the group
        # coordinator loads. Its re-seek after the first assignment must also be behind it before
        # the batch (records read before it would be counted twice: streams.processors.recovery).
        wait_until(
            lambda: "re-seeked to their committed offsets" in (tmp / "logs" / "processors.log").read_text(),
            180,
            "the processors worker's re-seek after its first assignment",
            alive=workers.check,
        )
        # the flag's environment variable, for one of the three
        workers.start("allocator", ["worker", "allocator"], {**env, "BANDITLP_METRICS_PORT": str(ports["allocator"])})
        # no retrain during the test: the trainer only reads rows
        trainer = ["worker", "trainer", "--retrain-every", "1000000", "--retrain-interval-s", "3600"]
        workers.start("trainer", [*trainer, "--metrics-port", str(ports["trainer"])], env)
        for name, port in ports.items():
            wait_until(lambda port=port: answers(port), 120, f"the {name} endpoint", alive=workers.check)
        wait_until(
            lambda: "batches already decided" in (tmp / "logs" / "allocator.log").read_text(),
            120,
            "the allocator read its reports",
            alive=workers.check,
        )
        wait_until(
            lambda: (
                value(scrape(ports["trainer"]), "banditlp_records_in_total", topic=names("training-rows")) >= warm_rows
            ),
            120,
            "the trainer read the warm-start rows",
            alive=workers.check,
        )
        before = {name: scrape(port) for name, port in ports.items()}
        feed = SimulatorFeed(SimulatorConfig(names=names, world=WORLD, timeout_ms=60_000), connection, serde)
        batch = feed.world.candidates(0)
        # one undecodable candidates record among the batch's: both its readers dead-letter it
        junk = clients.producer(connection)
        clients.produce(junk, names("candidates"), b"not avro", JUNK_KEY)
        assert junk.flush(30) == 0
        done = feed.run_batch(0)
        n_feedback = int(done.chosen.sum())
        rows = warm_rows + n_feedback  # every feedback record has its decision context: one row each
        # the learner and the trainer run after the decisions: wait for them to catch up
        wait_until(
            lambda: len(read_raw(connection, names("training-rows"))) >= rows,
            120,
            "a training row per feedback record",
            alive=workers.check,
        )
        wait_until(
            lambda: value(scrape(ports["trainer"]), "banditlp_records_in_total", topic=names("training-rows")) >= rows,
            120,
            "the trainer read the new training rows",
            alive=workers.check,
        )
        after = {name: scrape(port) for name, port in ports.items()}
        yield Run(names, ports, before, after, done, batch.batch_id, batch.n_pairs, warm_rows, kafka_bootstrap, workers)
    finally:
        if feed is not None:
            feed.close()
        workers.stop()
        delete_topics(connection, names.prefix)


def test_every_endpoint_parses_and_names_the_project_families(run: Run) -> None:
    for name, port in run.ports.items():
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        families = {f.name for f in text_string_to_metric_families(text)}
        assert {"banditlp_records_in", "banditlp_records_out", "banditlp_consumer_lag_records"} <= families, name


def test_the_processors_counters_moved_by_what_the_batch_carried(run: Run) -> None:
    n = run.names
    assert run.delta("processors", "banditlp_records_in_total", topic=n("candidates")) == N_USERS + 1  # + the junk
    assert run.delta("processors", "banditlp_records_out_total", topic=n("scores")) == N_USERS
    assert run.delta("processors", "banditlp_scored_pairs_total") == run.n_pairs
    assert run.delta("processors", "banditlp_scoring_seconds_count") >= 1
    assert run.delta("processors", "banditlp_records_in_total", topic=n("feedback")) == int(run.batch.chosen.sum())
    new_rows = len(read_raw(run.bootstrap, n("training-rows"))) - run.warm_rows
    assert new_rows == int(run.batch.chosen.sum()) > 0
    assert run.delta("processors", "banditlp_records_out_total", topic=n("training-rows")) == new_rows
    assert value(run.after["processors"], "banditlp_model_version", model="email") >= 1


def test_the_dead_letter_counters_moved_by_the_letters_on_the_topic(run: Run) -> None:
    """The junk candidates record: one dead letter from the scorer and one from the allocator, as
    the dead-letters topic holds them, each under its reader's counter with the error type."""
    n = run.names
    letters = [
        v for k, v in read_all(run.bootstrap, n("dead-letters"), "dead-letters") if k == n("candidates").encode()
    ]
    mine = [d for d in letters if d["key"] == JUNK_KEY]
    assert sorted(d["consumer"] for d in mine) == ["allocator", "scorer"] and len(letters) == 2
    reasons = {d["consumer"]: d["error_type"] for d in mine}
    for worker, consumer in (("processors", "scorer"), ("allocator", "allocator")):
        labels = {"topic": n("candidates"), "reason": reasons[consumer]}
        assert run.delta(worker, "banditlp_dead_letters_total", **labels) == 1, worker
        assert run.delta(worker, "banditlp_records_out_total", topic=n("dead-letters")) == 1, worker
        dead = [k for k in run.after[worker] if k[0] == "banditlp_dead_letters_total"]
        assert len(dead) == 1, dead  # nothing else was dead-lettered


def test_every_worker_reports_the_lag_of_its_inputs(run: Run) -> None:
    """A lag series per input partition the worker has read (faust: per partition it has committed,
    at the next refresh after the commit)."""
    n = run.names

    def lags(worker: str) -> dict[tuple[str, str], float]:
        return {
            (dict(labels)["topic"], dict(labels)["partition"]): v
            for (name, labels), v in scrape(run.ports[worker]).items()
            if name == "banditlp_consumer_lag_records"
        }

    inputs = {"processors": {n("candidates"), n("feedback")}, "trainer": {n("training-rows")}}
    for worker, topics in inputs.items():
        wait_until(
            lambda w=worker, t=topics: {tp[0] for tp in lags(w)} == t, 60, f"{worker} lag", alive=run.workers.check
        )
    processors = lags("processors")
    assert len(processors) == 8 and all(v >= 0 for v in processors.values())  # 4 partitions of each topic
    # The allocator's series appear per topic at the lag refresh after its first commit of that topic.
    wanted = {n("batch-control"), n("scores"), n("candidates")}
    wait_until(lambda: wanted <= {tp[0] for tp in lags("allocator")}, 60, "allocator lag", alive=run.workers.check)


def test_the_allocator_counters_moved_by_the_decisions_read_back(run: Run) -> None:
    n = run.names
    decisions = [v for _, v in read_all(run.bootstrap, n("decisions"), "decisions") if v["batch_id"] == run.batch_id]
    reports = [
        v
        for _, v in read_all(run.bootstrap, n("allocation-reports"), "allocation-reports")
        if v["batch_id"] == run.batch_id
    ]
    assert len(decisions) == N_USERS and len(reports) == 1
    (report,) = reports
    assert run.delta("allocator", "banditlp_records_in_total", topic=n("batch-control")) == 2  # OPENED, CLOSED
    assert run.delta("allocator", "banditlp_records_in_total", topic=n("scores")) == N_USERS
    assert run.delta("allocator", "banditlp_records_in_total", topic=n("candidates")) == N_USERS + 1  # + the junk
    assert run.delta("allocator", "banditlp_records_out_total", topic=n("decisions")) == len(decisions)
    assert run.delta("allocator", "banditlp_records_out_total", topic=n("allocation-reports")) == 1
    assert run.delta("allocator", "banditlp_decisions_total") == len(decisions)
    fallback = sum(d["policy"] == "fallback" for d in decisions)
    assert run.delta("allocator", "banditlp_fallback_decisions_total") == fallback == report["n_fallback"]
    assert run.delta("allocator", "banditlp_lp_solves_total", solver=report["solver"]) == 1  # K = 1 draw
    assert run.delta("allocator", "banditlp_lp_solve_seconds_count", solver=report["solver"]) == 1
    assert run.delta("allocator", "banditlp_batches_total", status=report["status"].split(";")[0]) == 1
    assert run.delta("allocator", "banditlp_batch_close_to_decision_seconds_count") == 1
    assert run.delta("allocator", "banditlp_batch_open_to_close_seconds_count") == 1
    after = run.after["allocator"]
    assert value(after, "banditlp_lp_iterations") == report["iterations"]
    assert value(after, "banditlp_lp_objective") == pytest.approx(report["objective"])
    for b in report["budgets"]:
        row = f"budget:{b['name']}"
        assert value(after, "banditlp_lp_dual", constraint=row) == pytest.approx(b["dual"])
        assert value(after, "banditlp_lp_constraint_violation", constraint=row) == pytest.approx(
            max(0.0, b["used"] - b["limit"])
        )
    for p in report["providers"]:
        assert value(after, "banditlp_lp_dual", constraint=f"provider:{p['provider_id']}") == pytest.approx(p["dual"])
    models = {d["model_version"] for d in decisions if d["policy"] != "fallback"}
    assert value(after, "banditlp_model_version", model="email") == max(models)


def test_the_allocator_lag_reaches_zero_once_the_batch_is_committed(run: Run) -> None:
    """Its inputs are all read and committed after the batch: every partition's lag is 0 at the
    next refresh (5 s)."""
    scores = run.names("scores")

    def lags() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {k: v for k, v in scrape(run.ports["allocator"]).items() if k[0] == "banditlp_consumer_lag_records"}

    wait_until(lambda: bool(lags()) and not any(lags().values()), 60, "allocator lag 0", alive=run.workers.check)
    assert {dict(labels)["topic"] for _, labels in lags()} >= {scores, run.names("batch-control")}


def test_the_trainer_counted_every_training_row(run: Run) -> None:
    rows = len(read_raw(run.bootstrap, run.names("training-rows")))
    assert value(run.before["trainer"], "banditlp_records_in_total", topic=run.names("training-rows")) == run.warm_rows
    assert value(run.after["trainer"], "banditlp_records_in_total", topic=run.names("training-rows")) == rows
    assert value(run.after["trainer"], "banditlp_model_version", model="email") == 1  # the warm start's
    assert run.delta("trainer", "banditlp_training_seconds_count") == 0  # no retrain was due
