"""A live tuning run's directory (``tune-live.json``, written by ``streams.tune.run_log``) as a report page:
the versions table, the distribution and per-arm plots, the last step's metrics; typed errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from evaluation.reporting import ReportInputError, build_report
from streams.score.parameter_feed import ParameterDistributionRecord
from streams.tune.run_log import TUNE_LIVE_JSON, TuneRunLog
from streams.tune.windows import ArmWindow
from tests.unit.evaluation.reporting.page_parsing import PNG_SIGNATURE, embedded_pngs, sections


def record(version: int, arms: dict[str, tuple[float, float]]) -> ParameterDistributionRecord:
    return ParameterDistributionRecord.from_avro(
        {
            "experiment": "tau",
            "version": version,
            "created_at_ms": int(time.time() * 1000),
            "arms": [{"arm_id": a, "parameters": {"tau": t}, "probability": p} for a, (t, p) in arms.items()],
        }
    )


def window(arm: str, start: float, **sums: float) -> ArmWindow:
    return ArmWindow(arm, start, start + 9.9, sums)


def write_run(run_dir: Path) -> None:
    log = TuneRunLog(run_dir, "tau", (("tau", 0.0, 2.0),), windows=2, max_unsubscription_rate=0.05)
    v1 = record(1, {"hot": (2.0, 0.5), "<b>cold</b>": (0.0, 0.5)})
    log.step(v1, v1, {})
    log.step(None, v1, {"hot": [window("hot", 0, n_feedback=10, value_sum=3.0, unsubscriptions=1)]})
    v2 = record(2, {"a1": (0.4, 0.7), "a2": (1.2, 0.3)})
    log.step(
        v2,
        v2,
        {
            "hot": [
                window("hot", 0, n_feedback=10, value_sum=3.0, unsubscriptions=1),
                window("hot", 10, n_feedback=30, value_sum=5.0, unsubscriptions=1, decisions=8, sends=8, pairs=40),
            ],
            "<b>cold</b>": [window("<b>cold</b>", 10, n_feedback=20, value_sum=2.0, overlap_sum=3, overlap_users=4)],
        },
    )


def test_the_run_log_holds_per_arm_sums_per_send(tmp_path: Path) -> None:
    write_run(tmp_path)
    doc = json.loads((tmp_path / TUNE_LIVE_JSON).read_text())
    assert [s["version"] for s in doc["steps"]] == [1, None, 2]
    assert [s["distribution_version"] for s in doc["steps"]] == [1, 1, 2]
    hot = next(m for m in doc["steps"][2]["metrics"] if m["arm_id"] == "hot")
    # two windows summed: 40 feedback, value 8.0, 2 unsubscriptions; 8 decisions over 40 pairs, variance 0
    assert hot["n_feedback"] == 40 and hot["reward_per_send"] == pytest.approx(0.2)
    assert hot["unsubscriptions_per_send"] == pytest.approx(0.05) and hot["windows"] == 2
    assert hot["overlap_at_k"] is None and hot["allocation_variance"] == 0.0
    cold = next(m for m in doc["steps"][2]["metrics"] if m["arm_id"] == "<b>cold</b>")
    assert cold["overlap_at_k"] == pytest.approx(0.75) and cold["unsubscriptions_per_send"] == 0.0
    with pytest.raises(Exception, match="experiment 'tau'"):
        TuneRunLog(tmp_path, "other")


def test_a_tuning_run_page_has_its_versions_distribution_and_per_arm_metrics(tmp_path: Path) -> None:
    write_run(tmp_path / "run")
    page = build_report(tmp_path / "run")
    found = sections(page)
    assert list(found) == ["tune", "tune-metrics"]
    assert [len(found[a].images) for a in found] == [1, 1]
    assert all(png.startswith(PNG_SIGNATURE) for png in embedded_pngs(page))
    assert "<title>Tuning report: run</title>" in page
    assert "3 steps, 2 published versions" in page and "tau in [0, 2]" in page
    assert "<b>cold" not in page and "&lt;b&gt;cold&lt;/b&gt;" in page
    assert '<td class="num">0.2</td>' in page  # hot's reward per send at the last step
    assert '<td class="num bad">0.05</td>' not in page  # at the guardrail, not over it
    assert '<td class="num">0.75</td>' in page  # cold's overlap@K


def test_an_arm_over_the_guardrail_is_marked(tmp_path: Path) -> None:
    log = TuneRunLog(tmp_path, "tau", (("tau", 0.0, 2.0),), max_unsubscription_rate=0.01)
    v1 = record(1, {"hot": (2.0, 1.0)})
    log.step(v1, v1, {"hot": [window("hot", 0, n_feedback=10, value_sum=3.0, unsubscriptions=1)]})
    assert '<td class="num bad">0.1</td>' in build_report(tmp_path)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "not valid JSON"),
        ({"experiment": "tau", "steps": []}, "steps is empty"),
        (
            {"experiment": "tau", "steps": [{"step": 1, "arms": [{"arm_id": "a", "probability": "x"}]}]},
            "must be a number",
        ),
        ({"steps": [{"step": 1, "metrics": [{"arm_id": "a", "n_feedback": [1]}]}]}, r"metrics\[0\]\.n_feedback"),
    ],
)
def test_a_malformed_run_log_is_a_typed_error_naming_where(tmp_path: Path, document: object, message: str) -> None:
    (tmp_path / TUNE_LIVE_JSON).write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(ReportInputError, match=message):
        build_report(tmp_path)
