"""NeuralThompsonModel: last-layer Laplace against an independent GGN computation, TS behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit

from models.errors import ModelInputError, NotFittedError, ShapeError
from models.neural import NeuralThompsonModel
from models.neural_net import NeuralConfig, concat_features

torch.set_num_threads(1)

LAM = 1.0


def synthetic(seed: int, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A nonlinear problem on the box [-1, 1]^4 (2 user, 2 item features)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 4))
    f = np.sin(3 * X[:, 0]) + X[:, 1] * X[:, 2] - 0.5
    conv = (rng.random(n) < expit(2 * f)).astype(float)
    value = np.where(conv == 1, 1.0 + f + 0.1 * rng.normal(size=n), np.nan)  # value seen only on conversion
    unsub = (rng.random(n) < expit(-2 + X[:, 3])).astype(float)
    return X, {"conversion": conv, "unsubscription": unsub, "value": value}


@pytest.fixture(scope="module")
def fitted() -> tuple[NeuralThompsonModel, np.ndarray, dict[str, np.ndarray]]:
    X, Y = synthetic(0, 2000)
    cfg = NeuralConfig(
        user_dim=2,
        item_dim=2,
        hidden=(32, 16),
        epochs=15,
        prior_precision=LAM,
        retrain_every=400,
        buffer_size=2500,
        seed=7,
    )
    model = NeuralThompsonModel(cfg)
    model.fit(X, Y)
    return model, X, Y


def test_laplace_precision_is_the_ggn_at_the_map(fitted) -> None:
    model, X, Y = fitted
    phi = model.phi_tilde(X)
    eye = np.eye(phi.shape[1])
    # Gaussian head: exact linear-Gaussian posterior on the rows where value was observed.
    seen = ~np.isnan(Y["value"])
    P = phi[seen]
    A = LAM * eye + P.T @ P / 1.0
    head = model.laplace.heads["value"]
    np.testing.assert_allclose(head.precision, A, rtol=1e-10)
    np.testing.assert_allclose(head.mean, np.linalg.solve(A, P.T @ Y["value"][seen]), rtol=1e-8, atol=1e-10)
    # Bernoulli head: the gradient vanishes at the mean and the precision is λI + Σ p(1−p)φ̃φ̃ᵀ.
    head = model.laplace.heads["conversion"]
    p = expit(phi @ head.mean)
    grad = phi.T @ (p - Y["conversion"]) + LAM * head.mean
    assert np.linalg.norm(grad) < 1e-6
    np.testing.assert_allclose(head.precision, LAM * eye + (phi * (p * (1 - p))[:, None]).T @ phi, rtol=1e-8)


def test_std_larger_far_from_data(fitted) -> None:
    model, _, _ = fitted
    rng = np.random.default_rng(1)
    near = rng.uniform(-1, 1, size=(1000, 4))
    direction = rng.normal(size=(1000, 4))
    far = 5.0 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    s_near, s_far = model.predictive_std(near), model.predictive_std(far)
    for name in s_near:
        ratio = float(np.median(s_far[name]) / np.median(s_near[name]))
        print(f"{name}: median std far / near = {ratio:.2f}")
        assert ratio > 2.0


def test_tau_zero_sample_equals_map_exactly(fitted) -> None:
    model, X, _ = fitted
    means = model.mean_scores(X)
    for mode in ("marginal", "joint"):
        samples = model.sample_scores(X, tau=0.0, generator=123, mode=mode)
        for name in means:
            assert np.array_equal(samples[name], means[name])
    t_means = model.mean_scores(torch.from_numpy(X[:50]).float())
    t_samples = model.sample_scores(torch.from_numpy(X[:50]).float(), tau=0.0, generator=1)
    for name in t_means:
        assert isinstance(t_samples[name], torch.Tensor)
        assert torch.equal(t_samples[name], t_means[name])
    assert 0.0 < means["conversion"].min() and means["conversion"].max() < 1.0


def test_marginal_samples_have_the_predictive_spread(fitted) -> None:
    model, X, _ = fitted
    Q = np.repeat(X[:3], 20_000, axis=0)  # 20,000 independent draws per pair
    tau = 4.0
    value = model.sample_scores(Q, tau=tau, generator=5)["value"].reshape(3, -1)
    mean = model.mean_scores(X[:3])["value"]
    std = np.sqrt(tau) * model.predictive_std(X[:3])["value"]
    n = value.shape[1]
    assert np.all(np.abs(value.mean(1) - mean) < 3 * std / np.sqrt(n))
    assert np.all(np.abs(value.std(1) / std - 1) < 3 / np.sqrt(2 * n))
    # Same seed, same samples; different seed, different samples.
    a = model.sample_scores(X[:100], 1.0, 9)["conversion"]
    assert np.array_equal(a, model.sample_scores(X[:100], 1.0, 9)["conversion"])
    assert not np.array_equal(a, model.sample_scores(X[:100], 1.0, 10)["conversion"])


def test_seeded_training_is_reproducible() -> None:
    X, Y = synthetic(3, 300)
    cfg = NeuralConfig(user_dim=2, item_dim=2, hidden=(8,), epochs=2, seed=3)
    a, b = NeuralThompsonModel(cfg), NeuralThompsonModel(cfg)
    a.fit(X, Y)
    b.fit(X, Y)
    for name, v in a.mean_scores(X).items():
        assert np.array_equal(v, b.mean_scores(X)[name])


def test_two_speed_learner() -> None:
    X, Y = synthetic(4, 900)
    cfg = NeuralConfig(
        user_dim=2, item_dim=2, hidden=(8,), epochs=2, retrain_epochs=1, retrain_every=300, buffer_size=700, seed=1
    )
    model = NeuralThompsonModel(cfg)
    model.fit(X[:500], {k: v[:500] for k, v in Y.items()})
    trunk_before = model.phi_tilde(X[:600])
    # Fast speed: the trunk stays, the Gaussian head equals the exact posterior on all rows so far.
    assert model.observe(X[500:600], {k: v[500:600] for k, v in Y.items()}) is False
    np.testing.assert_array_equal(model.phi_tilde(X[:600]), trunk_before)
    seen = ~np.isnan(Y["value"][:600])
    P = trunk_before[seen]
    A = np.eye(P.shape[1]) + P.T @ P
    np.testing.assert_allclose(model.laplace.heads["value"].precision, A, rtol=1e-10)
    np.testing.assert_allclose(
        model.laplace.heads["value"].mean, np.linalg.solve(A, P.T @ Y["value"][:600][seen]), rtol=1e-7, atol=1e-9
    )
    assert model.laplace.heads["conversion"].n_obs == 600
    # Slow speed: the 300th observation since the last training retrains on the bounded buffer.
    assert model.observe(X[600:799], {k: v[600:799] for k, v in Y.items()}) is False
    assert model.observe(X[799:800], {k: v[799:800] for k, v in Y.items()}) is True
    assert model.n_trainings == 2 and model.since_retrain == 0 and model.n_obs == 800
    assert model.laplace.heads["conversion"].n_obs == 700  # rebuilt on the buffer only
    assert not np.array_equal(model.phi_tilde(X[:10]), trunk_before[:10])


def test_outcome_matrix_and_errors() -> None:
    cfg = NeuralConfig(user_dim=2, item_dim=1, cross_dim=1, hidden=(4,), epochs=1)
    model = NeuralThompsonModel(cfg)
    X = concat_features(np.zeros((5, 2)), np.zeros((5, 1)), np.zeros((5, 1)))
    with pytest.raises(NotFittedError):
        model.mean_scores(X)
    with pytest.raises(ModelInputError, match="0/1"):
        model.fit(X, {"conversion": np.full(5, 0.5)})
    with pytest.raises(ModelInputError, match="unknown outcomes"):
        model.fit(X, {"clicks": np.zeros(5)})
    model.fit(X, np.column_stack([np.zeros(5), np.ones(5), np.full(5, np.nan)]))
    with pytest.raises(ShapeError, match=r"\(n, 4\)"):
        model.mean_scores(np.zeros((3, 5)))
    with pytest.raises(ModelInputError, match="NaN"):
        model.sample_scores(np.full((2, 4), np.nan))
    with pytest.raises(ModelInputError, match="tau"):
        model.sample_scores(X, tau=-1.0)


def test_refit_continues_from_the_weights_and_moves_less_than_a_fresh_fit() -> None:
    X, Y = synthetic(5, 1200)
    cfg = NeuralConfig(user_dim=2, item_dim=2, hidden=(16, 8), epochs=10, retrain_epochs=3, seed=2)
    old = NeuralThompsonModel(cfg)
    old.fit(X[:1000], {k: v[:1000] for k, v in Y.items()})
    before = old.to_bytes(created_at_ms=0)
    warm = NeuralThompsonModel.from_bytes(before)
    warm.calibrators["conversion"] = None  # type: ignore[assignment]  # dropped by refit
    warm.refit(X, Y)
    assert old.to_bytes(created_at_ms=0) == before  # the copy was retrained, not the old version
    assert warm.calibrators == {} and warm.n_trainings == old.n_trainings + 1 and warm.n_obs == 1200
    fresh = NeuralThompsonModel(NeuralConfig(**{**cfg.__dict__, "seed": 3}))
    fresh.fit(X, Y)
    # The last layer is rebuilt on the new rows with the new trunk, as after fit().
    seen = ~np.isnan(Y["value"])
    P = warm.phi_tilde(X)[seen]
    np.testing.assert_allclose(warm.laplace.heads["value"].precision, np.eye(P.shape[1]) + P.T @ P, rtol=1e-10)

    # Continuity: the warm version's logits stay closer to the old version's than a fresh fit's.
    def logit_change(new: NeuralThompsonModel) -> float:
        a, b = old.mean_scores(X)["conversion"], new.mean_scores(X)["conversion"]
        return float(np.sqrt(np.mean((np.log(a / (1 - a)) - np.log(b / (1 - b))) ** 2)))

    assert logit_change(warm) < 0.5 * logit_change(fresh)


def test_refit_needs_a_fitted_model_and_rows() -> None:
    X, Y = synthetic(6, 50)
    model = NeuralThompsonModel(NeuralConfig(user_dim=2, item_dim=2, hidden=(4,), epochs=1))
    with pytest.raises(NotFittedError):
        model.refit(X, Y)
    model.fit(X, Y)
    with pytest.raises(ModelInputError, match="zero rows"):
        model.refit(X[:0], {k: v[:0] for k, v in Y.items()})
