"""meTS: the closed forms against a brute-force joint Gaussian, hierarchical draws, Laplace modes, snapshots."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
from sklearn.mixture import GaussianMixture

from banditlp.arrays import FloatArray
from models.errors import ModelInputError, ShapeError
from models.policies.mets import HierTS, Mets, MetsProxy, MixedEffectPolicy
from models.policies.mets_glm import GlmTS, MetsGlm, UcbGlm
from models.policies.mets_posterior import MixedEffectPrior, effect_posterior, laplace_terms, sample_hierarchical
from models.policies.registry import make_policy

K, L, D = 4, 2, 2


def _spd(rng: np.random.Generator, n: int, scale: float = 1.0) -> FloatArray:
    A = rng.standard_normal((n, n))
    return scale * (A @ A.T / n + 0.5 * np.eye(n))


def _instance(seed: int = 0) -> dict[str, Any]:
    """A small model with a full Σ_Ψ, per-action Σ_0 and one action never observed."""
    rng = np.random.default_rng(seed)
    params = {
        "mixing": rng.dirichlet(np.ones(L), K),
        "effect_mean": rng.standard_normal((L, D)),
        "effect_cov": _spd(rng, L * D),
        "action_cov": np.stack([_spd(rng, D, 0.3) for _ in range(K)]),
        "noise_std": 0.7,
    }
    n = 15
    actions = rng.integers(0, K - 1, n)  # action K-1 has no data: its G is 0
    features = rng.standard_normal((n, K, D))
    rewards = rng.standard_normal(n)
    return {"params": params, "actions": actions, "features": features, "rewards": rewards}


def _brute_force(inst: dict[str, Any]) -> tuple[FloatArray, FloatArray]:
    """Posterior mean and covariance of z = (Ψ, θ_1, …, θ_K) by conditioning the joint Gaussian."""
    p = inst["params"]
    b, mu, s_psi, s0 = p["mixing"], p["effect_mean"].ravel(), p["effect_cov"], p["action_cov"]
    Bmat = np.kron(b, np.eye(D))  # (K·d, L·d): θ = Bmat Ψ + ε
    C = np.block([[s_psi, s_psi @ Bmat.T], [Bmat @ s_psi, Bmat @ s_psi @ Bmat.T + scipy.linalg.block_diag(*s0)]])
    m = np.concatenate([mu, Bmat @ mu])
    n = len(inst["actions"])
    H = np.zeros((n, L * D + K * D))
    for t, a in enumerate(inst["actions"]):
        H[t, L * D + a * D : L * D + (a + 1) * D] = inst["features"][t, a]
    S = H @ C @ H.T + p["noise_std"] ** 2 * np.eye(n)
    gain = np.linalg.solve(S, H @ C).T
    return m + gain @ (inst["rewards"] - H @ m), C - gain @ H @ C


def _fitted(inst: dict[str, Any], cls: type[MixedEffectPolicy] = Mets) -> MixedEffectPolicy:
    policy = cls(K, D, **inst["params"])
    for a, X, y in zip(inst["actions"], inst["features"], inst["rewards"]):
        policy.update(int(a), X, float(y))
    return policy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_equals_joint_gaussian_posterior(seed: int) -> None:
    inst = _instance(seed)
    mean, cov = _brute_force(inst)
    policy = _fitted(inst)
    n_psi = L * D
    np.testing.assert_allclose(policy.effects.mean, mean[:n_psi], atol=1e-8, rtol=0)
    np.testing.assert_allclose(policy.effects.cov, cov[:n_psi, :n_psi], atol=1e-8, rtol=0)
    marg_mean, marg_cov = policy.marginal()
    for i in range(K):
        block = slice(n_psi + i * D, n_psi + (i + 1) * D)
        np.testing.assert_allclose(marg_mean[i], mean[block], atol=1e-8, rtol=0)
        np.testing.assert_allclose(marg_cov[i], cov[block, block], atol=1e-8, rtol=0)
    # The action posteriors P_{t,i}(· | Ψ): the joint posterior conditioned on Ψ = ψ.
    psi = np.random.default_rng(seed).standard_normal(n_psi)
    gain = cov[n_psi:, :n_psi] @ np.linalg.inv(cov[:n_psi, :n_psi])
    cond_mean = mean[n_psi:] + gain @ (psi - mean[:n_psi])
    cond_cov = cov[n_psi:, n_psi:] - gain @ cov[:n_psi, n_psi:]
    np.testing.assert_allclose(policy.conditional_means(psi[None])[0].ravel(), cond_mean, atol=1e-8, rtol=0)
    for i in range(K):
        block = slice(i * D, (i + 1) * D)
        np.testing.assert_allclose(policy.posterior()["action_cond_cov"][i], cond_cov[block, block], atol=1e-8)
    # Given Ψ the actions are independent (the missing edges of the graphical model).
    off = cond_cov.copy()
    for i in range(K):
        off[i * D : (i + 1) * D, i * D : (i + 1) * D] = 0.0
    np.testing.assert_allclose(off, 0.0, atol=1e-8)


def test_incremental_equals_batch_posterior() -> None:
    inst = _instance(3)
    incremental = _fitted(inst).posterior()
    batch = Mets.batch_posterior(K, D, inst["actions"], inst["features"], inst["rewards"], **inst["params"])
    assert batch is not None
    for name, value in incremental.items():
        np.testing.assert_allclose(value, batch[name], atol=1e-10, err_msg=name)


def test_module_functions_match_the_policy() -> None:
    inst = _instance(4)
    policy = _fitted(inst)
    prior = policy.prior
    M, m = laplace_terms(prior.action_cov, policy.G, policy.B)
    effects = effect_posterior(prior, M, m)
    np.testing.assert_allclose(effects.mean, policy.effects.mean, atol=1e-12)
    np.testing.assert_allclose(effects.cov, policy.effects.cov, atol=1e-12)


def test_hierarchical_samples_have_the_joint_posterior_moments() -> None:
    inst = _instance(5)
    mean, cov = _brute_force(inst)
    policy = _fitted(inst)
    n = 40_000
    Psi, theta = sample_hierarchical(
        policy.prior, policy.G, policy.B, policy.effects, np.random.default_rng(7), n_samples=n
    )
    z = np.concatenate([Psi, theta.reshape(n, -1)], axis=1)
    sd = np.sqrt(np.diag(cov))
    # Sample mean within 4.5 standard errors, sample covariance within 4.5 SE of a Gaussian
    # covariance estimate (Var(ŝ_jk) = (Σ_jk² + Σ_jj Σ_kk) / n).
    assert np.all(np.abs(z.mean(axis=0) - mean) < 4.5 * sd / np.sqrt(n))
    se_cov = np.sqrt((cov**2 + np.outer(sd**2, sd**2)) / n)
    assert np.all(np.abs(np.cov(z.T) - cov) < 4.5 * se_cov)
    # The policy's own sampler (used by score) draws from the same distribution.
    own = policy.draw_theta(np.random.default_rng(8), n).reshape(n, -1)
    assert np.all(np.abs(own.mean(axis=0) - mean[L * D :]) < 4.5 * sd[L * D :] / np.sqrt(n))


def _run(policy: Any, rounds: int, seed: int, logistic: bool = False) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    world = np.random.default_rng(seed + 100)
    out = []
    for _ in range(rounds):
        X = world.standard_normal((policy.n_actions, policy.dim))
        choice = policy.choose(X, rng)
        y = float(world.random() < 0.5) if logistic else float(world.standard_normal())
        policy.update(choice.action, X, y)
        out.append((choice.action, choice.propensity))
    return out


POLICY_CASES = [
    ("mets", False),
    ("hierts", False),
    ("mets_proxy", False),
    ("mets_glm", True),
    ("glm_ts", True),
    ("ucb_glm", True),
]


@pytest.mark.parametrize(("name", "logistic"), POLICY_CASES)
def test_snapshot_round_trip_continues_identically(name: str, logistic: bool) -> None:
    params = {"mixing": np.random.default_rng(0).dirichlet(np.ones(3), 6)} if name in ("mets", "hierts") else {}
    policy = make_policy(name, 6, 3, seed=2, propensity_draws=20, **params)
    _run(policy, 25, seed=0, logistic=logistic)
    restored = type(policy).from_bytes(policy.to_bytes())
    for key, value in policy.posterior().items():
        np.testing.assert_array_equal(restored.posterior()[key], value, err_msg=key)
    assert _run(restored, 10, seed=1, logistic=logistic) == _run(policy, 10, seed=1, logistic=logistic)


@pytest.mark.parametrize(("name", "logistic"), POLICY_CASES)
def test_seeded_runs_are_reproducible(name: str, logistic: bool) -> None:
    first = _run(make_policy(name, 5, 2, propensity_draws=10), 30, seed=3, logistic=logistic)
    second = _run(make_policy(name, 5, 2, propensity_draws=10), 30, seed=3, logistic=logistic)
    assert first == second
    assert all(0.0 < p <= 1.0 for _, p in first)


@pytest.mark.parametrize("name", ["mets", "hierts", "mets_glm", "glm_ts"])
def test_zero_temperature_plays_the_mean(name: str) -> None:
    policy = make_policy(name, 5, 2, tau=0.0)
    _run(policy, 10, seed=4, logistic=name.endswith(("glm", "glm_ts")))
    scores = policy.score(np.random.default_rng(0).standard_normal((5, 2)), np.random.default_rng(1))
    np.testing.assert_array_equal(scores.value, scores.mean)


def _penalised_nll(X: FloatArray, y: FloatArray, lam: float) -> Any:
    def f(t: FloatArray) -> float:
        z = X @ t
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * lam * t @ t)

    return f


@pytest.mark.parametrize("name", ["mets_glm", "glm_ts"])
def test_laplace_mode_equals_scipy_map(name: str) -> None:
    policy = make_policy(name, 3, 2, propensity_draws=5)
    rng = np.random.default_rng(11)
    theta = np.array([[1.0, -0.5], [0.3, 0.8], [-1.0, 0.2]])
    for _ in range(60):
        X = rng.standard_normal((3, 2))
        choice = policy.choose(X, rng)
        a = choice.action
        policy.update(a, X, float(rng.random() < 1.0 / (1.0 + np.exp(-X[a] @ theta[a]))))
    lam = policy.params.ridge if name == "mets_glm" else policy.params.prior_precision
    for a in range(3):
        Xa, ya = policy.history.of(a)
        if len(ya) == 0:
            continue
        res = scipy.optimize.minimize(_penalised_nll(Xa, ya, lam), np.zeros(2), method="BFGS", options={"gtol": 1e-10})
        np.testing.assert_allclose(policy.modes[a], res.x, atol=1e-6)
        p = 1.0 / (1.0 + np.exp(-Xa @ policy.modes[a]))
        curvature = (Xa.T * (p * (1 - p))) @ Xa
        if name == "mets_glm":  # the slides' plug-in: G ← G^LAP, B ← G^LAP μ^LAP
            np.testing.assert_allclose(policy.G[a], curvature, atol=1e-10)
            np.testing.assert_allclose(policy.B[a], curvature @ policy.modes[a], atol=1e-10)
        else:
            np.testing.assert_allclose(policy.cov[a], np.linalg.inv(curvature + lam * np.eye(2)), atol=1e-10)


def test_glm_incremental_equals_batch() -> None:
    rng = np.random.default_rng(12)
    actions = rng.integers(0, 4, 40)
    features = rng.standard_normal((40, 4, 2))
    rewards = (rng.random(40) < 0.4).astype(float)
    for cls in (MetsGlm, GlmTS, UcbGlm):
        policy = cls(4, 2)
        for a, X, y in zip(actions, features, rewards):
            policy.update(int(a), X, float(y))
        batch = cls.batch_posterior(4, 2, actions, features, rewards)
        assert batch is not None
        for key, value in policy.posterior().items():
            np.testing.assert_allclose(value, batch[key], atol=1e-8, err_msg=f"{cls.name} {key}")


def test_hierts_uses_one_effect_per_action() -> None:
    mixing = np.array([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    policy = HierTS(3, 2, mixing=mixing)
    np.testing.assert_array_equal(policy.prior.mixing, [[1, 0], [0, 1], [1, 0]])


def test_proxy_structure_is_the_gaussian_mixture() -> None:
    rng = np.random.default_rng(13)
    centres = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    embeddings = centres[rng.integers(0, 3, 60)] + 0.3 * rng.standard_normal((60, 2))
    policy = MetsProxy(60, 2, seed=1, embeddings=embeddings, n_effects=3, action_cov=0.1)
    gmm = GaussianMixture(3, covariance_type="full", random_state=1, reg_covar=1e-6).fit(embeddings)
    np.testing.assert_allclose(policy.prior.mixing, gmm.predict_proba(embeddings))
    np.testing.assert_allclose(policy.prior.effect_mean, gmm.means_)
    np.testing.assert_allclose(policy.prior.effect_cov, scipy.linalg.block_diag(*gmm.covariances_))


@pytest.mark.parametrize(
    ("name", "params", "error", "match"),
    [
        ("mets", {"mixing": [[1.0], [1.0]]}, ShapeError, "the prior is for"),
        ("mets", {"mixing": np.ones((3, 2)), "effect_mean": np.zeros((3, 2))}, ShapeError, "effect_mean"),
        ("mets", {"action_cov": -1.0}, ModelInputError, "positive definite"),
        ("mets", {"noise_std": 0.0}, ModelInputError, "noise_std"),
        ("mets", {"tau": -1.0}, ModelInputError, "tau"),
        ("mets_glm", {"ridge": 0.0}, ModelInputError, "ridge"),
        ("glm_ts", {"prior_precision": 0.0}, ModelInputError, "prior_precision"),
        ("mets_proxy", {"embeddings": np.zeros((2, 2))}, ModelInputError, "embeddings"),
        ("mets", {"bogus": 1}, ModelInputError, "bogus"),
    ],
)
def test_invalid_parameters(name: str, params: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make_policy(name, 3, 2, **params)


def test_logistic_reward_outside_unit_interval_is_refused() -> None:
    policy = make_policy("mets_glm", 3, 2)
    with pytest.raises(ModelInputError, match=r"\[0, 1\]"):
        policy.update(0, np.zeros((3, 2)), 2.0)


def test_prior_build_shorthands() -> None:
    prior = MixedEffectPrior.build(np.ones((3, 2)) / 2, np.zeros((2, 2)), np.stack([np.eye(2)] * 2), 0.5)
    assert prior.effect_cov.shape == (4, 4)
    np.testing.assert_array_equal(prior.action_cov, np.broadcast_to(0.5 * np.eye(2), (3, 2, 2)))
