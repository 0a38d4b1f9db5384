"""A tuning run's report (``tune-live.json``) renders in headless Chromium: its screenshot is not blank and
the distribution figure's arm dots (the report's blue) are drawn in the first screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.reporting import write_report
from tests.integration.test_report_browser import BANDITLP_BLUE, _pixels_near, _screenshot, ink_and_colours, looks_blank
from tests.unit.evaluation.reporting.test_tune_run import write_run

pytestmark = pytest.mark.integration


def test_a_tuning_run_report_renders(tmp_path: Path) -> None:
    write_run(tmp_path / "run")
    image = _screenshot(write_report(tmp_path / "run"), tmp_path / "tune.png")
    ink, colours = ink_and_colours(image)
    assert not looks_blank(image), f"ink {ink:.3f}, {colours} colours"
    assert _pixels_near(image, BANDITLP_BLUE, tolerance=40) > 200
