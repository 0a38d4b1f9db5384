"""The HTML report renders in a real browser: headless Chromium's screenshot of it is not blank.

Chromium is Debian's ``chromium`` package; ``make browser`` installs it when it is missing (and
``make test`` / ``make test-integration`` run that first). Without it this test fails, naming
that target: a page test that skips silently would pass on a machine where nothing was checked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.reporting import write_report
from tests.unit.evaluation.reporting.factories import write_demo, write_experiment

pytestmark = pytest.mark.integration

WINDOW = (1280, 2000)
# Not blank: at least this share of the pixels is not white, in at least this many colours.
MIN_INK = 0.02
MIN_COLOURS = 64
# banditlp's line colour in every figure (evaluation.reporting.plotting).
BANDITLP_BLUE = (0x1F, 0x77, 0xB4)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not on PATH: run `make browser` (it installs Debian's chromium package)")


def _screenshot(page: Path, out: Path) -> Image.Image:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={out.parent / 'chromium-profile'}",
        f"--screenshot={out}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and out.is_file(), f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return Image.open(out).convert("RGB")


def ink_and_colours(image: Image.Image) -> tuple[float, int]:
    """Share of pixels that are not (near) white, and the number of distinct colours."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int64).reshape(-1, 3)
    ink = float(np.mean(pixels.min(axis=1) < 245))
    colours = np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2]).size
    return ink, int(colours)


def looks_blank(image: Image.Image) -> bool:
    """Whether a screenshot shows (next to) nothing: little ink or few colours."""
    ink, colours = ink_and_colours(image)
    return ink < MIN_INK or colours < MIN_COLOURS


def _pixels_near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int64).reshape(-1, 3)
    return int(np.sum(np.all(np.abs(pixels - np.array(colour)) <= tolerance, axis=1)))


def test_the_blank_check_can_fail(tmp_path: Path) -> None:
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body></body></html>")
    assert looks_blank(_screenshot(empty, tmp_path / "empty.png"))
    heading_only = tmp_path / "heading.html"
    heading_only.write_text("<!DOCTYPE html><html><body><h1>Experiment report</h1></body></html>")
    assert looks_blank(_screenshot(heading_only, tmp_path / "heading.png"))


def test_an_experiment_report_renders(tmp_path: Path) -> None:
    page = write_report(write_experiment(tmp_path / "run"))
    image = _screenshot(page, tmp_path / "report.png")
    assert image.size == WINDOW
    ink, colours = ink_and_colours(image)
    assert not looks_blank(image), f"ink {ink:.3f}, {colours} colours"
    # The first figure (cumulative reward) is drawn inside the first screen: its lines are there.
    assert _pixels_near(image, BANDITLP_BLUE) > 200


def test_a_demo_report_renders(tmp_path: Path) -> None:
    page = write_report(write_demo(tmp_path / "demo", batches=3))
    image = _screenshot(page, tmp_path / "demo.png")
    ink, colours = ink_and_colours(image)
    assert not looks_blank(image), f"ink {ink:.3f}, {colours} colours"
