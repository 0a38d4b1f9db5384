"""A replay's run directory (``ope.json``) as a report page: the estimates table, one interval plot
per policy, support and budget usage, the join's counts; typed errors for a malformed file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evaluation.reporting import ReportInputError, build_report
from tests.unit.evaluation.reporting.page_parsing import PNG_SIGNATURE, embedded_pngs, sections

ESTIMATORS = ("ips", "snips", "dm", "dr", "switch_dr", "dros")


def ope_document(policies: tuple[str, ...] = ("nn_lp", "<script>uniform</script>")) -> dict[str, Any]:
    def outcome(level: float) -> dict[str, Any]:
        return {e: {"value": level * (1 + j / 10), "ci": [level * 0.8, level * 1.4]} for j, e in enumerate(ESTIMATORS)}

    return {
        "policies": {
            name: {
                "reward": outcome(2.0 + k),
                "unsubscription": outcome(0.01),
                "unsupported_share": 0.1 * k,
                "expected_sends_per_round": 1.0,
                "budget_usage": {"b1": {"unsubs": 0.9}, "b2": {"unsubs": 1.2 + k}},
            }
            for k, name in enumerate(policies)
        },
        "logged": {"reward": 2.2, "unsubscription": 0.012, "n": 960, "pairs": 9600, "sent": 958},
        "slate": "independent per-pair IPS",
        "source": {"kind": "kafka", "prefix": "demo-"},
        "join": {"decisions": 960, "rounds": 960, "decisions_without_context": 0, "invalid_records": {}},
    }


def _write(run_dir: Path, document: Any) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "ope.json").write_text(document if isinstance(document, str) else json.dumps(document))
    return run_dir


def test_a_replay_page_has_the_estimates_a_plot_per_policy_and_the_usage(tmp_path: Path) -> None:
    page = build_report(_write(tmp_path / "run", ope_document()))
    found = sections(page)
    assert list(found) == ["ope", "ope-nn-lp", "ope-script-uniform-script", "ope-usage"]
    assert [len(found[a].images) for a in found] == [0, 1, 1, 0]
    assert all(png.startswith(PNG_SIGNATURE) for png in embedded_pngs(page))
    assert "<title>Replay report: run</title>" in page
    assert "<script>uniform" not in page and "&lt;script&gt;uniform&lt;/script&gt;" in page
    for estimator in ESTIMATORS:
        assert f"<td>{estimator}</td>" in page
    assert "960 logged decisions" in page and "independent per-pair IPS" in page
    assert '<td class="num bad">2.2</td>' in page  # a worst batch over 1.05 of its budget is marked
    assert "10.0%" in page  # the second policy's sends off the log's support


def test_a_run_directory_with_a_demo_and_its_replay_shows_both(tmp_path: Path) -> None:
    run = _write(tmp_path / "run", ope_document(("nn_lp",)))
    (run / "summary.json").write_text(json.dumps({"batches": "3"}))
    found = sections(build_report(run))
    assert list(found)[0] == "demo-summary" and "ope" in found


BAD = [
    ("not json", "not valid JSON"),
    ([], "must be an object"),
    ({**ope_document(), "policies": {}}, "policies is empty"),
    ({**ope_document(), "logged": {"reward": 1.0, "n": 0}}, "logged.n must be a positive integer"),
    (
        {**ope_document(("a",)), "policies": {"a": {"reward": {"dr": {"value": "high", "ci": [0, 1]}}}}},
        "a.reward.dr.value must be a number",
    ),
    (
        {**ope_document(("a",)), "policies": {"a": {"reward": {"dr": {"value": 1.0, "ci": 3}}}}},
        "a.reward.dr.ci must be a list",
    ),
    (
        {**ope_document(("a",)), "policies": {"a": {"budget_usage": {}}}},
        "holds no estimate of reward or unsubscription",
    ),
]


@pytest.mark.parametrize(("document", "match"), BAD)
def test_a_malformed_ope_json_is_one_typed_error_naming_where(tmp_path: Path, document: Any, match: str) -> None:
    with pytest.raises(ReportInputError, match=match):
        build_report(_write(tmp_path / "run", document))
