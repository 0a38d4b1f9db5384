"""The experiment's neural model is the streams' model: same fit, same scores, bit for bit.

evaluation/ cannot import streams/, so the experiment keeps its own copy of the trainer's fit
and the scorer's scoring; these tests pin the copy to the originals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.email_world import EmailWorld
from evaluation.experiment.batches import FIRST_LOGGED_BATCH, BatchBook
from evaluation.experiment.methods.neural_model import (
    fit_neural,
    logit,
    neural_config,
    score_neural,
    version_spread,
)
from models.calibration import fit_calibrator
from streams.score.model import ScoringModel
from streams.score.model import neural_config as streams_neural_config
from streams.simulate.warm_start import FIRST_LOGGED_BATCH as STREAMS_FIRST_LOGGED_BATCH
from streams.train.trainer import fit_model


def test_the_config_and_the_logged_batches_are_the_streams_ones() -> None:
    assert neural_config(14, 5) == streams_neural_config(14, 5)
    assert FIRST_LOGGED_BATCH == STREAMS_FIRST_LOGGED_BATCH


def test_fit_and_score_equal_the_trainer_and_the_scorer(tiny_book: BatchBook, tiny_world: EmailWorld) -> None:
    rows = tiny_book.warm_start(seed=0, n_rows=120)
    mine = fit_neural(rows, seed=7)
    theirs = fit_model(rows.features, rows.converted, rows.unsubscribed, rows.value, seed=7)
    X = np.array(tiny_world.candidates(0).features)
    for name, values in mine.mean_scores(X).items():
        np.testing.assert_array_equal(values, theirs.mean_scores(X)[name])
    assert set(mine.calibrators) == set(theirs.calibrators) == {"conversion", "unsubscription"}
    for name, cal in mine.calibrators.items():
        assert type(cal) is type(theirs.calibrators[name])
        for key, array in cal.snapshot_arrays().items():
            np.testing.assert_array_equal(array, theirs.calibrators[name].snapshot_arrays()[key])
    got = score_neural(mine, X, 1.0, np.random.default_rng(11))
    want = ScoringModel("email", 1, theirs).score(X, 1.0, np.random.default_rng(11))
    for name in ("conversion", "unsubscription", "value", "reward"):
        np.testing.assert_array_equal(got.samples[name], want.samples[name])
        np.testing.assert_array_equal(got.means[name], want.means[name])
    np.testing.assert_array_equal(got.raw_means["conversion"], want.fixed_conversion_mean)


def test_a_warm_retrain_equals_the_trainers(tiny_book: BatchBook, tiny_world: EmailWorld) -> None:
    rows = tiny_book.warm_start(seed=0, n_rows=120)
    first = fit_neural(rows, seed=7)
    more = tiny_book.warm_start(seed=1, n_rows=160)
    mine = fit_neural(more, seed=8, previous=first)
    theirs = fit_model(more.features, more.converted, more.unsubscribed, more.value, seed=8, previous=first)
    X = np.array(tiny_world.candidates(0).features)
    assert mine.n_trainings == theirs.n_trainings == first.n_trainings + 1
    for name, values in mine.mean_scores(X, calibrate=True).items():
        np.testing.assert_array_equal(values, theirs.mean_scores(X, calibrate=True)[name])


def test_naive_calibration_is_fitted_on_thompson_samples_of_the_holdout(tiny_book: BatchBook) -> None:
    rows = tiny_book.warm_start(seed=1, n_rows=100)
    model = fit_neural(rows, seed=3, calibration="naive", tau=1.0, rng=np.random.default_rng(5))
    plain = fit_neural(rows, seed=3, calibration="none")
    assert plain.calibrators == {}
    # the same samples, drawn again from an identically seeded generator, give the same maps
    generator = torch.Generator().manual_seed(int(np.random.default_rng(5).integers(2**62)))
    samples, _, _ = plain.marginal_scores(rows.features[80:], 1.0, generator)
    for outcome, y in (("conversion", rows.converted[80:]), ("unsubscription", rows.unsubscribed[80:])):
        expected = fit_calibrator(samples[outcome], y, mode="naive")
        assert model.calibrators[outcome].mode == "naive"
        assert model.calibrators[outcome].snapshot_arrays().keys() == expected.snapshot_arrays().keys()
        for key, array in expected.snapshot_arrays().items():
            np.testing.assert_array_equal(model.calibrators[outcome].snapshot_arrays()[key], array)
    with pytest.raises(ValueError, match="naive calibration needs a generator"):
        fit_neural(rows, seed=3, calibration="naive")


def test_version_spread_is_zero_between_a_model_and_itself_and_scales_with_the_change(
    tiny_book: BatchBook, tiny_world: EmailWorld
) -> None:
    rows = tiny_book.warm_start(seed=0, n_rows=120)
    a = fit_neural(rows, seed=1)
    b = fit_neural(rows, seed=2)
    X = np.array(tiny_world.candidates(0).features)
    assert version_spread(a, a, X) == {"conversion": 0.0, "unsubscription": 0.0}
    spread = version_spread(a, b, X)
    new, old, std = b.mean_scores(X), a.mean_scores(X), b.predictive_std(X)
    for outcome in ("conversion", "unsubscription"):
        change = np.sqrt(np.mean((logit(new[outcome]) - logit(old[outcome])) ** 2))
        assert spread[outcome] == pytest.approx(change / np.sqrt(np.mean(std[outcome] ** 2)))
        assert spread[outcome] > 0


def test_logit_inverts_the_sigmoid_and_stays_finite() -> None:
    f = np.array([-3.0, 0.0, 2.5])
    np.testing.assert_allclose(logit(1 / (1 + np.exp(-f))), f, atol=1e-12)
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()
