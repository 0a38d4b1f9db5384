"""Cost pacing (models/pacing.py) against a grid posterior, closed-form counts and a simulation."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from models.errors import ModelInputError
from models.pacing import CostPacing, PacingConfig


def _grid_quantile(a: float, realised: float, budgeted: float, q: float) -> float:
    """The q-quantile of rho's posterior computed on a grid: Gamma(a, a) prior times the Poisson
    likelihood of ``realised`` events at mean ``rho * budgeted`` (no conjugacy used)."""
    rho = np.linspace(1e-6, 6.0, 600_001)
    log_post = stats.gamma.logpdf(rho, a, scale=1.0 / a) + stats.poisson.logpmf(round(realised), rho * budgeted)
    w = np.exp(log_post - log_post.max())
    cdf = np.cumsum(w) / w.sum()
    return float(np.interp(q, cdf, rho))


@pytest.mark.parametrize(
    ("a", "realised", "budgeted", "q"),
    [(20.0, 0.0, 0.0, 0.5), (20.0, 42.0, 38.28, 0.5), (5.0, 13.0, 6.53, 0.8), (1.0, 3.0, 10.0, 0.99)],
)
def test_the_factor_is_the_posterior_quantile_of_the_grid_posterior(
    a: float, realised: float, budgeted: float, q: float
) -> None:
    pacing = CostPacing(PacingConfig(prior_events=a, quantile=q)).update(realised, budgeted)
    assert pacing.factor() == pytest.approx(_grid_quantile(a, realised, budgeted, q), abs=2e-4)


def test_discounted_counts_are_the_geometric_sums_of_the_batches() -> None:
    batches = [(3.0, 2.5), (7.0, 4.0), (1.0, 3.2), (5.0, 5.5)]
    gamma = 0.8
    pacing = CostPacing(PacingConfig(memory=gamma))
    for r, c in batches:
        pacing = pacing.update(r, c)
    n = len(batches)
    assert pacing.realised == pytest.approx(sum(gamma ** (n - 1 - k) * r for k, (r, _) in enumerate(batches)))
    assert pacing.budgeted == pytest.approx(sum(gamma ** (n - 1 - k) * c for k, (_, c) in enumerate(batches)))


@given(
    st.lists(st.tuples(st.integers(0, 20), st.floats(0.0, 20.0)), min_size=1, max_size=12),
    st.randoms(use_true_random=False),
)
def test_without_discount_the_order_of_the_batches_does_not_matter(
    batches: list[tuple[int, float]], rnd: random.Random
) -> None:
    forward = CostPacing()
    for r, c in batches:
        forward = forward.update(float(r), c)
    shuffled = list(batches)
    rnd.shuffle(shuffled)
    other = CostPacing()
    for r, c in shuffled:
        other = other.update(float(r), c)
    assert other.factor() == pytest.approx(forward.factor(), rel=1e-9)


@given(st.integers(0, 200), st.floats(0.0, 200.0), st.floats(0.1, 20.0))
def test_more_events_raise_the_factor_and_more_budgeted_cost_lowers_it(r: int, c: float, step: float) -> None:
    base = CostPacing().update(float(r), c).factor()
    assert CostPacing().update(float(r) + step, c).factor() > base
    assert CostPacing().update(float(r), c + step).factor() < base


def test_the_factor_learns_a_known_bias_from_simulated_feedback() -> None:
    """Sends whose budgeted cost is 6 a batch and whose events come at rho = 1.6 times it: after 200
    batches the median is within 3 posterior sds of 1.6, and a prior alone gives Gamma(a, a)'s median."""
    rng = np.random.default_rng(7)
    assert CostPacing().factor() == pytest.approx(stats.gamma.ppf(0.5, 20.0, scale=1 / 20.0))
    pacing = CostPacing()
    for _ in range(200):
        pacing = pacing.update(float(rng.poisson(1.6 * 6.0)), 6.0)
    sd = np.sqrt(pacing.shape) / pacing.rate
    assert abs(pacing.factor() - 1.6) < 3 * sd


def test_pacing_off_is_one_and_bad_inputs_are_typed_errors() -> None:
    assert CostPacing(PacingConfig(prior_events=0.0)).update(50.0, 10.0).factor() == 1.0
    with pytest.raises(ModelInputError, match="pacing counts"):
        CostPacing().update(-1.0, 2.0)
    with pytest.raises(ModelInputError, match="pacing counts"):
        CostPacing().update(1.0, float("nan"))
    for bad in ({"prior_events": -1.0}, {"memory": 0.0}, {"memory": 1.5}, {"quantile": 1.0}, {"quantile": 0.0}):
        with pytest.raises(ModelInputError):
            PacingConfig(**bad)
