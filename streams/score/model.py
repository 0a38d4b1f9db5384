"""The scorer's model: the global neural Thompson model plus its calibrators, by version.

A ``ScoringModel`` turns pair features into calibrated Thompson samples, means and stds of
every outcome, vectorised over all pairs of many users, and adds a user's random effect to
the conversion probability before calibration. The trainer publishes it as a model-snapshot
(``NeuralThompsonModel.to_bytes``: network, last-layer posterior and one calibrator per
Bernoulli outcome) with the cost pacing factors beside it (``cost_scale``, ``models.pacing``),
which ``score`` applies to the calibrated probabilities: the one place the factor is applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from models.errors import ModelInputError
from models.neural import NeuralThompsonModel
from models.neural_net import NeuralConfig

BERNOULLI = ("conversion", "unsubscription")


@dataclass(frozen=True, eq=False)
class ScoreArrays:
    """Per-outcome arrays over pairs, each ``(n_pairs,)`` float64.

    Outcomes: ``conversion``, ``unsubscription`` (calibrated probabilities), ``value``
    (value of a conversion) and ``reward`` = conversion x value. ``draws`` holds the K
    Thompson draws, ``(K, n_pairs)`` per outcome; ``samples`` is draw 0. Probabilities are
    paced (multiplied by the model's ``cost_scale``); ``budgeted_unsubscription`` is the
    calibrated mean unsubscription before that factor, ``(n_pairs,)``: what the decision
    context keeps as the cost the plan budgeted, against which pacing measures the realised
    unsubscriptions. None when the model has no unsubscription calibrator (the untrained
    prior): it has no calibrated cost to measure.
    """

    samples: dict[str, np.ndarray]
    draws: dict[str, np.ndarray]
    means: dict[str, np.ndarray]
    stds: dict[str, np.ndarray]
    fixed_conversion_mean: np.ndarray  # raw global-model mean, before random effect and calibration
    budgeted_unsubscription: np.ndarray | None = None


class ScoringModel:
    """One version of the global model with its calibrators and its cost pacing factors.

    ``cost_scale``: a factor > 0 per Bernoulli outcome (``BERNOULLI``), by which ``score``
    multiplies that outcome's calibrated draws and means (clipped to [0, 1]); an outcome not
    named keeps a factor of 1.

    Raises:
        ModelInputError: a factor of another outcome, or one not finite and > 0.
    """

    def __init__(
        self, name: str, version: int, model: NeuralThompsonModel, cost_scale: Mapping[str, float] | None = None
    ) -> None:
        scale = dict(cost_scale or {})
        for outcome, factor in scale.items():
            if outcome not in BERNOULLI:
                raise ModelInputError(f"cost_scale names {outcome!r}; only {', '.join(BERNOULLI)} can be scaled")
            if not (math.isfinite(factor) and factor > 0):
                raise ModelInputError(f"cost_scale of {outcome} must be finite and > 0, got {factor}")
        self.name = name
        self.version = version
        self.model = model
        self.feature_dim = model.config.input_dim
        self.cost_scale = scale

    @classmethod
    def prior(cls, name: str, feature_dim: int, seed: int = 0) -> ScoringModel:
        """Version 0, before any training: an untrained network whose last layer has its prior
        posterior N(0, lambda^-1 I). An uninformed but valid Thompson model (cold start): its
        samples explore, its means are flat; no calibration."""
        model = NeuralThompsonModel(neural_config(feature_dim, seed))
        model.fitted = True
        return cls(name, 0, model)

    @classmethod
    def from_snapshot(
        cls, name: str, version: int, payload: bytes, cost_scale: Mapping[str, float] | None = None
    ) -> ScoringModel:
        return cls(name, version, NeuralThompsonModel.from_bytes(payload), cost_scale)

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
        The calibrated draws and means of each outcome in ``cost_scale`` are then multiplied by
        its factor and clipped to [0, 1] (the reward is built after, from the paced conversion).
        The stds are left: they are the raw logit-scale stds (before calibration, as the scores
        schema says), and a factor on a small probability shifts its logit by ``log(factor)``
        rather than widening it.

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
        unpaced = means["unsubscription"] if "unsubscription" in model.calibrators else None
        for outcome, factor in self.cost_scale.items():
            draws[outcome] = np.clip(draws[outcome] * factor, 0.0, 1.0)
            means[outcome] = np.clip(means[outcome] * factor, 0.0, 1.0)
        draws["reward"] = draws["conversion"] * np.maximum(draws["value"], 0.0)
        means["reward"] = means["conversion"] * np.maximum(means["value"], 0.0)
        keep = ("conversion", "unsubscription", "value", "reward")
        return ScoreArrays(
            {k: draws[k][0] for k in keep},
            {k: draws[k] for k in keep},
            {k: means[k] for k in keep},
            {k: stds.get(k, np.zeros_like(means[k])) for k in keep},
            fixed,
            unpaced,
        )


def neural_config(feature_dim: int, seed: int = 0) -> NeuralConfig:
    """The global model's configuration for pair features of width ``feature_dim`` (the
    features arrive already concatenated, so they all count as ``user_dim``)."""
    return NeuralConfig(
        user_dim=feature_dim, item_dim=0, hidden=(64, 64), epochs=30, retrain_epochs=10, batch_size=256, seed=seed
    )
