"""The scorer's model: the global neural Thompson model plus its calibrators, by version.

A ``ScoringModel`` turns pair features into calibrated Thompson samples, means and stds of
every outcome, vectorised over all pairs of many users, and adds a user's random effect to
the conversion probability before calibration. The trainer publishes it as a model-snapshot
(``NeuralThompsonModel.to_bytes``: network, last-layer posterior and one calibrator per
Bernoulli outcome).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.neural import NeuralThompsonModel
from models.neural_net import NeuralConfig

BERNOULLI = ("conversion", "unsubscription")


@dataclass(frozen=True, eq=False)
class ScoreArrays:
    """Per-outcome arrays over pairs, each ``(n_pairs,)`` float64.

    Outcomes: ``conversion``, ``unsubscription`` (calibrated probabilities), ``value``
    (value of a conversion) and ``reward`` = conversion x value. ``draws`` holds the K
    Thompson draws, ``(K, n_pairs)`` per outcome; ``samples`` is draw 0.
    """

    samples: dict[str, np.ndarray]
    draws: dict[str, np.ndarray]
    means: dict[str, np.ndarray]
    stds: dict[str, np.ndarray]
    fixed_conversion_mean: np.ndarray  # raw global-model mean, before random effect and calibration


class ScoringModel:
    """One version of the global model with its calibrators."""

    def __init__(self, name: str, version: int, model: NeuralThompsonModel) -> None:
        self.name = name
        self.version = version
        self.model = model
        self.feature_dim = model.config.input_dim

    @classmethod
    def prior(cls, name: str, feature_dim: int, seed: int = 0) -> ScoringModel:
        """Version 0, before any training: an untrained network whose last layer has its prior
        posterior N(0, lambda^-1 I). An uninformed but valid Thompson model (cold start): its
        samples explore, its means are flat; no calibration."""
        model = NeuralThompsonModel(neural_config(feature_dim, seed))
        model.fitted = True
        return cls(name, 0, model)

    @classmethod
    def from_snapshot(cls, name: str, version: int, payload: bytes) -> ScoringModel:
        return cls(name, version, NeuralThompsonModel.from_bytes(payload))

    def score(
        self,
        X: np.ndarray,
        tau: float,
        rng: np.random.Generator,
        conversion_effect: tuple[np.ndarray, np.ndarray] | None = None,
        n_draws: int = 1,
    ) -> ScoreArrays:
        """Calibrated samples, means and stds for pair features ``X (n_pairs, d)``.

        One pass over the pairs (``NeuralThompsonModel.marginal_scores``): marginal Thompson
        samples, means and stds, Bernoulli heads as probabilities, stds on the logit scale.

        Args:
            X: ``(n_pairs, d)`` float32 pair features.
            tau: Thompson temperature ≥ 0 (0: the samples are the means).
            rng: seeds this call's torch generator.
            conversion_effect: optional ``(sample, mean)``: a per-user random effect added to
                the raw conversion probability, the sample ``(n_pairs,)`` or one per draw
                ``(n_draws, n_pairs)``, the mean ``(n_pairs,)``. It is modelled on the
                probability scale (a linear-Gaussian residual head), so the sum is clipped to
                [0, 1] before the calibration map, which was fitted on raw scores.
            n_draws: K, the Thompson draws per pair (``draws``); draw 0 is the sample that
                K = 1 gives with the same generator.
        """
        model = self.model
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        draws, means, stds = model.marginal_draws(X, tau, n_draws, generator)
        fixed = means["conversion"].copy()
        if conversion_effect is not None:
            draws["conversion"] = np.clip(draws["conversion"] + conversion_effect[0], 0.0, 1.0)
            means["conversion"] = np.clip(means["conversion"] + conversion_effect[1], 0.0, 1.0)
        for outcome in BERNOULLI:
            cal = model.calibrators.get(outcome)
            if cal is not None:
                draws[outcome] = cal.apply(draws[outcome].reshape(-1)).reshape(draws[outcome].shape)
                means[outcome] = cal.apply(means[outcome])
        draws["reward"] = draws["conversion"] * np.maximum(draws["value"], 0.0)
        means["reward"] = means["conversion"] * np.maximum(means["value"], 0.0)
        keep = ("conversion", "unsubscription", "value", "reward")
        return ScoreArrays(
            {k: draws[k][0] for k in keep},
            {k: draws[k] for k in keep},
            {k: means[k] for k in keep},
            {k: stds.get(k, np.zeros_like(means[k])) for k in keep},
            fixed,
        )


def neural_config(feature_dim: int, seed: int = 0) -> NeuralConfig:
    """The global model's configuration for pair features of width ``feature_dim`` (the
    features arrive already concatenated, so they all count as ``user_dim``)."""
    return NeuralConfig(
        user_dim=feature_dim, item_dim=0, hidden=(64, 64), epochs=30, retrain_epochs=10, batch_size=256, seed=seed
    )
