"""The metric GP's posterior against the closed-form GP posterior computed with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.errors import ShapeError
from models.tuner.gp import build_metric_gp, fit_metric_gp, joint_posterior

BOUNDS = ((-1.0, 3.0), (10.0, 20.0))


def matern52(A: np.ndarray, B: np.ndarray, lengthscale: np.ndarray) -> np.ndarray:
    r = np.sqrt((((A[:, None, :] - B[None, :, :]) / lengthscale) ** 2).sum(-1))
    return (1.0 + np.sqrt(5.0) * r + 5.0 / 3.0 * r**2) * np.exp(-np.sqrt(5.0) * r)


def closed_form(
    X: np.ndarray,
    y: np.ndarray,
    Xs: np.ndarray,
    *,
    lengthscale: np.ndarray,
    outputscale: float,
    constant: float,
    noise_std_units: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of f at Xs: inputs mapped to the unit cube, y standardised (ddof=1), noise in standardised units."""
    lo = np.array([b[0] for b in BOUNDS])
    hi = np.array([b[1] for b in BOUNDS])
    Xn, Xsn = (X - lo) / (hi - lo), (Xs - lo) / (hi - lo)
    mu, sd = y.mean(), y.std(ddof=1)
    ys = (y - mu) / sd
    K = outputscale * matern52(Xn, Xn, lengthscale) + np.diag(noise_std_units)
    Ks = outputscale * matern52(Xsn, Xn, lengthscale)
    Kss = outputscale * matern52(Xsn, Xsn, lengthscale)
    mean_s = constant + Ks @ np.linalg.solve(K, ys - constant)
    cov_s = Kss - Ks @ np.linalg.solve(K, Ks.T)
    return mean_s * sd + mu, cov_s * sd**2


def tiny_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    lo = np.array([b[0] for b in BOUNDS])
    hi = np.array([b[1] for b in BOUNDS])
    X = lo + rng.uniform(size=(6, 2)) * (hi - lo)
    y = 5.0 + 2.0 * np.sin(X[:, 0]) + 0.1 * X[:, 1] + 0.1 * rng.normal(size=6)
    Xs = lo + rng.uniform(size=(4, 2)) * (hi - lo)
    return X, y, Xs


def set_hyperparameters(gp: object, lengthscale: np.ndarray, outputscale: float, constant: float) -> None:
    gp.covar_module.base_kernel.lengthscale = torch.tensor(lengthscale, dtype=torch.float64)  # type: ignore[attr-defined]
    gp.covar_module.outputscale = torch.tensor(outputscale, dtype=torch.float64)  # type: ignore[attr-defined]
    gp.mean_module.constant = torch.tensor(constant, dtype=torch.float64)  # type: ignore[attr-defined]


def test_learned_noise_posterior_equals_closed_form() -> None:
    X, y, Xs = tiny_data()
    ls, os_, c, noise = np.array([0.3, 0.7]), 1.7, 0.2, 0.05
    gp = build_metric_gp(X, y, BOUNDS)
    set_hyperparameters(gp, ls, os_, c)
    gp.likelihood.noise = torch.tensor(noise, dtype=torch.float64)
    mean, cov = joint_posterior(gp, Xs)
    ref_mean, ref_cov = closed_form(
        X, y, Xs, lengthscale=ls, outputscale=os_, constant=c, noise_std_units=np.full(6, noise)
    )
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-6, atol=1e-8)


def test_fixed_noise_is_given_in_the_metrics_units() -> None:
    X, y, Xs = tiny_data()
    ls, os_, c, noise = np.array([0.5, 0.4]), 0.9, -0.1, 0.02
    gp = build_metric_gp(X, y, BOUNDS, noise_variance=noise)
    set_hyperparameters(gp, ls, os_, c)
    mean, cov = joint_posterior(gp, Xs)
    sd = y.std(ddof=1)
    ref_mean, ref_cov = closed_form(
        X, y, Xs, lengthscale=ls, outputscale=os_, constant=c, noise_std_units=np.full(6, noise / sd**2)
    )
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-6, atol=1e-8)


def test_fit_recovers_a_smooth_function_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 2)) * np.array([4.0, 10.0]) + np.array([-1.0, 10.0])

    def f(Z: np.ndarray) -> np.ndarray:
        return np.sin(Z[:, 0]) + 0.05 * (Z[:, 1] - 15.0) ** 2

    y = f(X) + 0.05 * rng.normal(size=40)
    Xs = rng.uniform(size=(200, 2)) * np.array([3.0, 8.0]) + np.array([-0.5, 11.0])  # inside the data's hull
    gp = fit_metric_gp(X, y, BOUNDS, seed=1)
    mean, cov = joint_posterior(gp, Xs)
    rmse = float(np.sqrt(np.mean((mean - f(Xs)) ** 2)))
    assert rmse < 0.1 * float(np.std(f(Xs)))
    # the posterior band covers the truth at about its nominal rate
    z = np.abs(mean - f(Xs)) / np.sqrt(np.diag(cov) + 1e-12)
    assert np.mean(z < 3.0) > 0.9
    again, _ = joint_posterior(fit_metric_gp(X, y, BOUNDS, seed=1), Xs)
    np.testing.assert_array_equal(mean, again)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ShapeError):
        build_metric_gp(np.zeros((3, 3)), np.zeros(3), BOUNDS)
    with pytest.raises(ShapeError):
        build_metric_gp(np.zeros((3, 2)), np.zeros(4), BOUNDS)
