"""Factored meTS: its factors against the mean-field optimum of the brute-force joint Gaussian posterior."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.linalg

from banditlp.arrays import FloatArray
from models.errors import ModelInputError
from models.policies.mets import Mets
from models.policies.mets_factored import MetsFactored, factored_effects
from models.policies.registry import make_policy

K, L, D = 5, 3, 2


def _spd(rng: np.random.Generator, n: int, scale: float = 1.0) -> FloatArray:
    A = rng.standard_normal((n, n))
    return scale * (A @ A.T / n + 0.5 * np.eye(n))


def _instance(seed: int, mixing: str = "dirichlet") -> dict[str, Any]:
    """A small model (full Σ_Ψ, per-action Σ_0, one action never observed) and a history."""
    rng = np.random.default_rng(seed)
    if mixing == "dirichlet":
        b = rng.dirichlet(np.ones(L), K)
        s_psi = _spd(rng, L * D)
    else:  # one effect per action, independent effects: the factored posterior is exact
        b = np.eye(L)[rng.integers(0, L, K)]
        s_psi = scipy.linalg.block_diag(*[_spd(rng, D) for _ in range(L)])
    params = {
        "mixing": b,
        "effect_mean": rng.standard_normal((L, D)),
        "effect_cov": s_psi,
        "action_cov": np.stack([_spd(rng, D, 0.3) for _ in range(K)]),
        "noise_std": 0.6,
    }
    n = 25
    return {
        "params": params,
        "actions": rng.integers(0, K - 1, n),  # action K-1 has no data
        "features": rng.standard_normal((n, K, D)),
        "rewards": rng.standard_normal(n),
    }


def _joint(inst: dict[str, Any]) -> tuple[FloatArray, FloatArray]:
    """Posterior mean and covariance of z = (Ψ, θ_1, …, θ_K) by conditioning the joint Gaussian on the rewards."""
    p = inst["params"]
    b, mu, s_psi, s0 = p["mixing"], p["effect_mean"].ravel(), p["effect_cov"], p["action_cov"]
    Bmat = np.kron(b, np.eye(D))  # θ = Bmat Ψ + ε
    C = np.block([[s_psi, s_psi @ Bmat.T], [Bmat @ s_psi, Bmat @ s_psi @ Bmat.T + scipy.linalg.block_diag(*s0)]])
    m = np.concatenate([mu, Bmat @ mu])
    H = np.zeros((len(inst["actions"]), L * D + K * D))
    for t, a in enumerate(inst["actions"]):
        H[t, L * D + a * D : L * D + (a + 1) * D] = inst["features"][t, a]
    S = H @ C @ H.T + p["noise_std"] ** 2 * np.eye(len(H))
    gain = np.linalg.solve(S, H @ C).T
    return m + gain @ (inst["rewards"] - H @ m), C - gain @ H @ C


def _blocks() -> list[slice]:
    return [slice(ell * D, (ell + 1) * D) for ell in range(L)]


def _fitted(inst: dict[str, Any], cls: type[Mets] = MetsFactored) -> Mets:
    policy = cls(K, D, **inst["params"])
    for a, X, y in zip(inst["actions"], inst["features"], inst["rewards"]):
        policy.update(int(a), X, float(y))
        policy.score(X, np.random.default_rng(0))  # refresh every round: the warm-started path
    return policy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_factors_are_the_mean_field_optimum_of_the_joint_posterior(seed: int) -> None:
    """Mean-field of a Gaussian N(μ, Λ⁻¹): factor means μ_ℓ, factor precisions the diagonal blocks Λ_ℓℓ."""
    inst = _instance(seed)
    mean, cov = _joint(inst)
    n_psi = L * D
    precision = np.linalg.inv(cov[:n_psi, :n_psi])  # of the marginal posterior of Ψ
    policy = _fitted(inst)
    assert isinstance(policy, MetsFactored)
    factors = policy.factors
    assert factors.converged
    np.testing.assert_allclose(factors.mean.ravel(), mean[:n_psi], atol=1e-8, rtol=0)
    for ell in range(L):
        block = slice(ell * D, (ell + 1) * D)
        np.testing.assert_allclose(factors.precision[ell], precision[block, block], atol=1e-8, rtol=0)
        np.testing.assert_allclose(factors.cov[ell], np.linalg.inv(precision[block, block]), atol=1e-8, rtol=0)
    # q_t is the product of the factors: no covariance across effects.
    off = policy.effects.cov.copy()
    for ell in range(L):
        off[ell * D : (ell + 1) * D, ell * D : (ell + 1) * D] = 0.0
    np.testing.assert_array_equal(off, 0.0)
    # The action posteriors given Ψ are the exact ones: the joint posterior conditioned on Ψ = ψ.
    psi = np.random.default_rng(seed).standard_normal(n_psi)
    gain = cov[n_psi:, :n_psi] @ np.linalg.inv(cov[:n_psi, :n_psi])
    cond_mean = mean[n_psi:] + gain @ (psi - mean[:n_psi])
    cond_cov = cov[n_psi:, n_psi:] - gain @ cov[:n_psi, n_psi:]
    np.testing.assert_allclose(policy.conditional_means(psi[None])[0].ravel(), cond_mean, atol=1e-8, rtol=0)
    for i in range(K):
        block = slice(i * D, (i + 1) * D)
        np.testing.assert_allclose(policy.posterior()["action_cond_cov"][i], cond_cov[block, block], atol=1e-8)
    # Each factor is never wider than the exact marginal of its effect (mean-field under-disperses).
    for ell in range(L):
        block = slice(ell * D, (ell + 1) * D)
        assert np.linalg.eigvalsh(cov[block, block] - factors.cov[ell]).min() > -1e-10
    # Marginals of θ_i under P(θ | Ψ) q(Ψ): the exact means, and the exact conditional pushed through the
    # product of the brute-force factors (block diagonal of the inverse diagonal blocks of the precision).
    q_cov = scipy.linalg.block_diag(*[np.linalg.inv(precision[b, b]) for b in _blocks()])
    push = cond_cov + gain @ q_cov @ gain.T
    marg_mean, marg_cov = policy.marginal()
    for i in range(K):
        block = slice(i * D, (i + 1) * D)
        np.testing.assert_allclose(marg_mean[i], mean[n_psi:][block], atol=1e-8, rtol=0)
        np.testing.assert_allclose(marg_cov[i], push[block, block], atol=1e-8, rtol=0)


def test_one_effect_per_action_is_exact() -> None:
    """With one-hot mixing and independent effects Λ is block diagonal: factored = meTS = the joint posterior."""
    inst = _instance(3, mixing="onehot")
    _, cov = _joint(inst)
    factored, exact = _fitted(inst), _fitted(inst, Mets)
    assert isinstance(factored, MetsFactored)
    n_psi = L * D
    np.testing.assert_allclose(factored.effects.cov, cov[:n_psi, :n_psi], atol=1e-8, rtol=0)
    for name, value in exact.posterior().items():
        np.testing.assert_allclose(factored.posterior()[name], value, atol=1e-10, err_msg=name)
    assert factored.factors.sweeps <= 2  # Gauss-Seidel on a block-diagonal system: one sweep, one to confirm


def test_coordinate_ascent_from_any_start_reaches_the_linear_solve() -> None:
    rng = np.random.default_rng(4)
    n = L * D
    lam = _spd(rng, n) + np.eye(n)
    eta = rng.standard_normal(n)
    cold = factored_effects(lam.reshape(L, D, L, D), eta.reshape(L, D), rng.standard_normal((L, D)) * 10)
    assert cold.converged
    np.testing.assert_allclose(cold.mean.ravel(), np.linalg.solve(lam, eta), atol=1e-10, rtol=0)
    # Starting at the solution: one sweep, no change.
    warm = factored_effects(lam.reshape(L, D, L, D), eta.reshape(L, D), cold.mean)
    assert warm.sweeps == 1
    np.testing.assert_allclose(warm.mean, cold.mean, atol=1e-12)
    capped = factored_effects(lam.reshape(L, D, L, D), eta.reshape(L, D), np.zeros((L, D)) + 1e3, max_sweeps=1)
    assert capped.sweeps == 1 and not capped.converged


def test_hierarchical_draws_have_the_factored_moments() -> None:
    """Ψ draws: factor means and block-diagonal covariance; θ draws: the factored marginals of the policy."""
    inst = _instance(5)
    policy = _fitted(inst)
    n = 40_000
    theta = policy.draw_theta(np.random.default_rng(8), n).reshape(n, -1)
    mean, cov = policy.marginal()
    sd = np.sqrt(np.concatenate([np.diag(c) for c in cov]))
    assert np.all(np.abs(theta.mean(axis=0) - mean.ravel()) < 4.5 * sd / np.sqrt(n))
    emp = np.cov(theta.T)
    for i in range(K):
        block = slice(i * D, (i + 1) * D)
        se = np.sqrt((cov[i] ** 2 + np.outer(np.diag(cov[i]), np.diag(cov[i]))) / n)
        assert np.all(np.abs(emp[block, block] - cov[i]) < 4.5 * se)


def test_snapshot_while_factors_are_cached_scores_alike() -> None:
    inst = _instance(6)
    policy = _fitted(inst)
    X = np.random.default_rng(1).standard_normal((K, D))
    policy.score(X, np.random.default_rng(2))  # factors cached, warm start one refresh behind
    restored = MetsFactored.from_bytes(policy.to_bytes())
    for p in (policy, restored):
        p.update(1, X, 0.3)
    s1, s2 = policy.score(X, np.random.default_rng(3)), restored.score(X, np.random.default_rng(3))
    np.testing.assert_array_equal(s1.value, s2.value)
    np.testing.assert_array_equal(s1.uncertainty, s2.uncertainty)


@pytest.mark.parametrize(("params", "match"), [({"max_sweeps": 0}, "max_sweeps"), ({"tol": 0.0}, "tol")])
def test_bad_parameters(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ModelInputError, match=match):
        make_policy("mets_factored", K, D, **params)
