"""Plots of a run are written as non-empty PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.email_world import EmailWorld, EmailWorldConfig
from evaluation.errors import EvaluationInputError
from evaluation.report import write_plots
from evaluation.run_summary import BatchOutcome

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(report_exploration: bool) -> list[BatchOutcome]:
    world = EmailWorld(EmailWorldConfig(n_users=40, n_items=12, n_providers=3, candidates_per_user=4, seed=4))
    rng = np.random.default_rng(1)
    outcomes = []
    for batch_index in range(4):
        batch = world.candidates(batch_index)
        x = world.greedy(batch).x if batch_index % 2 else world.oracle(batch).x
        outcomes.append(
            world.batch_outcome(
                batch,
                x,
                rng,
                mean_entropy=0.3 / (batch_index + 1) if report_exploration else float("nan"),
                mean_posterior_std=0.1 if report_exploration else float("nan"),
            )
        )
    return outcomes


@pytest.mark.parametrize("report_exploration", [True, False])
def test_write_plots_writes_four_pngs(tmp_path: Path, report_exploration: bool) -> None:
    run_dir = tmp_path / "run" / "plots"  # created by write_plots
    paths = write_plots(_run(report_exploration), run_dir)
    assert [p.name for p in paths] == [
        "cumulative_reward.png",
        "unsub_budget_usage.png",
        "provider_exposure.png",
        "exploration.png",
    ]
    for path in paths:
        assert path.parent == run_dir and path.is_file()
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 10_000  # axes, lines and text, not a blank canvas


def test_write_plots_needs_a_batch(tmp_path: Path) -> None:
    with pytest.raises(EvaluationInputError, match="at least one"):
        write_plots([], tmp_path)
