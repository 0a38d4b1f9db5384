"""Two-tower network heads of the two-stage paper's neural baselines: N-Dropout-UCB, N-GLM-UCB, N-Greedy.

The paper's neural baselines read a two-tower model (NRMS) retrained every 100 iterations. Here
the network is a small two-tower MLP on the row ``[x, z]``: an item tower
``f_item(x) = W₂ᵀ drop(ReLU(W₁ᵀx + b₁)) + b₂ ∈ R^w`` and a user tower
``f_user(z) = V₂ᵀ ReLU(V₁ᵀz + c₁) + c₂ ∈ R^w``, with the click logit
``f_user(z)ᵀ f_item(x) + b`` trained by binary cross-entropy (``steps`` Adam steps on minibatches
of a replay buffer of the observed rows, from the current weights, every ``retrain_every``
observations). Dropout (rate p) sits in the item tower after its hidden layer, as the paper's
dropout sits in the item encoder.

* :class:`TowerHead`: N-Dropout-UCB (Gal & Ghahramani 2016; Riquelme et al. 2018): T passes with
  independent dropout masks give ``Y = [ŷ¹, ..., ŷᵀ]``, ``ŷ = ρ(logit)``; the mean is
  ``mean(Y)``, the uncertainty ``std(Y)`` (population std, ddof 0) and the value eq. 1,
  ``mean + β std``. With p = 0 it is N-Greedy on the network's prediction.
* :class:`NGlmHead`: N-GLM-UCB (Xu et al. 2020's neural-linear UCB, generalised): eq. 2 with a
  coefficient per user on the item tower's output ``c = (f_item(x), 1)``. When the network
  retrains the context space changes, so every user's GLM is rebuilt from the prior by replaying
  the buffer in order.

Randomness: weights are initialised from ``default_rng([seed, stream, 11])`` (``stream`` tells
the topic and item networks apart); minibatches and training masks from the generator the
policy passes to ``update`` (its learning generator); decision-time masks from a
``torch.Generator`` seeded from the round's ``rng``. Masks are drawn explicitly because
``nn.Dropout`` reads torch's global generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from banditlp.arrays import FloatArray, IntArray
from models.errors import ModelInputError
from models.policies.two_stage_heads import PerUserGlm, UserIndex, augment


@dataclass(frozen=True)
class TowerConfig:
    """The two-tower network and its training.

    Attributes:
        hidden: width of each tower's hidden layer.
        width: w, the representation width of each tower's output.
        dropout: p, the item tower's dropout rate (0: none).
        retrain_every: retrain every N observations (the paper: 100).
        steps: Adam steps per retraining.
        batch_size: minibatch rows per step.
        lr: Adam learning rate.
        weight_decay: Adam's L2 penalty.
        max_buffer: the newest rows kept for retraining.
    """

    hidden: int = 32
    width: int = 16
    dropout: float = 0.0
    retrain_every: int = 100
    steps: int = 100
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 1e-4
    max_buffer: int = 5000


class TwoTower(nn.Module):
    """The module docstring's network; ``forward`` gives (...,) logits of (..., d_1 + d_2) rows."""

    def __init__(self, d1: int, d2: int, hidden: int, width: int) -> None:
        super().__init__()
        if d2 < 1:
            raise ModelInputError("a two-tower network needs user_dim >= 1")
        self.d1 = d1
        self.i1 = nn.Linear(d1, hidden, dtype=torch.float64)
        self.i2 = nn.Linear(hidden, width, dtype=torch.float64)
        self.u1 = nn.Linear(d2, hidden, dtype=torch.float64)
        self.u2 = nn.Linear(hidden, width, dtype=torch.float64)
        self.bias = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def item(self, x: torch.Tensor, p: float = 0.0, g: torch.Generator | None = None) -> torch.Tensor:
        """(..., w) f_item(x), with explicit dropout masks when ``p > 0``."""
        h = torch.relu(self.i1(x))
        if p > 0.0:
            h = h * (torch.rand(h.shape, generator=g, dtype=h.dtype) >= p) / (1.0 - p)
        out: torch.Tensor = self.i2(h)
        return out

    def user(self, z: torch.Tensor) -> torch.Tensor:
        """(..., w) f_user(z)."""
        out: torch.Tensor = self.u2(torch.relu(self.u1(z)))
        return out

    def forward(self, rows: torch.Tensor, p: float = 0.0, g: torch.Generator | None = None) -> torch.Tensor:
        """(...,) ``f_user(z)ᵀ f_item(x) + b``."""
        x, z = rows[..., : self.d1], rows[..., self.d1 :]
        out: torch.Tensor = (self.item(x, p, g) * self.user(z)).sum(-1) + self.bias
        return out


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A torch generator seeded from ``rng`` (one draw)."""
    g = torch.Generator()
    g.manual_seed(int(rng.integers(2**63 - 1)))
    return g


class _Tower:
    """A two-tower network with its replay buffer and periodic retraining."""

    def __init__(self, d1: int, d2: int, config: TowerConfig, seed: int, stream: int) -> None:
        self.d1, self.d2, self.config = d1, d2, config
        self.net = TwoTower(d1, d2, config.hidden, config.width)
        gen = np.random.default_rng([seed, stream, 11])
        with torch.no_grad():  # U(±1/sqrt(fan_in)) from numpy: torch's global generator is never read
            for layer in (self.net.i1, self.net.i2, self.net.u1, self.net.u2):
                bound = 1.0 / np.sqrt(layer.in_features)
                layer.weight.copy_(torch.from_numpy(gen.uniform(-bound, bound, size=tuple(layer.weight.shape))))
                layer.bias.copy_(torch.from_numpy(gen.uniform(-bound, bound, size=tuple(layer.bias.shape))))
        self.rows = np.zeros((0, d1 + d2))
        self.y = np.zeros(0)
        self.seen = 0

    def remember(self, row: FloatArray, y: float, rng: np.random.Generator | None) -> bool:
        """Add one row; retrain when the count reaches a multiple of ``retrain_every``. Returns whether it did."""
        start = max(0, len(self.y) + 1 - self.config.max_buffer)
        self.rows = np.concatenate([self.rows[start:], row[None, :]])
        self.y = np.concatenate([self.y[start:], [y]])
        self.seen += 1
        if self.seen % self.config.retrain_every:
            return False
        self.retrain(np.random.default_rng(self.seen) if rng is None else rng)
        return True

    def retrain(self, gen: np.random.Generator) -> None:
        """``steps`` Adam steps of binary cross-entropy on minibatches of the buffer, dropout on."""
        c = self.config
        g = torch_generator(gen)
        rows, y = torch.from_numpy(self.rows), torch.from_numpy(self.y)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        idx = torch.from_numpy(gen.integers(len(self.y), size=(c.steps, min(c.batch_size, len(self.y)))))
        loss_fn = nn.BCEWithLogitsLoss()
        for step in range(c.steps):
            batch = idx[step]
            opt.zero_grad()
            loss = loss_fn(self.net(rows[batch], c.dropout, g), y[batch])
            loss.backward()
            opt.step()

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}net.{k}": v.detach().numpy().copy() for k, v in self.net.state_dict().items()}
        return out | {f"{prefix}rows": self.rows, f"{prefix}y": self.y, f"{prefix}seen": np.array(self.seen)}

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        lead = f"{prefix}net."
        state = {
            k[len(lead) :]: torch.from_numpy(np.array(v, dtype=np.float64))
            for k, v in arrays.items()
            if k.startswith(lead)
        }
        self.net.load_state_dict(state)
        self.rows = np.array(arrays[f"{prefix}rows"], dtype=np.float64).reshape(-1, self.d1 + self.d2)
        self.y = np.array(arrays[f"{prefix}y"], dtype=np.float64)
        self.seen = int(arrays[f"{prefix}seen"])


class TowerHead(_Tower):
    """N-Dropout-UCB (p > 0) or N-Greedy on the network (p = 0, one pass); module docstring."""

    def __init__(self, d1: int, d2: int, config: TowerConfig, passes: int, seed: int, stream: int) -> None:
        super().__init__(d1, d2, config, seed, stream)
        self.passes = passes if config.dropout > 0.0 else 1

    @property
    def stochastic(self) -> bool:
        """Whether a score draws dropout masks."""
        return self.config.dropout > 0.0

    def predictions(self, rows: FloatArray, repeats: int, g: torch.Generator) -> FloatArray:
        """(repeats, T, n) ``ρ(logit)`` of rows (n, d_1 + d_2), every pass with its own masks."""
        x = torch.from_numpy(np.ascontiguousarray(rows)).expand(repeats, self.passes, *rows.shape)
        with torch.no_grad():
            out: FloatArray = torch.sigmoid(self.net(x, self.config.dropout, g)).numpy()
        return out

    def acquisition(
        self,
        rows: FloatArray,
        beta: float,
        arms: IntArray | None = None,
        rng: np.random.Generator | None = None,
        repeats: int = 1,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(mean(Y), std(Y), mean + β std)`` over T passes, each (n,) — or (repeats, n) when ``repeats > 1``."""
        g = torch_generator(np.random.default_rng(0) if rng is None else rng)
        Y = self.predictions(rows, repeats, g)
        mean, std = Y.mean(axis=1), Y.std(axis=1)
        value = mean + beta * std if beta else mean.copy()
        if repeats == 1:
            return mean[0], std[0], value[0]
        return mean, std, value

    def update(self, row: FloatArray, y: float, arm: int = 0, rng: np.random.Generator | None = None) -> None:
        """Remember the row; retrain every N rows."""
        self.remember(row, y, rng)


