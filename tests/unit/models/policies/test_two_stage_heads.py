"""The two-stage paper's heads against brute force: eq. 2 (GLM-UCB), eq. 3 (S-N-GALM), eq. 4 (S-N-GBLM)."""

from __future__ import annotations

import numpy as np
import pytest

from models.policies.registry import make_policy
from models.policies.two_stage_heads import GalmHead, GblmHead, GlmHead, UserIndex, bilinear_features

D1, D2 = 3, 2


def _history(n: int, n_users: int, n_arms: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n observations: rows (n, D1 + D2) of a few users, their arms (n,), users (n,) and 0/1 rewards."""
    gen = np.random.default_rng(seed)
    users = gen.normal(size=(n_users, D2))
    who = gen.integers(n_users, size=n)
    arms = gen.integers(n_arms, size=n)
    items = gen.normal(size=(n_arms, D1))
    rows = np.c_[items[arms], users[who]]
    return rows, arms, who, (gen.random(n) < 0.4).astype(float)


def _aug(X: np.ndarray) -> np.ndarray:
    return np.c_[X, np.ones(len(X))]


def test_gblm_bonus_and_mean_match_a_brute_force_inverse() -> None:
    rows, _, _, y = _history(40, 3, 6, seed=0)
    head = GblmHead(D1, D2, eta=1.0)
    for r, t in zip(rows, y, strict=True):
        head.update(r, float(t))
    probe = np.random.default_rng(1).normal(size=(5, D1 + D2))
    mean, unc, value = head.acquisition(probe, beta=0.3)
    # W = I + Σ vec(x̃ z̃ᵀ) vec(x̃ z̃ᵀ)ᵀ built by np.kron, inverted by numpy
    phi_hist = np.stack([np.kron(_aug(r[None, :D1])[0], _aug(r[None, D1:])[0]) for r in rows])
    W = np.eye(phi_hist.shape[1]) + phi_hist.T @ phi_hist
    np.testing.assert_allclose(head.Winv, np.linalg.inv(W), atol=1e-10)
    Xp, Zp = _aug(probe[:, :D1]), _aug(probe[:, D1:])
    phi = np.stack([np.kron(x, z) for x, z in zip(Xp, Zp, strict=True)])
    np.testing.assert_allclose(bilinear_features(Xp, Zp), phi)
    expect_unc = np.sqrt(np.einsum("ni,ij,nj->n", phi, np.linalg.inv(W), phi))
    np.testing.assert_allclose(unc, expect_unc, rtol=1e-9)
    # eq. 4's mean ρ(x̃ᵀ Θ̂ z̃) with Θ̂ the (D1 + 1, D2 + 1) matrix of θ̂
    Theta = head.theta.reshape(D1 + 1, D2 + 1)
    logit = np.einsum("na,ab,nb->n", Xp, Theta, Zp)
    np.testing.assert_allclose(mean, 1 / (1 + np.exp(-logit)))
    np.testing.assert_allclose(value, mean + 0.3 * unc)


def test_gblm_recovers_a_bilinear_logistic_model() -> None:
    """Simulation with a known answer: the direction of Θ* of a bilinear logistic world, from 20,000 draws."""
    gen = np.random.default_rng(2)
    theta_star = gen.normal(size=(D1 + 1) * (D2 + 1)) * 0.8
    head = GblmHead(D1, D2, eta=1.0)
    for _ in range(20_000):
        row = gen.normal(size=D1 + D2)
        p = 1 / (1 + np.exp(-(head.features(row[None])[0] @ theta_star)))
        head.update(row, float(gen.random() < p))
    # the step's Gram is not weighted by ρ' (≤ 1/4), so the fit is shrunk (here to ~0.4 ‖Θ*‖) and slow
    # to converge in scale; the ranking of rows reads the direction, which is recovered
    cosine = head.theta @ theta_star / np.linalg.norm(head.theta) / np.linalg.norm(theta_star)
    assert cosine > 0.95


def test_galm_paper_confidence_matrices_per_user_and_per_item() -> None:
    """Eq. 3: A_i from the items each user saw, A_u from the users each item was shown to."""
    rows, arms, who, y = _history(60, 4, 5, seed=3)
    head = GalmHead(D1, D2, gamma=0.3, eta=1.0, n_arms=5, confidence="paper")
    for r, a, t in zip(rows, arms, y, strict=True):
        head.update(r, float(t), arm=int(a))
    user_rows = rows[who == 2][0, D1:]
    probe = np.c_[np.random.default_rng(4).normal(size=(5, D1)), np.tile(user_rows, (5, 1))]
    probe_arms = np.arange(5)
    mean, unc, value = head.acquisition(probe, beta=0.7, arms=probe_arms)
    X_u = _aug(rows[who == 2, :D1])
    A_i = np.eye(D1 + 1) + X_u.T @ X_u
    xt = _aug(probe[:, :D1])
    ux = np.sqrt(np.einsum("ni,ij,nj->n", xt, np.linalg.inv(A_i), xt))
    uz = np.empty(5)
    for a in range(5):
        Z_a = rows[arms == a, D1:]
        A_u = np.eye(D2) + Z_a.T @ Z_a
        uz[a] = np.sqrt(probe[a, D1:] @ np.linalg.inv(A_u) @ probe[a, D1:])
    np.testing.assert_allclose(unc, 0.3 * ux + 0.7 * uz, rtol=1e-9)
    logit = 0.3 * xt @ head.theta_x + 0.7 * probe[:, D1:] @ head.theta_z
    np.testing.assert_allclose(mean, 1 / (1 + np.exp(-logit)))
    np.testing.assert_allclose(value, mean + 0.7 * unc)
    # a user never seen has A_i = I
    stranger = np.c_[probe[:, :D1], np.full((5, D2), 9.0)]
    _, unc_new, _ = head.acquisition(stranger, beta=1.0, arms=probe_arms)
    np.testing.assert_allclose(unc_new, 0.3 * np.linalg.norm(xt, axis=1) + 0.7 * _z_bonus(rows, arms, 9.0))


def _z_bonus(rows: np.ndarray, arms: np.ndarray, value: float) -> np.ndarray:
    z = np.full(D2, value)
    out = []
    for a in range(5):
        Z_a = rows[arms == a, D1:]
        out.append(np.sqrt(z @ np.linalg.inv(np.eye(D2) + Z_a.T @ Z_a) @ z))
    return np.asarray(out)


def test_glm_ucb_per_user_bonus_matches_a_brute_force_inverse() -> None:
    rows, _, who, y = _history(50, 3, 7, seed=5)
    head = GlmHead(D1, D2, eta=1.0)
    for r, t in zip(rows, y, strict=True):
        head.update(r, float(t))
    for u in range(3):
        z = rows[who == u][0, D1:]
        probe = np.c_[np.random.default_rng(6 + u).normal(size=(4, D1)), np.tile(z, (4, 1))]
        mean, unc, value = head.acquisition(probe, beta=0.5)
        X_u = _aug(rows[who == u, :D1])
        M_u = np.eye(D1 + 1) + X_u.T @ X_u
        c = _aug(probe[:, :D1])
        np.testing.assert_allclose(unc, np.sqrt(np.einsum("ni,ij,nj->n", c, np.linalg.inv(M_u), c)), rtol=1e-9)
        idx = head.users.lookup(probe[:, D1:])[0]
        np.testing.assert_allclose(mean, 1 / (1 + np.exp(-(c @ head.glm.theta[idx]))))
        np.testing.assert_allclose(value, mean + 0.5 * unc)


def test_glm_ucb_fit_equals_the_recursive_least_squares_steps_by_hand() -> None:
    """θ̂_u after each observation: θ̂ += M⁻¹ c (y − ρ(cᵀθ̂)) with M⁻¹ from numpy's inverse."""
    rows, _, who, y = _history(30, 2, 4, seed=7)
    head = GlmHead(D1, D2, eta=1.0)
    theta = {u: np.zeros(D1 + 1) for u in range(2)}
    gram = {u: np.eye(D1 + 1) for u in range(2)}
    for r, u, t in zip(rows, who, y, strict=True):
        head.update(r, float(t))
        c = _aug(r[None, :D1])[0]
        resid = t - 1 / (1 + np.exp(-c @ theta[u]))
        gram[u] = gram[u] + np.outer(c, c)
        theta[u] = theta[u] + np.linalg.solve(gram[u], c) * resid
    for u in range(2):
        idx = head.users.lookup(rows[who == u][:1, D1:])[0]
        np.testing.assert_allclose(head.glm.theta[idx], theta[u], atol=1e-10)


def test_user_index_keys_users_by_their_representation() -> None:
    users = UserIndex(2)
    assert users.add(np.array([1.0, 2.0])) == (0, True)
    assert users.add(np.array([3.0, 4.0])) == (1, True)
    assert users.add(np.array([1.0, 2.0])) == (0, False)
    assert users.lookup(np.array([[3.0, 4.0], [1.0, 2.0], [0.0, 0.0]])).tolist() == [1, 0, -1]
    assert users.lookup(np.array([[3.0, 4.0]] * 3)).tolist() == [1, 1, 1]
    again = UserIndex(2)
    again.load(users.keys)
    assert again.lookup(np.array([[1.0, 2.0]])).tolist() == [0]


@pytest.mark.parametrize("name", ["galm_ucb", "gblm_ucb", "glm_ucb"])
def test_the_bonus_is_beta_times_the_uncertainty(name: str) -> None:
    policy = make_policy(name, 6, D1 + D2, user_dim=D2, beta=0.4)
    rows, _, _, y = _history(20, 2, 6, seed=8)
    features = np.tile(rows[:1], (6, 1))
    features[:, :D1] = np.random.default_rng(9).normal(size=(6, D1))
    for r, t in zip(rows, y, strict=True):
        feats = features.copy()
        feats[0] = r
        policy.update(0, feats, float(t))
    s = policy.score(features, np.random.default_rng(0))
    np.testing.assert_allclose(s.value, s.mean + 0.4 * s.uncertainty)
    assert np.all(s.uncertainty > 0)
