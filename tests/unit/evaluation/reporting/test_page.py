"""The report page of an experiment's or a demo's run directory: sections, figures, escaping, errors."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from banditlp.errors import BanditLPError
from evaluation.errors import EvaluationError
from evaluation.reporting import ReportInputError, ReportWriteError, build_report, write_report
from evaluation.reporting.errors import ReportError
from tests.unit.evaluation.reporting.factories import experiment_document, write_demo, write_experiment
from tests.unit.evaluation.reporting.page_parsing import PNG_SIGNATURE, embedded_pngs, sections

FIGURE_SECTIONS = ("reward", "regret", "constraints", "overlap", "calibration", "sweep-tau-sweep", "other-measures")
SMALL: dict[str, Any] = {"methods": ("banditlp", "nn_lp"), "seeds": 2, "batches": 3}


@pytest.fixture(scope="module")
def full_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The page of a realistic experiment: every method, 5 seeds x 20 batches, every section."""
    return build_report(write_experiment(tmp_path_factory.mktemp("full") / "run"))


def _write(run_dir: Path, document: Any) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(document if isinstance(document, str) else json.dumps(document))
    return run_dir


def test_an_experiment_page_has_one_figure_per_section_it_holds(full_page: str) -> None:
    page = full_page
    found = sections(page)
    assert list(found) == ["summary", *FIGURE_SECTIONS, "configuration"]
    for anchor in FIGURE_SECTIONS:
        assert len(found[anchor].images) == 1, anchor
    assert found["summary"].images == [] and found["configuration"].images == []
    assert found["regret"].title == "Regret against oracle_lp"
    # The summary table names every method and the window the budget is judged on.
    for method in experiment_document()["methods"]:
        assert f"<td>{method}</td>" in page
    assert "unsub usage, mean of batches 4–20" in page


def test_every_embedded_image_is_a_png_and_the_page_needs_no_network(full_page: str) -> None:
    page = full_page
    pngs = embedded_pngs(page)
    assert len(pngs) == len(FIGURE_SECTIONS)
    for png in pngs:
        assert png.startswith(PNG_SIGNATURE)
        image = Image.open(io.BytesIO(png))
        image.verify()
        assert image.size[0] >= 800
    # Every src is a data URI; nothing is fetched from elsewhere.
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert "<link" not in page and "<script" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_text_from_the_file_is_escaped(tmp_path: Path) -> None:
    hostile = "<script>alert('x')</script>"
    document = experiment_document(seeds=2, batches=5, methods=("banditlp", hostile, "oracle_lp"))
    document["config"]["note"] = f"<b>{hostile}</b>"
    document["sweeps"] = {hostile: {"1.0": {hostile: {"reward": [[1.0, 2.0]]}}}}
    page = build_report(_write(tmp_path / "run", document))
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    ("missing", "absent"),
    [
        ("oracle_lp", {"regret"}),
        ("calibration", {"calibration"}),
        ("sweep", {"sweep-tau-sweep"}),
        ("extra_series", {"other-measures"}),
    ],
)
def test_a_section_without_data_is_left_out(tmp_path: Path, missing: str, absent: set[str]) -> None:
    options: dict[str, Any] = {"seeds": 2, "batches": 4, "methods": ("banditlp", "nn_lp", "oracle_lp")}
    if missing == "oracle_lp":
        options["methods"] = ("banditlp", "nn_lp")
    else:
        options[missing] = False
    found = sections(build_report(write_experiment(tmp_path / "run", **options)))
    assert absent.isdisjoint(found)
    assert set(FIGURE_SECTIONS) - absent <= set(found)


def test_a_results_file_with_only_rewards_still_gives_a_page(tmp_path: Path) -> None:
    # No oracle, no constraints, one seed, no config: the page shows what there is.
    document = {"methods": {"banditlp": {"reward": [1.0, 2.0, 3.0]}, "nn_lp": {"reward": [[1.0, 1.0, 1.0]]}}}
    page = build_report(_write(tmp_path / "run", document))
    found = sections(page)
    assert list(found) == ["summary", "reward"]
    assert len(found["reward"].images) == 1
    assert "n/a" in page  # regret, usage and shortfall cells


def test_keys_of_unknown_shape_are_listed_not_shown(tmp_path: Path) -> None:
    document = experiment_document(**SMALL, calibration=False, sweep=False, extra_series=False)
    document["methods"]["banditlp"]["notes"] = "a free-text remark"
    document["timing"] = 3.5
    document["config"] = ["not", "an", "object"]
    page = build_report(_write(tmp_path / "run", document))
    found = sections(page)
    assert "not-shown" in found and "configuration" not in found
    assert "methods.banditlp.notes must be a non-empty list" in page
    assert "timing: not shown" in page
    assert "config: expected an object, got a list" in page


