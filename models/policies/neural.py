"""Neural policies of the chapter (§6–§7.2): ``neural_linear_ts`` and ``mc_dropout``.

Both are shared models (one network over every row of the round, chapter §4 and §8's "shared
neural-linear bandit") that keep a replay buffer of the chosen rows and their rewards (the
newest ``max_buffer``) and retrain the network every ``retrain_every`` observations with
``steps`` Adam steps on minibatches of the buffer, from the current weights.

``neural_linear_ts`` (Riquelme et al. 2018; chapter §6.1) is the two-speed model: a Bayesian
linear head (models/posterior.py's :class:`BayesianLinearHead`) on the trunk's last hidden layer
``φ(x)`` plus a constant, updated on every observation; when the network retrains, the feature
space changes, so the head is rebuilt from the prior on the whole buffer's new features (the
chapter's "COMPLETE rebuild"). The network is trained with its own linear output layer on the
squared error; the Bayesian head replaces that layer for decisions. Thompson step: one joint
draw ``w ~ N(θ̂, τA⁻¹)`` scores every row; propensity by Monte Carlo over joint draws.

``mc_dropout`` (chapter §7.2): dropout stays on at decision time; T passes with independent
masks give a mean and a std per action, and the value is ``mean + α·std``. Its propensity is
Monte Carlo over ``propensity_draws`` repetitions of the whole T-pass rule, in one batched
forward pass.

Randomness: network initialisation from ``default_rng([seed, 0, 3])``; training minibatches and
training dropout from the contract's learning generator; decision-time dropout masks from a
``torch.Generator`` seeded from the round's ``rng``. Dropout masks are drawn explicitly
(``torch.rand(..., generator=g)``) because ``nn.Dropout`` reads torch's global generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from banditlp.arrays import FloatArray
from models.errors import ModelInputError
from models.inputs import check_positive
from models.policies.base import Policy, PolicyParams, Scores, deterministic_propensity, mc_propensity
from models.policies.registry import register
from models.posterior import BayesianLinearHead, LinearHeadConfig


def _check_int(value: int, name: str, low: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ModelInputError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class NetParams(PolicyParams):
    """Network and replay parameters shared by both neural policies.

    Attributes:
        hidden: width of each of the two hidden layers (≥ 1).
        retrain_every: retrain the network every N observations (the slow speed, ≥ 1).
        steps: Adam steps per retraining (≥ 1).
        batch_size: minibatch rows per step (≥ 1).
        lr: Adam learning rate > 0.
        weight_decay: L2 penalty ≥ 0.
        max_buffer: the newest rows kept for retraining (≥ 1).
    """

    hidden: int = 32
    retrain_every: int = 50
    steps: int = 100
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 1e-4
    max_buffer: int = 5000

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("hidden", "retrain_every", "steps", "batch_size", "max_buffer"):
            _check_int(getattr(self, key), key, 1)
        check_positive(self.lr, "lr")
        if not (np.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ModelInputError(f"weight_decay must be finite and >= 0, got {self.weight_decay!r}")


class _MLP(nn.Module):
    """``x → ReLU(W₁x) → [dropout] → ReLU(W₂·) → [dropout] → w₃ᵀ·``; :meth:`trunk` is φ(x)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.l1 = nn.Linear(dim, hidden, dtype=torch.float64)
        self.l2 = nn.Linear(hidden, hidden, dtype=torch.float64)
        self.out = nn.Linear(hidden, 1, dtype=torch.float64)

    def trunk(self, x: torch.Tensor, p: float = 0.0, g: torch.Generator | None = None) -> torch.Tensor:
        """(..., hidden) last hidden layer, with explicit dropout masks when ``p > 0``."""
        h = torch.relu(self.l1(x))
        h = _dropout(h, p, g)
        return _dropout(torch.relu(self.l2(h)), p, g)

    def forward(self, x: torch.Tensor, p: float = 0.0, g: torch.Generator | None = None) -> torch.Tensor:
        """(...,) predictions."""
        out: torch.Tensor = self.out(self.trunk(x, p, g)).squeeze(-1)
        return out


def _dropout(h: torch.Tensor, p: float, g: torch.Generator | None) -> torch.Tensor:
    if p <= 0.0:
        return h
    keep = torch.rand(h.shape, generator=g, dtype=h.dtype) >= p
    return h * keep / (1.0 - p)


