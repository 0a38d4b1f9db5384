"""The dataset's policies: ZOZOTOWN's prior, BTS's Monte Carlo distribution against exact integrals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from evaluation.datasets.bts import (
    BTSPrior,
    action_dist_standard_error,
    bts_action_dist,
    load_bts_prior,
    uniform_action_dist,
)
from evaluation.datasets.errors import DatasetFormatError, DatasetMissingFile
from evaluation.errors import EvaluationInputError
from tests.unit.evaluation.datasets import obd_root

ALPHA = np.array([2.0, 3.0, 4.0])
BETA = np.array([5.0, 4.0, 3.0])


def _ranks_of_one(
    fa: Callable[[float], float], fj: Callable[[float], float], fk: Callable[[float], float]
) -> list[float]:
    """P(rank 0, 1, 2) of the draw with density ``fa`` against two draws with cdfs ``fj``, ``fk``."""
    integrands = [
        lambda t: fa(t) * fj(t) * fk(t),
        lambda t: fa(t) * ((1 - fj(t)) * fk(t) + (1 - fk(t)) * fj(t)),
        lambda t: fa(t) * (1 - fj(t)) * (1 - fk(t)),
    ]
    return [integrate.quad(f, 0, 1, epsabs=1e-11)[0] for f in integrands]


def _exact_rank_probabilities(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``(3, 3)`` P(item a has rank k) for three independent Beta draws, by quadrature.

    Rank 0 (largest): ``int f_a prod_j F_j``; rank 2: ``int f_a prod_j (1 - F_j)``; rank 1: the
    one other draw above, ``int f_a sum_j (1 - F_j) F_l`` over the two orders of the others.
    """
    dists = [stats.beta(a, b) for a, b in zip(alpha, beta)]
    out = np.zeros((3, 3))
    for a in range(3):
        j, k = [i for i in range(3) if i != a]
        out[a] = _ranks_of_one(dists[a].pdf, dists[j].cdf, dists[k].cdf)
    return out


def test_monte_carlo_matches_the_exact_three_item_distribution() -> None:
    exact = _exact_rank_probabilities(ALPHA, BETA)
    np.testing.assert_allclose(exact.sum(axis=0), 1.0, atol=1e-8)  # the quadrature itself is a distribution
    n_sim = 400_000
    dist = bts_action_dist(BTSPrior(alpha=ALPHA, beta=BETA), 3, n_sim=n_sim, seed=11)
    tolerance = 5 * action_dist_standard_error(exact, n_sim)  # 5 standard errors: ~0.004
    np.testing.assert_allclose(dist, exact, atol=tolerance)
    # Two positions only: the top-k path (argpartition) gives the same first two columns.
    top2 = bts_action_dist(BTSPrior(alpha=ALPHA, beta=BETA), 2, n_sim=n_sim, seed=12)
    np.testing.assert_allclose(top2, exact[:, :2], atol=tolerance)


@settings(max_examples=25, deadline=None)
@given(
    params=st.lists(st.tuples(st.floats(0.5, 50), st.floats(0.5, 50)), min_size=3, max_size=12),
    len_list=st.integers(1, 3),
    seed=st.integers(0, 2**31),
)
def test_each_position_is_a_distribution_and_an_item_fills_at_most_one(
    params: list[tuple[float, float]], len_list: int, seed: int
) -> None:
    alpha, beta = np.array(params).T
    dist = bts_action_dist(BTSPrior(alpha=alpha, beta=beta), len_list, n_sim=2_000, seed=seed)
    assert dist.shape == (len(params), len_list)
    np.testing.assert_allclose(dist.sum(axis=0), 1.0)
    assert np.all(dist.sum(axis=1) <= 1.0 + 1e-12)  # the positions of one list hold distinct items
    assert np.all(dist >= 0)


def test_same_seed_same_matrix_and_chunks_do_not_matter() -> None:
    prior = BTSPrior(alpha=ALPHA, beta=BETA)
    np.testing.assert_array_equal(
        bts_action_dist(prior, 3, n_sim=30_001, seed=4), bts_action_dist(prior, 3, n_sim=30_001, seed=4)
    )
    assert not np.array_equal(
        bts_action_dist(prior, 3, n_sim=30_001, seed=4), bts_action_dist(prior, 3, n_sim=30_001, seed=5)
    )


def test_zozotown_prior_is_read_from_the_file() -> None:
    root = obd_root()
    prior = load_bts_prior(root, "all")
    assert prior.n_actions == 80
    np.testing.assert_array_equal(prior.alpha[:4], [47.0, 8.0, 62.0, 142.0])  # the file's first entries
    np.testing.assert_array_equal(prior.beta[:4], [12198.0, 3566.0, 15993.0, 35522.0])
    assert load_bts_prior(root, "men").n_actions == 34
    assert load_bts_prior(root, "women").n_actions == 46


def test_bts_from_the_prior_favours_the_items_with_high_prior_means() -> None:
    prior = load_bts_prior(obd_root(), "all")
    dist = bts_action_dist(prior, 3, n_sim=100_000, seed=0)
    np.testing.assert_allclose(dist.sum(axis=0), 1.0)
    mean = prior.alpha / (prior.alpha + prior.beta)
    # This prior's highest mean (item 61) is the item BTS puts on top most often (about 1 in 5).
    assert np.argmax(dist[:, 0]) == np.argmax(mean) == 61


def test_uniform_is_the_random_logs_propensity() -> None:
    dist = uniform_action_dist(80, 3)
    assert dist.shape == (80, 3)
    np.testing.assert_allclose(dist, 0.0125)  # the random/all log's propensity_score


def _prior_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "prior_bts.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("all:\n  alpha:\n    - 1.0\n  beta:\n    - x\n", DatasetFormatError, "'x' is not a number"),
        ("all:\n  alpha:\n    - 1.0\n", DatasetFormatError, "needs exactly alpha and beta"),
        ("men:\n  alpha:\n    - 1.0\n  beta:\n    - 1.0\n", DatasetFormatError, "campaign 'all'"),
        ("all:\n  alpha:\n    - 1.0\n    - 2.0\n  beta:\n    - 1.0\n", DatasetFormatError, "equal non-empty"),
        ("all:\n  alpha:\n    - 0.0\n  beta:\n    - 1.0\n", DatasetFormatError, "finite and > 0"),
        ("all: {alpha: [1], beta: [1]}\n", DatasetFormatError, "not part of a campaign/alpha/beta list"),
        ("- 1.0\n", DatasetFormatError, "not part of a campaign/alpha/beta list"),
    ],
    ids=["not-a-number", "no-beta", "no-campaign", "unequal", "zero", "flow-style", "stray-item"],
)
def test_bad_prior_files(tmp_path: Path, text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        load_bts_prior(_prior_file(tmp_path, text), "all")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissingFile, match="no BTS prior"):
        load_bts_prior(tmp_path, "all")
    with pytest.raises(EvaluationInputError, match="campaign must be one of"):
        load_bts_prior(tmp_path, "kids")
    prior = BTSPrior(alpha=ALPHA, beta=BETA)
    with pytest.raises(EvaluationInputError, match=r"len_list must be in \[1, 3\]"):
        bts_action_dist(prior, 4)
    with pytest.raises(EvaluationInputError, match="n_sim must be >= 1"):
        bts_action_dist(prior, 3, n_sim=0)
    with pytest.raises(EvaluationInputError, match="need n_actions >= len_list"):
        uniform_action_dist(2, 3)
    with pytest.raises(EvaluationInputError, match="finite and > 0"):
        BTSPrior(alpha=np.array([1.0, np.nan]), beta=np.ones(2))
