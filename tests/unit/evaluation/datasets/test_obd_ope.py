"""The Open Bandit Dataset through evaluation.ope, and the "bts from random logs" benchmark.

Done when: from the uniform-random logs of the ``all`` campaign, every estimator's interval for
``uniform`` (the logs' own policy) contains the click rate those logs observed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.datasets.bts import bts_action_dist, load_bts_prior, uniform_action_dist
from evaluation.datasets.obd import CLICK, obd_logged_pairs, obd_target
from evaluation.datasets.obd_benchmark import (
    ESTIMATOR_NAMES,
    OBP_PUBLISHED_RELATIVE_ERROR,
    BenchmarkConfig,
    main,
    run_campaign,
    tables,
)
from evaluation.datasets.obd_model import cross_fit_click_model
from evaluation.errors import OPEInputError
from evaluation.ope.bootstrap import evaluate
from evaluation.ope.estimators import ESTIMATORS
from tests.unit.evaluation.datasets import OBD_CACHE, obd_log, obd_root


def test_every_estimator_covers_the_uniform_click_rate_of_the_all_campaign() -> None:
    log = obd_log("random", "all")
    observed = float(log.reward.mean())
    assert observed == pytest.approx(38 / 10_000)
    logged = obd_logged_pairs(log)
    target = obd_target(log, uniform_action_dist(log.n_actions, log.len_list))
    predicted = {CLICK: cross_fit_click_model(log, seed=0).ravel()}
    estimates = evaluate(logged, target, predicted, estimators=tuple(ESTIMATORS), n_bootstrap=500, seed=0)[CLICK]
    assert set(estimates) == {"ips", "snips", "dm", "dr", "switch_dr", "dros"}
    for name, estimate in estimates.items():
        low, high = estimate.ci
        assert low <= observed <= high, f"{name}: {estimate.value:.5f} [{low:.5f}, {high:.5f}] vs {observed:.5f}"
        assert estimate.n_rounds == 10_000
    # The target is the behaviour itself: every importance weight is 1, so IPS is the observed mean.
    assert estimates["ips"].value == pytest.approx(observed, rel=1e-12)


def test_bts_on_the_random_log_is_supported_but_not_on_the_bts_log() -> None:
    dist = bts_action_dist(load_bts_prior(obd_root(), "men"), 3, n_sim=20_000, seed=0)
    random_log = obd_log("random", "men")
    target = obd_target(random_log, dist)
    estimates = evaluate(obd_logged_pairs(random_log), target, None, estimators=("ips", "snips"), n_bootstrap=20)
    assert estimates[CLICK]["ips"].value > 0
    # The bts log records no probability for the candidates it did not show.
    bts_log = obd_log("bts", "men")
    with pytest.raises(OPEInputError, match="not identifiable"):
        evaluate(obd_logged_pairs(bts_log), obd_target(bts_log, dist), None, estimators=("ips",), n_bootstrap=20)


SMALL = BenchmarkConfig(n_sim=20_000, n_bootstrap=50, resamples=2)


def test_campaign_result_holds_every_estimator_against_its_observed_rate() -> None:
    result = run_campaign(obd_root(), "men", SMALL)
    assert result["n_rounds"] == 10_000 and result["n_actions"] == 34
    bts = result["policies"]["bts"]
    assert bts["observed"]["value"] == pytest.approx(obd_log("bts", "men").reward.mean())
    low, high = bts["observed"]["ci"]
    assert low < bts["observed"]["value"] < high
    for name in ESTIMATOR_NAMES:
        entry = bts["estimates"][name]
        assert entry["ci"][0] <= entry["value"] <= entry["ci"][1]
        assert entry["relative_error"] == pytest.approx(
            abs(entry["value"] - bts["observed"]["value"]) / bts["observed"]["value"]
        )
        assert np.isfinite(bts["resampled_relative_error"][name]["mean"])
    uniform = result["policies"]["uniform"]
    assert uniform["observed"]["value"] == pytest.approx(obd_log("random", "men").reward.mean())
    assert uniform["estimates"]["ips"]["relative_error"] == pytest.approx(0.0, abs=1e-12)


def test_command_line_writes_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obd_root()
    out = tmp_path / "bench"
    args = ["--cache", str(OBD_CACHE), "--out", str(out), "--n-sim", "5000", "--n-bootstrap", "20", "--resamples", "0"]
    assert main(args) == 0
    doc = json.loads((out / "obd.json").read_text())
    assert set(doc["campaigns"]) == {"all", "men", "women"}
    assert set(doc["mean_relative_error"]["bts"]) == set(ESTIMATOR_NAMES)
    mean_dm = np.mean(
        [doc["campaigns"][c]["policies"]["bts"]["estimates"]["dm"]["relative_error"] for c in doc["campaigns"]]
    )
    assert doc["mean_relative_error"]["bts"]["dm"] == pytest.approx(mean_dm)
    assert doc["obp_published"]["relative_error"] == OBP_PUBLISHED_RELATIVE_ERROR
    assert "mean_resampled_relative_error" not in doc
    table = (out / "obd_table.txt").read_text()
    assert "BTS estimated from the random logs" in table and "OBP published (all)" in table
    assert "0.157" in table  # OBP's DM figure, beside ours
    assert len(tables(doc)) == 2
    assert "switch_dr" in capsys.readouterr().out


def test_command_line_reports_a_bad_cache_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--cache", str(blocker), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot use")