def _init_net(net: _MLP, seed: int) -> None:
    """Uniform(±1/sqrt(fan_in)) weights and biases from numpy, so no torch global generator is read."""
    gen = np.random.default_rng([seed, 0, 3])
    with torch.no_grad():
        for layer in (net.l1, net.l2, net.out):
            bound = 1.0 / np.sqrt(layer.in_features)
            layer.weight.copy_(torch.from_numpy(gen.uniform(-bound, bound, size=tuple(layer.weight.shape))))
            layer.bias.copy_(torch.from_numpy(gen.uniform(-bound, bound, size=tuple(layer.bias.shape))))


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(rng.integers(2**63 - 1)))
    return g


class _NeuralPolicy(Policy):
    """A network, a replay buffer and periodic retraining (module docstring)."""

    params: NetParams
    dropout: float = 0.0

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        self.net = _MLP(self.dim, self.params.hidden)
        _init_net(self.net, self.seed)
        self._X = np.zeros((0, self.dim))
        self._r = np.zeros(0)

    def _remember(self, x: FloatArray, reward: float) -> None:
        start = max(0, len(self._r) + 1 - self.params.max_buffer)  # drop the oldest beyond max_buffer
        self._X = np.concatenate([self._X[start:], x[None]])
        self._r = np.concatenate([self._r[start:], [reward]])

    def _retrain(self) -> None:
        """``steps`` Adam steps on the buffer, from the current weights; minibatches from learn_rng."""
        p = self.params
        gen = self.learn_rng()
        g = _torch_generator(gen)
        X, r = torch.from_numpy(self._X), torch.from_numpy(self._r)
        opt = torch.optim.Adam(self.net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        idx = torch.from_numpy(gen.integers(len(self._r), size=(p.steps, min(p.batch_size, len(self._r)))))
        self.net.train()
        for step in range(p.steps):
            batch = idx[step]
            opt.zero_grad()
            loss = torch.mean((self.net(X[batch], self.dropout, g) - r[batch]) ** 2)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        self.net.eval()

    def _net_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"net.{k}": v.detach().numpy().copy() for k, v in self.net.state_dict().items()}
        return {**arrays, "buffer_X": self._X.copy(), "buffer_r": self._r.copy()}

    def _load_net(self, arrays: Mapping[str, np.ndarray]) -> None:
        net = {k.removeprefix("net."): v for k, v in arrays.items() if k.startswith("net.")}
        state = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in net.items()}
        self.net.load_state_dict(state)
        X, r = np.asarray(arrays["buffer_X"], dtype=np.float64), np.asarray(arrays["buffer_r"], dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim or r.shape != (X.shape[0],):
            raise ValueError(f"replay buffer of shapes {X.shape}, {r.shape} does not fit dim {self.dim}")
        self._X, self._r = X.copy(), r.copy()


@dataclass(frozen=True)
class NeuralLinearParams(NetParams):
    """Attributes: tau: Thompson temperature τ ≥ 0; prior_precision λ > 0 and noise_variance σ² > 0 of the head."""

    tau: float = 1.0
    prior_precision: float = 1.0
    noise_variance: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.prior_precision, "prior_precision")
        check_positive(self.noise_variance, "noise_variance")
        if not (np.isfinite(self.tau) and self.tau >= 0):
            raise ModelInputError(f"tau must be finite and >= 0, got {self.tau!r}")


