"""The chapter experiment's entry point on a tiny budget: files, checks and their definitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evaluation.bandits.chapter import CHAPTER_POLICIES, checks, main
from evaluation.bandits.runner import PolicySummary
from models.policies.registry import policy_names


def test_every_chapter_policy_is_registered() -> None:
    assert set(CHAPTER_POLICIES) <= set(policy_names())


def test_a_tiny_chapter_run_writes_its_files(tmp_path: Path) -> None:
    out = tmp_path / "chapter"
    args = ["--out", str(out), "--rounds", "30", "--seeds", "2", "--workers", "1", "--policies", "lints,linucb"]
    assert main(args) == 0
    result = json.loads((out / "chapter.json").read_text())
    assert set(result["exponent"]) == {"lints", "linucb"}
    assert "neural_beats_lints" not in result
    for name in ("summary.json", "regret.csv", "regret.png", "table.md"):
        assert (out / name).exists()


def _summary(final: list[float], b: float) -> PolicySummary:
    t = np.arange(1, 101, dtype=np.float64)
    return PolicySummary(final, [0.0] * len(final), list(t**b), [0.0] * len(final))


def test_checks_compare_means_and_exponents() -> None:
    out = checks({"lints": _summary([10.0, 12.0], 0.5), "neural_linear_ts": _summary([5.0, 7.0], 0.9)})
    assert out["neural_beats_lints"] and out["sublinear"]
    out = checks({"lints": _summary([1.0], 0.5), "neural_linear_ts": _summary([5.0], 1.2)})
    assert not out["neural_beats_lints"] and not out["sublinear"]
