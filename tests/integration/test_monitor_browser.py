"""``banditlp monitor`` against the broker, its page loaded in headless Chromium.

A few allocation reports are produced on the test's namespace (no health record yet: the page
shows the reports alone), the monitor runs as a process (``banditlp monitor --port P``), and
Chromium loads its page twice: ``--dump-dom`` after the page's script has fetched ``/api/series``
and drawn (the DOM must hold one ``circle.pt`` per batch of each series, at the values produced
here), and ``--screenshot`` (not blank: ink and colours, and the objective's blue line). More
reports are then produced and a second DOM dump must show them: the page follows the topic. Last,
health records are produced (the ``health`` topic made if it is not there yet: the monitor looks
for it every second here) and their panels appear beside the reports'.

Chromium is Debian's ``chromium`` package (``make browser``); without it this test fails, naming
that target, as ``test_report_browser`` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streams.avro.serde import AvroSerde
from streams.cli.processes import WorkerSet
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames, TopicSpec, create_topics, delete_topics, topic_specs
from streams.settings import Settings
from tests.integration.kafka_reading import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = (1280, 1000)
MIN_INK, MIN_COLOURS = 0.02, 64  # as test_report_browser: a blank page fails both
BLUE = (0x1F, 0x77, 0xB4)  # the page's first series colour
N_FIRST, N_MORE = 4, 2


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not on PATH: run `make browser` (it installs Debian's chromium package)")


def browse(url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``url``; the virtual-time budget lets the page's script fetch and draw first."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=5000",
        *mode,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


def report(batch_id: str, i: int) -> dict:
    return {
        "batch_id": batch_id,
        "status": "optimal",
        "solver": "highs",
        "objective": 20.0 + 3.0 * i + (i % 2),
        "n_users": 100,
        "n_pairs": 500,
        "missing_users": [],
        "n_missing": i % 3,
        "n_fallback": i % 3,
        "fallback_users": [],
        "budgets": [{"name": "unsub", "dual": 0.1 * i, "used": 4.0 + 0.5 * i, "limit": 6.0, "fallback_used": 0.0}],
        "providers": [
            {
                "provider_id": "p0",
                "dual": 0.05 * i,
                "exposure": 10.0,
                "min_exposure": 5.0,
                "max_exposure": None,
                "fallback_exposure": 0.0,
            }
        ],
        "max_violation": 0.0,
        "max_relative_violation": 0.0,
        "iterations": 10 + i,
        "solve_seconds": 0.01 * (i + 1),
        "window_seconds": 0.2 + 0.05 * i,
        "decided_at_ms": 1_700_000_000_000 + i,
        "item_means": [],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def n_batches(url: str) -> int:
    try:
        return len(json.loads(urllib.request.urlopen(url + "api/series", timeout=5).read())["batches"])
    except OSError:
        return -1


@dataclass
class Monitor:
    url: str
    names: TopicNames
    connection: ConnectionConfig
    serde: AvroSerde
    workers: WorkerSet
    tmp: Path

    def produce(self, indices: range) -> None:
        producer = clients.producer(self.connection)
        for i in indices:
            value = self.serde.encode("allocation-reports", report(f"batch-{i}", i))
            clients.produce(producer, self.names("allocation-reports"), value, f"batch-{i}".encode())
        assert producer.flush(30) == 0

    def wait_for(self, n: int) -> None:
        wait_until(lambda: n_batches(self.url) == n, 60, f"the monitor has {n} batches", alive=self.workers.check)


@pytest.fixture(scope="module")
def monitor(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    tmp = tmp_path_factory.mktemp("monitor")
    settings = kafka_settings.with_prefix(f"t{uuid.uuid4().hex[:10]}-")
    names, connection, serde = settings.names, settings.connection, settings.serde()
    create_topics(connection, names, topic_specs(4))
    port = free_port()
    workers = WorkerSet(tmp)
    m = Monitor(f"http://127.0.0.1:{port}/", names, connection, serde, workers, tmp)
    try:
        m.produce(range(N_FIRST))
        env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
        args = ["monitor", "--port", str(port), "--poll-ms", "500", "--topic-check-s", "1"]
        workers.start("monitor", args, env)
        m.wait_for(N_FIRST)
        yield m
    finally:
        workers.stop()
        delete_topics(connection, names.prefix)


def points(dom: str, series: str) -> list[str]:
    """The batches of the drawn points of ``series``, in DOM order."""
    return re.findall(rf'<circle class="pt"[^>]*data-series="{re.escape(series)}" data-batch="([^"]+)"', dom)


def test_the_page_draws_every_batch_of_every_series(monitor: Monitor) -> None:
    dom = browse(monitor.url, monitor.tmp / "profile-dom", "--dump-dom").stdout
    assert f'data-batches="{N_FIRST}"' in dom, dom[-3000:]
    expected = [f"batch-{i}" for i in range(N_FIRST)]
    for series in ("objective", "usage.unsub", "dual.unsub", "dual.provider", "fallback", "solve_seconds"):
        assert points(dom, series) == expected, series
    # each point's tooltip holds its value: the ones produced here
    for name, of in (("objective", lambda r: r["objective"]), ("usage.unsub", lambda r: r["budgets"][0]["used"] / 6.0)):
        shown = [float(v) for v in re.findall(rf"<title>{re.escape(name)} @ batch-\d+: ([^<]+)</title>", dom)]
        assert shown == pytest.approx([of(report(b, i)) for i, b in enumerate(expected)]), name
    assert dom.count('<svg class="plot"') == 5  # no health topic: no health panel
    assert 'data-series="objective"' in dom and "<polyline" in dom


def test_the_screenshot_is_not_blank_and_shows_the_objective_line(monitor: Monitor) -> None:
    out = monitor.tmp / "monitor.png"
    browse(monitor.url, monitor.tmp / "profile-shot", f"--screenshot={out}")
    image = Image.open(out).convert("RGB")
    pixels = np.asarray(image, dtype=np.int64).reshape(-1, 3)
    ink = float(np.mean(pixels.min(axis=1) < 245))
    colours = np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2]).size
    assert ink >= MIN_INK and colours >= MIN_COLOURS, f"ink {ink:.3f}, {colours} colours"
    blue = int(np.sum(np.all(np.abs(pixels - np.array(BLUE)) <= 12, axis=1)))
    assert blue > 200, f"{blue} pixels of the first series' colour"


def test_new_reports_appear_on_the_page(monitor: Monitor) -> None:
    monitor.produce(range(N_FIRST, N_FIRST + N_MORE))
    monitor.wait_for(N_FIRST + N_MORE)
    dom = browse(monitor.url, monitor.tmp / "profile-dom-2", "--dump-dom").stdout
    assert points(dom, "objective") == [f"batch-{i}" for i in range(N_FIRST + N_MORE)]


def health(batch_id: str, i: int) -> dict:
    """A ``health`` value (schemas/health.avsc) for one batch."""
    return {
        "batch_id": batch_id,
        "sequence": i,
        "in_reference": i < 1,
        "n_users": 100,
        "n_pairs": 500,
        "n_contexts": 100,
        "n_outcomes": 80,
        "model_versions": [1],
        "values": {
            "selection_entropy": 1.2 - 0.1 * i,
            "item_coverage": 0.5 + 0.05 * i,
            "overlap_at_k": None if i == 0 else 0.8,
            "feature_psi_max": 0.05 * (i + 1),
            "feature_psi.0": 0.01,
            "ece.conversion": 0.01 * (i + 1),
        },
        "alarms": [{"name": "feature_drift", "value": 0.3, "threshold": 0.2}] if i == 2 else [],
        "computed_at_ms": 1_700_000_000_000 + i,
    }


def test_health_records_add_their_panels(monitor: Monitor) -> None:
    create_topics(monitor.connection, monitor.names, (TopicSpec("health", 1),))  # "exists" once it is a project topic
    producer = clients.producer(monitor.connection)
    batches = [f"batch-{i}" for i in range(3)]
    for i, b in enumerate(batches):
        clients.produce(producer, monitor.names("health"), monitor.serde.encode("health", health(b, i)), b.encode())
    assert producer.flush(30) == 0

    def health_points() -> int:
        data = json.loads(urllib.request.urlopen(monitor.url + "api/series", timeout=5).read())
        return sum(v is not None for p in data["panels"] for v in p["series"].get("health.item_coverage", []))

    wait_until(lambda: health_points() == 3, 60, "the monitor read the health records", alive=monitor.workers.check)
    dom = browse(monitor.url, monitor.tmp / "profile-dom-3", "--dump-dom").stdout
    for series in ("health.selection_entropy", "health.item_coverage", "health.feature_psi_max", "alarms"):
        assert points(dom, series) == batches, series
    assert points(dom, "health.overlap_at_k") == batches[1:]  # null in the first batch: no point
    assert points(dom, "health.feature_psi.0") == []  # per-feature PSI is not plotted
    for title in ("Exploration", "Drift (PSI)", "Calibration", "Alarms"):
        assert f'data-title="{title}"' in dom, title