@register
class NeuralLinearTS(_NeuralPolicy):
    """Neural-linear Thompson sampling with the two-speed update (module docstring)."""

    name = "neural_linear_ts"
    Params = NeuralLinearParams
    params: NeuralLinearParams
    closed_form_propensity = False

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        self.head = self._new_head()

    def _new_head(self) -> BayesianLinearHead:
        p = self.params
        return BayesianLinearHead(LinearHeadConfig(p.hidden + 1, p.prior_precision, p.noise_variance))

    def phi(self, features: FloatArray) -> FloatArray:
        """(n, hidden + 1) the trunk's features of (n, dim) rows, with a constant column."""
        with torch.no_grad():
            h = self.net.trunk(torch.from_numpy(np.ascontiguousarray(features))).numpy()
        return np.concatenate([h, np.ones((h.shape[0], 1))], axis=1)

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Head means and stds on φ, and the values of one joint head draw."""
        features = self.check_features(features)
        Phi = self.phi(features)
        mean, std = self.head.predictive_mean(Phi), self.head.predictive_std(Phi)
        w = self.head.sample_weights(1, rng, self.params.tau)[0]
        return Scores(mean=mean, uncertainty=std, value=Phi @ w)

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        if self.params.tau == 0.0:
            return deterministic_propensity(scores.value, action)
        W = self.head.sample_weights(self.params.propensity_draws, rng, self.params.tau)  # (M, hidden + 1)
        return mc_propensity(W @ self.phi(features).T, action)

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Fast speed: the head learns the row; slow speed: every N rows, retrain and rebuild the head."""
        action, features, reward = self.check_feedback(action, features, reward)
        x = features[action]
        self._remember(x, reward)
        self.head.update(self.phi(x[None])[0], reward)
        self.n_observations += 1
        if self.n_observations % self.params.retrain_every == 0:
            self._retrain()
            self.head = self._new_head()
            self.head.update_batch(self.phi(self._X), self._r)

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """τ = 0."""
        return {"tau": 0.0}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {**self._net_arrays(), **{f"head.{k}": v for k, v in self.head.snapshot_arrays().items()}}

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._load_net(arrays)
        parts = {k.removeprefix("head."): v for k, v in arrays.items() if k.startswith("head.")}
        self.head = BayesianLinearHead.from_snapshot_parts(self.head.snapshot_config(), parts)


@dataclass(frozen=True)
class DropoutParams(NetParams):
    """Attributes: dropout p ∈ (0, 1); passes T ≥ 2; alpha: the width α ≥ 0 of ``mean + α·std``.

    ``propensity_draws`` defaults to 200 here: each draw repeats all T passes.
    """

    dropout: float = 0.2
    passes: int = 10
    alpha: float = 1.0
    propensity_draws: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (np.isfinite(self.dropout) and 0.0 < self.dropout < 1.0):
            raise ModelInputError(f"dropout must lie in (0, 1), got {self.dropout!r}")
        _check_int(self.passes, "passes", 2)
        if not (np.isfinite(self.alpha) and self.alpha >= 0):
            raise ModelInputError(f"alpha must be finite and >= 0, got {self.alpha!r}")


@register
class MCDropout(_NeuralPolicy):
    """MC dropout (module docstring): T stochastic passes, ``mean + α·std``."""

    name = "mc_dropout"
    Params = DropoutParams
    params: DropoutParams
    closed_form_propensity = False

    def __init__(self, n_actions: int, dim: int, *, seed: int = 0, **params: Any) -> None:
        super().__init__(n_actions, dim, seed=seed, **params)
        self.dropout = float(self.params.dropout)

    def _passes(self, features: FloatArray, repeats: int, g: torch.Generator) -> torch.Tensor:
        """(repeats, T, n_actions) predictions, every pass with its own dropout masks."""
        T = self.params.passes
        x = torch.from_numpy(np.ascontiguousarray(features)).expand(repeats, T, *features.shape)
        with torch.no_grad():
            out: torch.Tensor = self.net(x, self.dropout, g)
        return out

    def score(self, features: FloatArray, rng: np.random.Generator) -> Scores:
        """Mean and std over T passes; the value is ``mean + α·std``."""
        features = self.check_features(features)
        P = self._passes(features, 1, _torch_generator(rng))[0].numpy()  # (T, K)
        mean, std = P.mean(axis=0), P.std(axis=0, ddof=1)
        return Scores(mean=mean, uncertainty=std, value=mean + self.params.alpha * std)

    def _rule_propensity(self, features: FloatArray, scores: Scores, action: int, rng: np.random.Generator) -> float:
        P = self._passes(features, self.params.propensity_draws, _torch_generator(rng)).numpy()  # (R, T, K)
        values = P.mean(axis=1) + self.params.alpha * P.std(axis=1, ddof=1)
        return mc_propensity(values, action)

    def update(self, action: int, features: FloatArray, reward: float) -> None:
        """Remember the row; every N rows, retrain with dropout on."""
        action, features, reward = self.check_feedback(action, features, reward)
        self._remember(features[action], reward)
        self.n_observations += 1
        if self.n_observations % self.params.retrain_every == 0:
            self._retrain()

    @classmethod
    def greedy_params(cls) -> dict[str, Any]:
        """α = 0: the value is the mean of the T passes."""
        return {"alpha": 0.0}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return self._net_arrays()

    def _load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._load_net(arrays)
