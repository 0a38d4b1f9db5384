"""The neural model's configuration and network: one MLP trunk over a pair's features, one linear
head per outcome.

The trunk maps the concatenated ``[user; item; cross]`` features of a pair (``concat_features``)
to the last hidden features φ; each outcome's head is linear on φ (conversion and unsubscription:
Bernoulli logits, value/LTV: Gaussian mean). :class:`models.neural.NeuralThompsonModel` trains it
and puts a last-layer Laplace posterior on the heads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from banditlp.arrays import Float32Array
from models.errors import ModelInputError, ShapeError
from models.inputs import check_discount, check_positive
from models.laplace import OutcomeSpec

DEFAULT_OUTCOMES: tuple[OutcomeSpec, ...] = (
    OutcomeSpec("conversion", "bernoulli"),
    OutcomeSpec("unsubscription", "bernoulli"),
    OutcomeSpec("value", "gaussian"),
)

Activation = Literal["relu", "gelu", "tanh"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class NeuralConfig:
    """Configuration of a :class:`NeuralThompsonModel`.

    Attributes:
        user_dim: width of the user features.
        item_dim: width of the item features.
        cross_dim: width of the user×item cross features (0 for none).
        hidden: trunk layer widths; the last one is the width h of φ (the Laplace layer's input).
        outcomes: the heads, in the column order of outcome matrices.
        activation: trunk nonlinearity. ReLU (default) makes φ grow linearly away from the data,
            so the last-layer Laplace std grows there too.
        prior_precision: λ of the last-layer prior ``N(0, λ⁻¹I)``.
        gamma: discount γ ∈ (0, 1] of the online last-layer updates.
        weight_decay: Adam L2 on the trunk.
        learning_rate: Adam step size.
        epochs: epochs of the first :meth:`NeuralThompsonModel.fit`.
        retrain_epochs: epochs of each warm-started retraining.
        batch_size: minibatch size.
        seed: seeds initialisation and minibatch order.
        retrain_every: observations between retrainings (the slow speed).
        buffer_size: rows retained for retraining (most recent first to be kept).
    """

    user_dim: int
    item_dim: int
    cross_dim: int = 0
    hidden: tuple[int, ...] = (128, 64)
    outcomes: tuple[OutcomeSpec, ...] = DEFAULT_OUTCOMES
    activation: Activation = "relu"
    prior_precision: float = 1.0
    gamma: float = 1.0
    weight_decay: float = 1e-5
    learning_rate: float = 1e-3
    epochs: int = 20
    retrain_epochs: int = 5
    batch_size: int = 256
    seed: int = 0
    retrain_every: int = 10_000
    buffer_size: int = 100_000

    def __post_init__(self) -> None:
        if min(self.user_dim, self.item_dim) < 0 or self.cross_dim < 0 or self.input_dim < 1:
            raise ModelInputError("feature widths must be >= 0 and sum to >= 1")
        if not self.hidden or min(self.hidden) < 1:
            raise ModelInputError("hidden must list at least one width >= 1")
        if not self.outcomes:
            raise ModelInputError("at least one outcome is needed")
        names = [o.name for o in self.outcomes]
        if len(set(names)) != len(names):
            raise ModelInputError(f"outcome names must be unique: {names}")
        if self.activation not in _ACTIVATIONS:
            raise ModelInputError(f"unknown activation {self.activation!r}")
        check_positive(self.prior_precision, "prior_precision")
        check_positive(self.learning_rate, "learning_rate")
        check_discount(self.gamma)
        for name in ("epochs", "retrain_epochs", "batch_size", "retrain_every", "buffer_size"):
            if int(getattr(self, name)) < 1:
                raise ModelInputError(f"{name} must be >= 1")

    @property
    def input_dim(self) -> int:
        """d_in = user_dim + item_dim + cross_dim."""
        return self.user_dim + self.item_dim + self.cross_dim

    @property
    def outcome_names(self) -> tuple[str, ...]:
        """Outcome names in column order."""
        return tuple(o.name for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON values."""
        doc = asdict(self)
        doc["hidden"] = list(self.hidden)
        doc["outcomes"] = [asdict(o) for o in self.outcomes]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> NeuralConfig:
        """Inverse of :meth:`to_json`."""
        doc = dict(doc)
        doc["hidden"] = tuple(int(h) for h in doc["hidden"])
        doc["outcomes"] = tuple(OutcomeSpec(**o) for o in doc["outcomes"])
        return cls(**doc)


def concat_features(user: ArrayLike, item: ArrayLike, cross: ArrayLike | None = None) -> Float32Array:
    """Concatenate per-pair feature blocks into the model input.

    Args:
        user: (n, user_dim) features of each pair's user.
        item: (n, item_dim) features of each pair's item.
        cross: (n, cross_dim) cross features, or None.

    Returns:
        (n, d_in) float32 features.
    """
    blocks = [np.asarray(user, dtype=np.float32), np.asarray(item, dtype=np.float32)]
    if cross is not None:
        blocks.append(np.asarray(cross, dtype=np.float32))
    if any(b.ndim != 2 or b.shape[0] != blocks[0].shape[0] for b in blocks):
        raise ShapeError("feature blocks must be 2-D with the same number of rows")
    return np.concatenate(blocks, axis=1)


class MultiOutcomeNet(nn.Module):
    """Trunk MLP + one linear head per outcome.

    Args:
        config: the model configuration.
    """

    input_mean: torch.Tensor
    input_scale: torch.Tensor

    def __init__(self, config: NeuralConfig) -> None:
        super().__init__()
        act = _ACTIVATIONS[config.activation]
        layers: list[nn.Module] = []
        width = config.input_dim
        for h in config.hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.Linear(width, len(config.outcomes))  # row k = head k's last layer
        # Input standardisation, set from the training data at each (re)training.
        self.register_buffer("input_mean", torch.zeros(config.input_dim))
        self.register_buffer("input_scale", torch.ones(config.input_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden features φ; (n, d_in) -> (n, h)."""
        phi: torch.Tensor = self.trunk((x - self.input_mean) / self.input_scale)
        return phi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Head outputs (logits for Bernoulli, values for Gaussian); (n, d_in) -> (n, k)."""
        out: torch.Tensor = self.heads(self.features(x))
        return out