def test_missing_values_are_null_or_nan(tmp_path: Path) -> None:
    document = experiment_document(seeds=2, batches=4, methods=("banditlp",), calibration=False, sweep=False)
    document["methods"]["banditlp"]["overlap_at_k"] = [[None, 0.5, 0.6, 0.7], [None, 0.4, 0.5, 0.6]]
    text = json.dumps(document).replace("0.5, 0.6, 0.7", "NaN, 0.6, 0.7")  # json.dumps of a float('nan')
    found = sections(build_report(_write(tmp_path / "run", text)))
    assert len(found["overlap"].images) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"results.json: not valid JSON: .* at line 1 column 2"),
        ("[1, 2]", r"expected a JSON object at the top, got a list"),
        ('{"config": {}}', r"expected a non-empty object under 'methods' .*got no such key"),
        ('{"methods": {}}', r"expected a non-empty object under 'methods' .*got an empty object"),
        ('{"methods": {"banditlp": [1, 2]}}', r"methods.banditlp must be an object of measures, got a list"),
        (
            '{"methods": {"banditlp": {"reward": [[1.0, "high"]]}}}',
            r"methods.banditlp.reward: seed 0, batch 2 must be a number, got a string 'high'",
        ),
        (
            '{"methods": {"banditlp": {"unsub_usage": [[1.0, 0.9], [1.0]]}}}',
            r"methods.banditlp.unsub_usage: every seed must hold the same number of batches .*\[2, 1\]",
        ),
        ('{"methods": {"banditlp": {"reward": 3}}}', r"methods.banditlp.reward must be a non-empty list"),
        ('{"methods": {"banditlp": {"reward": [[true, 1]]}}}', r"seed 0, batch 1 must be a number, got a boolean"),
    ],
)
def test_a_malformed_results_file_raises_a_clear_typed_error(tmp_path: Path, content: str, message: str) -> None:
    run_dir = _write(tmp_path / "run", content)
    with pytest.raises(ReportInputError, match=message) as info:
        build_report(run_dir)
    assert str(info.value).startswith(str(run_dir / "results.json"))  # names the file
    assert "\n" not in str(info.value)  # one line on the terminal


def test_report_errors_are_the_projects_errors() -> None:
    assert issubclass(ReportInputError, ReportError) and issubclass(ReportWriteError, ReportError)
    assert issubclass(ReportError, EvaluationError) and issubclass(EvaluationError, BanditLPError)


def test_a_directory_without_a_run_raises(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="neither results.json .* nor summary.json"):
        build_report(tmp_path)
    with pytest.raises(ReportInputError, match="no such run directory"):
        build_report(tmp_path / "missing")


def test_a_demo_page_holds_its_summary_and_its_four_plots(tmp_path: Path) -> None:
    run_dir = write_demo(tmp_path / "demo")
    page = build_report(run_dir)
    found = sections(page)
    assert list(found) == [
        "demo-summary",
        "demo-reward",
        "demo-unsub-budget",
        "demo-provider-exposure",
        "demo-exploration",
    ]
    for anchor in list(found)[1:]:
        assert len(found[anchor].images) == 1
    files = [
        run_dir / n
        for n in ("cumulative_reward.png", "unsub_budget_usage.png", "provider_exposure.png", "exploration.png")
    ]
    assert embedded_pngs(page) == [p.read_bytes() for p in files]
    summary = json.loads((run_dir / "summary.json").read_text())
    for measure, value in summary.items():
        assert f"<td>{measure}</td><td>{value}</td>" in page


def test_a_demo_without_plots_says_so(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"batches": "2", "<i>x</i>": 3}))
    page = build_report(run_dir)
    assert list(sections(page)) == ["demo-summary"]
    assert "No PNG plots were found" in page and "&lt;i&gt;x&lt;/i&gt;" in page


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("summary.json", "[1]", r"summary.json: expected a JSON object \(measure -> value\), got a list"),
        ("summary.json", "{", r"summary.json: not valid JSON"),
        ("exploration.png", "not a png", r"exploration.png: not a PNG image"),
    ],
)
def test_a_malformed_demo_file_raises(tmp_path: Path, name: str, content: str, message: str) -> None:
    run_dir = write_demo(tmp_path / "demo", batches=2)
    (run_dir / name).write_text(content)
    with pytest.raises(ReportInputError, match=message):
        build_report(run_dir)


def test_a_directory_with_both_runs_shows_both(tmp_path: Path) -> None:
    run_dir = write_demo(write_experiment(tmp_path / "run", **SMALL), batches=2)
    found = sections(build_report(run_dir))
    assert "summary" in found and "demo-summary" in found
    assert found["demo-summary"].title == "Demo: Summary"


def test_the_experiment_s_own_summary_json_is_not_read_as_a_demo(tmp_path: Path) -> None:
    """`banditlp experiment` writes summary.json beside results.json (per-method figures)."""
    run_dir = write_experiment(tmp_path / "run", **SMALL)
    (run_dir / "summary.json").write_text(json.dumps({"methods": {"banditlp": {"unsub_usage_mean": 1.2}}}))
    found = sections(build_report(run_dir))
    assert "summary" in found and not any(key.startswith("demo-") for key in found)


def test_write_report_writes_where_asked(tmp_path: Path) -> None:
    run_dir = write_experiment(tmp_path / "run", **SMALL, calibration=False, sweep=False, extra_series=False)
    assert write_report(run_dir) == run_dir / "report.html"
    assert (run_dir / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    out = tmp_path / "elsewhere" / "page.html"
    assert write_report(run_dir, out) == out and out.is_file()
    with pytest.raises(ReportWriteError, match="cannot write the report"):
        write_report(run_dir, tmp_path)  # a directory