class NGlmHead(_Tower):
    """N-GLM-UCB: eq. 2 per user on ``c = (f_item(x), 1)``; module docstring."""

    stochastic = False

    def __init__(self, d1: int, d2: int, config: TowerConfig, eta: float, seed: int, stream: int) -> None:
        super().__init__(d1, d2, config, seed, stream)
        self.users = UserIndex(d2)
        self.glm = PerUserGlm(config.width + 1, eta)

    def context(self, rows: FloatArray) -> FloatArray:
        """(n, w + 1) the item tower's output of rows (n, d_1 + d_2), augmented with a 1."""
        with torch.no_grad():
            c = self.net.item(torch.from_numpy(np.ascontiguousarray(rows[:, : self.d1]))).numpy()
        return augment(c)

    def acquisition(
        self,
        rows: FloatArray,
        beta: float,
        arms: IntArray | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Eq. 2 on the network's item representation, each row's user read from its z."""
        return self.glm.acquisition(self.context(rows), self.users.lookup(rows[:, self.d1 :]), beta)

    def update(self, row: FloatArray, y: float, arm: int = 0, rng: np.random.Generator | None = None) -> None:
        """The user's GLM on this row; when the network retrains, every GLM rebuilt from the buffer."""
        user, _ = self.users.add(row[self.d1 :])
        if not self.remember(row, y, rng):
            self.glm.update(self.context(row[None, :])[0], user, y)
            return
        self.glm.reset()
        C = self.context(self.rows)
        for c, u, r in zip(C, self.users.lookup(self.rows[:, self.d1 :]), self.y, strict=True):
            self.glm.update(c, int(u), float(r))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = super().arrays(prefix)
        return out | {f"{prefix}users": self.users.keys, **self.glm.arrays(f"{prefix}glm_")}

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        super().load(arrays, prefix)
        self.users.load(arrays[f"{prefix}users"])
        self.glm.load(arrays, f"{prefix}glm_")
