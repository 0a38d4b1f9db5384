"""The streamed pipeline's neural model, fitted and scored without Kafka.

The same models/ code and the same settings as the trainer and the scorer
(``streams.train.trainer.fit_model``, ``streams.score.model.ScoringModel.score`` and
``neural_config``), which evaluation/ cannot import (streams/ is the outer layer): a test checks
that :func:`fit_neural` and :func:`score_neural` give those functions' numbers bit for bit, so
the two cannot drift apart unnoticed. Added here: the naive calibration of the ablation
(isotonic maps fitted on Thompson samples instead of MAP predictions), the uncalibrated means the
diagnostics compare, and the posterior std of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from banditlp.arrays import Float32Array, FloatArray
from evaluation.experiment.batches import Rows
from models.calibration import fit_calibrator
from models.neural import NeuralThompsonModel, fit_or_refit
from models.neural_net import NeuralConfig

#: The Bernoulli outcomes, which have calibrators.
BERNOULLI = ("conversion", "unsubscription")

Calibration = Literal["heuristic", "isotonic", "naive", "none"]


def neural_config(feature_dim: int, seed: int = 0) -> NeuralConfig:
    """The global model's configuration, as the streams build it (``streams.score.model.neural_config``).

    Args:
        feature_dim: Width of the pair features (all counted as ``user_dim``).
        seed: Initialisation and minibatch seed.
    """
    return NeuralConfig(
        user_dim=feature_dim, item_dim=0, hidden=(64, 64), epochs=30, retrain_epochs=10, batch_size=256, seed=seed
    )


def fit_neural(
    rows: Rows,
    seed: int,
    *,
    holdout: float = 0.2,
    calibration: Calibration = "heuristic",
    tau: float = 1.0,
    rng: np.random.Generator | None = None,
    previous: NeuralThompsonModel | None = None,
) -> NeuralThompsonModel:
    """Fit the network and its last-layer posterior on the older rows and the calibrators on the
    newest ``holdout`` share, as the trainer does (``fit_model``).

    Args:
        rows: ``n`` rows, oldest first.
        seed: The model's seed.
        holdout: Share of the newest rows the calibrators are fitted on (none when it leaves no row).
        calibration: ``"heuristic"`` (BanditLP: maps fitted on the MAP predictions of the
            holdout, isotonic or Platt by the holdout's events, as the trainer fits them),
            ``"isotonic"`` (the same, isotonic whatever the events: the ablation of that
            choice), ``"naive"`` (fitted on marginal Thompson samples of the holdout at ``tau``:
            the exploration noise is taken for prediction error) or ``"none"``.
        tau: Temperature of the naive calibration's samples.
        rng: Generator of the naive calibration's samples (required for ``"naive"``).
        previous: The version before: a copy of it is retrained from its weights, as the
            trainer does (``fit_model(previous=...)``); None fits a new network from scratch.

    Returns:
        The fitted model.
    """
    outcomes = {
        "conversion": rows.converted,
        "unsubscription": rows.unsubscribed,
        "value": np.where(rows.converted > 0, rows.value, np.nan),
    }
    n = rows.n
    n_fit = max(1, int(n * (1 - holdout)))
    config = neural_config(rows.features.shape[1], seed)
    model = fit_or_refit(previous, config, rows.features[:n_fit], {k: v[:n_fit] for k, v in outcomes.items()})
    if n_fit < n and calibration in ("heuristic", "isotonic"):
        model.fit_calibrators(
            rows.features[n_fit:],
            {k: v[n_fit:] for k, v in outcomes.items()},
            **({"min_isotonic_events": 0} if calibration == "isotonic" else {}),
        )
    elif n_fit < n and calibration == "naive":
        if rng is None:
            raise ValueError("naive calibration needs a generator for its Thompson samples")
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        samples, _, _ = model.marginal_scores(rows.features[n_fit:], tau, generator)
        for outcome in BERNOULLI:
            model.calibrators[outcome] = fit_calibrator(samples[outcome], outcomes[outcome][n_fit:], mode="naive")
    return model


@dataclass(frozen=True, eq=False)
class NeuralScores:
    """A model's scores of ``E`` pairs; every array ``(E,)`` float64.

    Outcomes: ``conversion``, ``unsubscription`` (probabilities), ``value`` (of a conversion),
    ``reward`` (conversion x value).

    Attributes:
        samples: Calibrated marginal Thompson samples (what the scorer publishes as samples).
        means: Calibrated MAP scores (the scorer's means).
        raw_means: Uncalibrated MAP scores (no ``reward``).
        stds: Posterior std of each head's linear predictor (logit scale for Bernoulli heads).
    """

    samples: dict[str, FloatArray]
    means: dict[str, FloatArray]
    raw_means: dict[str, FloatArray]
    stds: dict[str, FloatArray]


def score_neural(model: NeuralThompsonModel, X: Float32Array, tau: float, rng: np.random.Generator) -> NeuralScores:
    """Calibrated samples and means of every outcome, as ``ScoringModel.score`` computes them
    (without per-user effects).

    Args:
        model: The fitted model with its calibrators.
        X: ``(E, d)`` float32 pair features.
        tau: Thompson temperature >= 0 (0: the samples are the means).
        rng: Seeds this call's torch generator (one draw of it, as the scorer).

    Returns:
        The scores.
    """
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    samples, means, stds = model.marginal_scores(X, tau, generator)
    raw = {k: v.copy() for k, v in means.items()}
    for outcome in BERNOULLI:
        cal = model.calibrators.get(outcome)
        if cal is not None:
            samples[outcome] = cal.apply(samples[outcome])
            means[outcome] = cal.apply(means[outcome])
    samples["reward"] = samples["conversion"] * np.maximum(samples["value"], 0.0)
    means["reward"] = means["conversion"] * np.maximum(means["value"], 0.0)
    return NeuralScores(samples, means, raw, stds)


def logit(p: FloatArray) -> FloatArray:
    """``log(p / (1 - p))`` of probabilities clipped to ``[1e-12, 1 - 1e-12]``; ``(n,)`` -> ``(n,)``."""
    q = np.clip(p, 1e-12, 1.0 - 1e-12)
    out: FloatArray = np.log(q) - np.log1p(-q)
    return out


def version_spread(previous: NeuralThompsonModel, current: NeuralThompsonModel, X: Float32Array) -> dict[str, float]:
    """How far the mean logits moved from one model version to the next, in posterior stds.

    ``sqrt(mean_e (f_new - f_old)^2) / sqrt(mean_e s_new^2)`` per Bernoulli outcome, with ``f``
    the MAP logit and ``s`` the new version's posterior std of it, over the pairs ``X``. Above 1:
    consecutive versions differ by more than the posterior says the model is unsure of.

    Args:
        previous: The previous version.
        current: This version.
        X: ``(E, d)`` float32 pair features.

    Returns:
        Outcome -> the ratio.
    """
    old = previous.mean_scores(X)
    new = current.mean_scores(X)
    std = current.predictive_std(X)
    spread = {}
    for outcome in BERNOULLI:
        change = float(np.sqrt(np.mean((logit(new[outcome]) - logit(old[outcome])) ** 2)))
        scale = float(np.sqrt(np.mean(std[outcome] ** 2)))
        spread[outcome] = change / scale if scale > 0 else float("nan")
    return spread


def joint_draws(
    model: NeuralThompsonModel, X: Float32Array, outcome: str, n_draws: int, rng: np.random.Generator
) -> FloatArray:
    """Calibrated joint posterior draws of one Bernoulli outcome over all pairs.

    Each draw takes one weight vector ``theta ~ N(theta_hat, H^-1)`` of the outcome's last layer,
    shared by every pair (``sample_scores(mode="joint", tau=1)``), so a draw of the cost of a
    whole plan keeps the correlation between its pairs that marginal draws lose.

    Args:
        model: The fitted model.
        X: ``(E, d)`` float32 pair features.
        outcome: ``"conversion"`` or ``"unsubscription"``.
        n_draws: M >= 1.
        rng: Seeds the draws' torch generator.

    Returns:
        ``(M, E)`` calibrated probabilities.
    """
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return np.stack(
        [model.sample_scores(X, 1.0, generator, mode="joint", calibrate=True)[outcome] for _ in range(max(1, n_draws))]
    )
