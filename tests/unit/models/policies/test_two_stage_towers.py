"""The two-tower heads: dropout's T passes against an explicit loop, N-GLM's rebuild against a replay."""

from __future__ import annotations

import numpy as np
import torch

from models.policies.registry import make_policy
from models.policies.two_stage_heads import PerUserGlm, augment
from models.policies.two_stage_towers import NGlmHead, TowerConfig, TowerHead

torch.set_num_threads(1)
D1, D2 = 3, 2


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    users = gen.normal(size=(3, D2))
    rows = np.c_[gen.normal(size=(n, D1)), users[gen.integers(3, size=n)]]
    return rows, (gen.random(n) < 0.3).astype(float)


def test_dropout_mean_and_std_over_t_passes_equal_an_explicit_loop() -> None:
    head = TowerHead(D1, D2, TowerConfig(hidden=8, width=4, dropout=0.2, retrain_every=10), 5, seed=0, stream=0)
    rows, y = _rows(30, 1)
    for r, t in zip(rows, y, strict=True):
        head.update(r, float(t), rng=np.random.default_rng(int(t * 7) + len(head.y)))
    probe = rows[:6]
    mean, std, value = head.acquisition(probe, beta=0.5, rng=np.random.default_rng(3))
    # the same generator draws T = 5 masks in turn; each pass is the network written out by hand
    g = torch.Generator()
    g.manual_seed(int(np.random.default_rng(3).integers(2**63 - 1)))
    net = head.net
    W1, b1 = net.i1.weight.detach().numpy(), net.i1.bias.detach().numpy()
    W2, b2 = net.i2.weight.detach().numpy(), net.i2.bias.detach().numpy()
    with torch.no_grad():
        user = net.user(torch.from_numpy(probe[:, D1:])).numpy()
    passes = []
    for _ in range(5):
        h = np.maximum(probe[:, :D1] @ W1.T + b1, 0.0)
        keep = torch.rand(h.shape, generator=g, dtype=torch.float64).numpy() >= 0.2
        item = (h * keep / 0.8) @ W2.T + b2
        logit = (item * user).sum(axis=1) + float(net.bias.detach())
        passes.append(1 / (1 + np.exp(-logit)))
    Y = np.stack(passes)
    np.testing.assert_allclose(mean, Y.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, Y.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(value, Y.mean(axis=0) + 0.5 * Y.std(axis=0), rtol=1e-12)
    assert np.all(std > 0)


def test_dropout_logits_average_to_the_network_without_dropout() -> None:
    """Inverted dropout keeps E[mask]/(1 − p) = 1 and the logit is linear in the mask: E over masks = no dropout."""
    head = TowerHead(D1, D2, TowerConfig(hidden=8, width=4, dropout=0.2), 5, seed=2, stream=0)
    probe = torch.from_numpy(_rows(4, 5)[0])
    g = torch.Generator()
    g.manual_seed(0)
    with torch.no_grad():
        many = head.net(probe.expand(20_000, *probe.shape), 0.2, g)
        exact = head.net(probe)
    se = many.std(0) / np.sqrt(20_000)
    assert torch.all((many.mean(0) - exact).abs() < 4 * se)


def test_n_glm_rebuild_after_retraining_equals_a_replay_from_the_prior() -> None:
    head = NGlmHead(D1, D2, TowerConfig(hidden=8, width=4, retrain_every=25, steps=20), eta=1.0, seed=0, stream=0)
    rows, y = _rows(25, 6)
    for i, (r, t) in enumerate(zip(rows, y, strict=True)):
        head.update(r, float(t), rng=np.random.default_rng(i))
    # the 25th row retrained the network: every user's GLM is the replay of the buffer on the new features
    with torch.no_grad():
        C = augment(head.net.item(torch.from_numpy(rows[:, :D1])).numpy())
    replay = PerUserGlm(5, 1.0)
    for c, u, t in zip(C, head.users.lookup(rows[:, D1:]), y, strict=True):
        replay.update(c, int(u), float(t))
    np.testing.assert_allclose(head.glm.theta, replay.theta, atol=1e-12)
    np.testing.assert_allclose(head.glm.Minv, replay.Minv, atol=1e-12)
    # and the scores are eq. 2 on those features
    mean, unc, _ = head.acquisition(rows[:3], beta=1.0)
    u = head.users.lookup(rows[:3, D1:])
    expect = np.sqrt(np.einsum("ni,nij,nj->n", C[:3], replay.Minv[u], C[:3]))
    np.testing.assert_allclose(unc, expect, rtol=1e-10)
    np.testing.assert_allclose(mean, 1 / (1 + np.exp(-np.einsum("ni,ni->n", C[:3], replay.theta[u]))))


def test_the_network_learns_a_two_tower_click_model() -> None:
    """A world whose click probability is ρ(3 xᵀz): after 1,000 rows the greedy network ranks better than chance."""
    gen = np.random.default_rng(7)
    policy = make_policy("n_greedy_net", 20, 4, seed=0, retrain_every=250, steps=300)
    users = gen.normal(size=(5, 2))
    items = gen.normal(size=(20, 2))
    rng = np.random.default_rng(8)
    for _ in range(1000):
        features = np.c_[items, np.tile(users[gen.integers(5)], (20, 1))]
        a = int(rng.integers(20))  # uniform logging: the network's training set is unbiased
        p = 1 / (1 + np.exp(-3 * features[a, :2] @ features[a, 2:]))
        policy.update(a, features, float(gen.random() < p))
    hits = 0
    for u in range(5):
        features = np.c_[items, np.tile(users[u], (20, 1))]
        best = int(np.argmax(items @ users[u]))
        hits += int(policy.score(features, rng).mean[best] >= np.quantile(policy.score(features, rng).mean, 0.8))
    assert hits >= 4
