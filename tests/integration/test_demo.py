"""`banditlp demo --batches 3` end to end on the real broker (the README's main command)."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_three_batches(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "demo", "--batches", "3", "--users", "150", "--run-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    logs = "".join(p.read_text()[-3000:] for p in (tmp_path / "logs").glob("*.log"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary, "empty summary"
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 4 and all(p.stat().st_size > 10_000 for p in pngs)
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(pngs)  # every plot embedded, nothing linked
    assert all(html.escape(key) in page for key in summary)
