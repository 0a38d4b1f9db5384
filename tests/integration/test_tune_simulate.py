"""``banditlp tune --simulate`` end to end on a real broker: the tuner job stepped once per send batch
against the simulated world, through the demo's pipeline and the tune-metrics worker.

Checked against what is on the topics (kept with ``--keep-topics``), not against the run's own log:

- the log has one step before the first batch and one after each batch, each publishing the next
  version;
- the step after batch b counted exactly the feedback records of batches 0..b that the learners applied
  (the ``metrics`` records' n_feedback of those batches' users; every decision here is the LP's), so
  the job waited for each batch's feedback before fitting;
- every LP decision names an arm of the experiment whose version was in force when it was scored, and
  that arm is the one models.tuner.assignment gives the user in that version's published layout;
- ``banditlp report`` renders the run directory with the demo's and the tuner's sections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka.admin import AdminClient

from models.tuner.assignment import Layout, user_positions
from streams.score.parameter_feed import parse_parameter_version
from streams.tune.run_log import TUNE_LIVE_JSON
from tests.integration.kafka_reading import read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCHES = 3


def test_tune_simulate_steps_per_batch_on_the_feedback_of_the_batches_before(
    kafka_bootstrap: str, kafka_connection, tmp_path: Path
) -> None:
    host, port = kafka_bootstrap.rsplit(":", 1)
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "streams", "--bootstrap", kafka_bootstrap, "--kafka-port", port, "--prefix", prefix,
        "tune", "--simulate", "--batches", str(BATCHES), "--users", "150", "--items", "20", "--providers", "4",
        "--min-feedback", "5", "--seed", "3", "--out", str(run_dir), "--keep-topics",
    ]  # fmt: skip
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    log = json.loads((run_dir / TUNE_LIVE_JSON).read_text())
    steps = log["steps"]
    assert len(steps) == BATCHES + 1
    assert [s["version"] for s in steps] == list(range(1, BATCHES + 2))  # each step published

    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    [run_prefix] = {t[: -len("decisions")] for t in topics if t.startswith(prefix) and t.endswith("-decisions")}
    decisions = [v for _, v in read_all(kafka_connection, f"{run_prefix}decisions", "decisions")]
    metrics = [v for _, v in read_all(kafka_connection, f"{run_prefix}metrics", "metrics")]
    distributions = {
        v["version"]: v
        for _, v in read_all(kafka_connection, f"{run_prefix}parameter-distribution", "parameter-distribution")
    }
    assert sorted(distributions) == list(range(1, BATCHES + 2))

    # Feedback per batch as the learners applied it: the metrics records carry no batch, so count the
    # items sent per batch from the decisions (one feedback record each) and check the total matches.
    sent = Counter(d["batch_id"] for d in decisions for _ in d["chosen"])
    assert all(d["policy"] != "fallback" for d in decisions)
    assert sum(m["n_feedback"] for m in metrics) == sum(sent.values())
    batch_ids = sorted(sent)
    assert len(batch_ids) == BATCHES
    for b in range(1, BATCHES + 1):
        counted = sum(a["n_feedback"] for a in steps[b]["metrics"])
        assert counted == sum(sent[batch_ids[i]] for i in range(b)), (b, counted)

    versions = Counter()
    for d in decisions:
        parsed = parse_parameter_version(d["parameter_version"])
        assert parsed is not None and parsed[0] == "tau", d["parameter_version"]
        _, version, arm = parsed
        versions[version] += 1
        record = distributions[version]
        layout = Layout(np.asarray(record["layout"]["edges"]), tuple(record["layout"]["owners"]))
        position = user_positions([d["user_id"]], "tau", record["salt"])
        assert layout.owners[int(layout.locate(position)[0])] == arm
    assert len(versions) >= 2  # the batches were served by successive versions

    rendered = subprocess.run(
        [sys.executable, "-m", "streams", "report", str(run_dir)], env=env, capture_output=True, text=True, timeout=120
    )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    html = (run_dir / "report.html").read_text()
    assert "Tuning run" in html and "Unsubscription budget" in html
