"""Neural multi-outcome model with last-layer Laplace Thompson sampling.

As in "BanditLP: Large-Scale Stochastic Optimization for Personalized Recommendations" (arXiv
2601.15552): Thompson samples of a network's outcomes, their uncertainty from a linearised Laplace
approximation.

One MLP trunk over the concatenated ``[user; item; cross]`` features of a pair produces last
hidden features φ; one linear head per outcome (conversion and unsubscription: Bernoulli,
value/LTV: Gaussian) sits on top. The trunk and heads are trained jointly with seeded Adam
minibatches; the uncertainty comes from a linearised Laplace approximation over each head's
last layer (models/laplace.py).

Two speeds ("neural-linear" Thompson sampling, §6.1 of the book chapter "Chapter 16: Contextual
Bandits: Personalized Exploration and Exploitation"):

* every observation (:meth:`NeuralThompsonModel.observe`): the last-layer posteriors absorb
  the new rows with the trunk fixed — exact RLS for Gaussian heads, one online Laplace Newton
  step for Bernoulli heads;
* every ``retrain_every`` observations: the network is retrained (warm start) on a bounded
  buffer of the most recent ``buffer_size`` rows, and the last-layer posteriors are rebuilt
  from scratch on that buffer with the new φ (a new trunk makes the old φ meaningless).

After each (re)training the head MAP is solved exactly given φ (Newton / least squares under
the ``N(0, λ⁻¹I)`` prior) so that the Laplace Gaussian is centred on a true optimum; the
network's own head weights are overwritten with it.

Scoring accepts numpy arrays or torch tensors of shape (n_pairs, d_in) and returns a dict
``{outcome name: (n_pairs,)}`` of the same array type: probabilities for Bernoulli heads,
values for Gaussian heads; the scoring methods live in models/neural_scoring.py
(:class:`models.neural_scoring.NeuralScoringMixin`), this module keeps the learning, the
calibrator fitting and the snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from banditlp.arrays import Float32Array, FloatArray
from models.calibration import MIN_ISOTONIC_EVENTS, Calibrator, IsotonicCalibrator, PlattCalibrator, fit_calibrator
from models.errors import ModelInputError, ShapeError
from models.inputs import as_matrix
from models.laplace import LastLayerLaplace
from models.neural_net import MultiOutcomeNet, NeuralConfig
from models.neural_scoring import NeuralScoringMixin
from models.snapshot import SnapshotMixin, register_kind


@dataclass
class _Buffer:
    """Ring buffer of the most recent rows, read back oldest first."""

    capacity: int
    input_dim: int
    n_outcomes: int
    X: Float32Array = field(init=False)
    Y: FloatArray = field(init=False)
    size: int = 0
    next: int = 0

    def __post_init__(self) -> None:
        self.X = np.zeros((self.capacity, self.input_dim), dtype=np.float32)
        self.Y = np.full((self.capacity, self.n_outcomes), np.nan)

    def add(self, X: Float32Array, Y: FloatArray) -> None:
        if X.shape[0] >= self.capacity:
            X, Y = X[-self.capacity :], Y[-self.capacity :]
        idx = (self.next + np.arange(X.shape[0])) % self.capacity
        self.X[idx], self.Y[idx] = X, Y
        self.next = int((self.next + X.shape[0]) % self.capacity)
        self.size = min(self.capacity, self.size + X.shape[0])

    def rows(self) -> tuple[Float32Array, FloatArray]:
        order = (self.next - self.size + np.arange(self.size)) % self.capacity
        return self.X[order], self.Y[order]


@register_kind
class NeuralThompsonModel(NeuralScoringMixin, SnapshotMixin):
    """Neural multi-outcome model with last-layer Laplace Thompson sampling, two-speed learner.

    Args:
        config: the model configuration.
        device: torch device for the network and scoring (``"cpu"``, ``"cuda"``).

    Example:
        >>> cfg = NeuralConfig(user_dim=4, item_dim=3, hidden=(16, 8), epochs=2)
        >>> model = NeuralThompsonModel(cfg)
        >>> X = np.random.default_rng(0).normal(size=(64, 7))
        >>> Y = {"conversion": np.zeros(64), "unsubscription": np.zeros(64), "value": np.ones(64)}
        >>> _ = model.fit(X, Y)
        >>> sorted(model.sample_scores(X, tau=1.0, generator=0))
        ['conversion', 'unsubscription', 'value']
    """

    snapshot_kind: ClassVar[str] = "neural_thompson"

    def __init__(self, config: NeuralConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.net = MultiOutcomeNet(config).to(self.device)
        self.laplace = LastLayerLaplace(config.outcomes, config.hidden[-1] + 1, config.prior_precision, config.gamma)
        self.calibrators: dict[str, Calibrator] = {}
        self._buffer = _Buffer(config.buffer_size, config.input_dim, len(config.outcomes))
        self.n_obs = 0
        self.since_retrain = 0
        self.n_trainings = 0
        self.fitted = False

    # -- input handling ---------------------------------------------------------------------
    def _outcome_matrix(self, outcomes: Mapping[str, ArrayLike] | ArrayLike, n: int) -> FloatArray:
        """(n, k) float64 outcomes with NaN for 'not observed'; validates values per likelihood."""
        names = self.config.outcome_names
        if isinstance(outcomes, Mapping):
            unknown = set(outcomes) - set(names)
            if unknown:
                raise ModelInputError(f"unknown outcomes {sorted(unknown)}; expected {list(names)}")
            Y = np.full((n, len(names)), np.nan)
            for j, name in enumerate(names):
                if name in outcomes:
                    col = np.asarray(outcomes[name], dtype=np.float64).reshape(-1)
                    if col.shape != (n,):
                        raise ShapeError(f"outcome {name!r} must have shape ({n},), got {col.shape}")
                    Y[:, j] = col
        else:
            Y = np.asarray(outcomes, dtype=np.float64)
            if Y.shape != (n, len(names)):
                raise ShapeError(f"outcomes must have shape ({n}, {len(names)}), got {Y.shape}")
        if np.any(np.isinf(Y)):
            raise ModelInputError("outcomes contain inf (use NaN for 'not observed')")
        for j, spec in enumerate(self.config.outcomes):
            col = Y[:, j]
            seen = col[~np.isnan(col)]
            if spec.likelihood == "bernoulli" and not np.all((seen == 0.0) | (seen == 1.0)):
                raise ModelInputError(f"outcome {spec.name!r} must be 0/1 (or NaN)")
        return Y

    # -- learning ---------------------------------------------------------------------------
    def fit(self, features: ArrayLike, outcomes: Mapping[str, ArrayLike] | ArrayLike) -> dict[str, float]:
        """Train from scratch on arrays and build the last-layer posteriors (the trainer's entry).

        The rows also replace the retention buffer (its last ``buffer_size`` rows are kept).

        Args:
            features: (n, d_in) pair features.
            outcomes: ``{name: (n,)}`` (a missing name or NaN entry = not observed) or an
                (n, k) matrix in ``config.outcomes`` order.

        Returns:
            Final mean training loss per outcome.
        """
        X = as_matrix(features, self.config.input_dim, "features").astype(np.float32)
        Y = self._outcome_matrix(outcomes, X.shape[0])
        if X.shape[0] == 0:
            raise ModelInputError("cannot fit on zero rows")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.net = MultiOutcomeNet(self.config).to(self.device)
        self._buffer = _Buffer(self.config.buffer_size, self.config.input_dim, len(self.config.outcomes))
        self._buffer.add(X, Y)
        self.n_obs = X.shape[0]
        return self._train_and_rebuild(self.config.epochs)

    def refit(self, features: ArrayLike, outcomes: Mapping[str, ArrayLike] | ArrayLike) -> dict[str, float]:
        """Retrain from the current weights on these rows (``retrain_epochs``) and rebuild the
        last-layer posteriors on them; the calibrators are dropped (they map the old trunk's
        scores). The trainer's entry for every version after the first.

        Retraining from scratch with a new seed moved consecutive versions' logits by more than
        their posterior std (the diagnostics' version spread), and the LP chases such moves; a
        warm start keeps what the previous version learnt where the new rows say nothing new.

        Args:
            features: (n, d_in) pair features (they replace the retention buffer).
            outcomes: ``{name: (n,)}`` or (n, k), as :meth:`fit`.

        Returns:
            Final mean training loss per outcome.

        Raises:
            NotFittedError: if the model was never fitted (use :meth:`fit`).
        """
        self._check_fitted()
        X = as_matrix(features, self.config.input_dim, "features").astype(np.float32)
        Y = self._outcome_matrix(outcomes, X.shape[0])
        if X.shape[0] == 0:
            raise ModelInputError("cannot refit on zero rows")
        self._buffer = _Buffer(self.config.buffer_size, self.config.input_dim, len(self.config.outcomes))
        self._buffer.add(X, Y)
        self.n_obs = X.shape[0]
        self.calibrators = {}
        return self._train_and_rebuild(self.config.retrain_epochs)

    def observe(self, features: ArrayLike, outcomes: Mapping[str, ArrayLike] | ArrayLike) -> bool:
        """Absorb new observations (fast speed) and retrain when due (slow speed).

        Args:
            features: (m, d_in) features of the observed pairs, oldest first.
            outcomes: ``{name: (m,)}`` or (m, k); NaN / missing = not observed.

        Returns:
            True when this call retrained the network and rebuilt the posteriors.
        """
        X = as_matrix(features, self.config.input_dim, "features").astype(np.float32)
        Y = self._outcome_matrix(outcomes, X.shape[0])
        if X.shape[0] == 0:
            return False
        self._buffer.add(X, Y)
        self.n_obs += X.shape[0]
        self.since_retrain += X.shape[0]
        if not self.fitted or self.since_retrain >= self.config.retrain_every:
            self._train_and_rebuild(self.config.retrain_epochs if self.fitted else self.config.epochs)
            return True
        self.laplace.update(self.phi_tilde(X), Y)
        return False

    def _train_and_rebuild(self, epochs: int) -> dict[str, float]:
        X, Y = self._buffer.rows()
        losses = self._train(X, Y, epochs)
        self.laplace.rebuild(self.phi_tilde(X), Y)
        with torch.no_grad():  # the net's heads take the exact last-layer MAP
            W = np.stack([self.laplace.heads[o.name].mean for o in self.config.outcomes])
            self.net.heads.weight.copy_(torch.from_numpy(W[:, :-1]))
            self.net.heads.bias.copy_(torch.from_numpy(W[:, -1]))
        self.since_retrain = 0
        self.n_trainings += 1
        self.fitted = True
        return losses

    def _train(self, X: Float32Array, Y: FloatArray, epochs: int) -> dict[str, float]:
        cfg = self.config
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale = np.where(scale > 1e-8, scale, 1.0)
        self.net.input_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.net.input_scale.copy_(torch.from_numpy(scale.astype(np.float32)))
        xt = torch.from_numpy(X).to(self.device)
        yt = torch.from_numpy(np.nan_to_num(Y, nan=0.0)).to(self.device, torch.float32)
        mt = torch.from_numpy(~np.isnan(Y)).to(self.device, torch.float32)
        bern = torch.tensor([o.likelihood == "bernoulli" for o in cfg.outcomes], device=self.device)
        inv_var = torch.tensor([1.0 / o.noise_variance for o in cfg.outcomes], device=self.device)
        weight = torch.tensor([o.loss_weight for o in cfg.outcomes], device=self.device)
        opt = torch.optim.Adam(
            [
                {"params": self.net.trunk.parameters(), "weight_decay": cfg.weight_decay},
                {"params": self.net.heads.parameters(), "weight_decay": 0.0},
            ],
            lr=cfg.learning_rate,
        )
        gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * self.n_trainings)
        n = xt.shape[0]
        per_head = torch.zeros(len(cfg.outcomes))
        self.net.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).to(self.device)
            tot = torch.zeros(len(cfg.outcomes), device=self.device)
            cnt = torch.zeros(len(cfg.outcomes), device=self.device)
            for idx in torch.split(order, cfg.batch_size):
                f = self.net(xt[idx])
                y, m = yt[idx], mt[idx]
                nll = torch.where(
                    bern,
                    nn.functional.binary_cross_entropy_with_logits(f, y, reduction="none"),
                    0.5 * (f - y) ** 2 * inv_var,
                )
                nll = nll * m
                loss = ((nll.sum(0) / m.sum(0).clamp_min(1.0)) * weight).sum()
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                opt.step()
                tot += nll.detach().sum(0)
                cnt += m.sum(0)
            per_head = (tot / cnt.clamp_min(1.0)).cpu()
        self.net.eval()
        return {o.name: float(per_head[j]) for j, o in enumerate(cfg.outcomes)}

    def fit_calibrators(
        self,
        features: ArrayLike,
        outcomes: Mapping[str, ArrayLike] | ArrayLike,
        *,
        min_isotonic_events: int = MIN_ISOTONIC_EVENTS,
    ) -> None:
        """Fit the heuristic calibrators (BanditLP's calibration) of the Bernoulli heads.

        Each is fitted on the *deterministic* (MAP) probabilities vs outcomes; apply them to
        Thompson samples with ``sample_scores(..., calibrate=True)``. Isotonic where the holdout
        has ``min_isotonic_events`` events of the rarer class, Platt below
        (``models.calibration.fit_calibrator``).

        Args:
            features: (n, d_in) held-out pair features.
            outcomes: ``{name: (n,)}`` or (n, k); NaN / missing = not observed.
            min_isotonic_events: the isotonic/Platt switch (0: always isotonic).
        """
        Y = self._outcome_matrix(outcomes, np.shape(features)[0])
        means = self.mean_scores(np.asarray(features, dtype=np.float32))
        for j, spec in enumerate(self.config.outcomes):
            seen = ~np.isnan(Y[:, j])
            if spec.likelihood == "bernoulli" and np.any(seen):
                self.calibrators[spec.name] = fit_calibrator(
                    means[spec.name][seen], Y[seen, j], mode="heuristic", min_isotonic_events=min_isotonic_events
                )

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot_config(self) -> dict[str, Any]:
        """The configuration as JSON values (the retention buffer is not part of a snapshot)."""
        return self.config.to_json()

    def snapshot_arrays(self) -> dict[str, np.ndarray]:
        """Network weights, last-layer posteriors, calibrators and counters as arrays."""
        arrays = {f"net.{k}": v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()}
        for name, head in self.laplace.heads.items():
            for k, v in head.snapshot_arrays().items():
                arrays[f"post.{name}.{k}"] = v
        for name, cal in self.calibrators.items():
            for k, v in cal.snapshot_arrays().items():
                arrays[f"cal.{name}.{k}"] = v
            arrays[f"cal.{name}.naive"] = np.array(cal.mode == "naive")
        arrays["counters"] = np.array(
            [self.n_obs, self.since_retrain, self.n_trainings, int(self.fitted)], dtype=np.int64
        )
        return arrays

    @classmethod
    def from_snapshot_parts(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        """Rebuild from :meth:`snapshot_config` / :meth:`snapshot_arrays` output (on CPU)."""
        model = cls(NeuralConfig.from_json(config))
        state = {k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")}
        model.net.load_state_dict(state, strict=True)
        for name, head in list(model.laplace.heads.items()):
            parts = {k.rsplit(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"post.{name}.")}
            model.laplace.heads[name] = type(head).from_snapshot_parts(head.snapshot_config(), parts)
        cal_names = {k.split(".")[1] for k in arrays if k.startswith("cal.")}
        for name in sorted(cal_names):
            parts = {k.rsplit(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"cal.{name}.")}
            mode = "naive" if bool(parts.pop("naive")) else "heuristic"
            kind: type[IsotonicCalibrator] | type[PlattCalibrator] = (
                PlattCalibrator if "coef" in parts else IsotonicCalibrator
            )
            model.calibrators[name] = kind.from_snapshot_parts({"mode": mode}, parts)
        n_obs, since, n_tr, fitted = (int(v) for v in arrays["counters"])
        model.n_obs, model.since_retrain, model.n_trainings, model.fitted = n_obs, since, n_tr, bool(fitted)
        return model

    def to(self, device: str | torch.device) -> Self:
        """Move the network and the scoring cache to ``device``; returns self."""
        self.device = torch.device(device)
        self.net.to(self.device)
        return self


def fit_or_refit(
    previous: NeuralThompsonModel | None,
    config: NeuralConfig,
    features: ArrayLike,
    outcomes: Mapping[str, ArrayLike] | ArrayLike,
) -> NeuralThompsonModel:
    """The next model version: a copy of ``previous`` retrained from its weights
    (:meth:`NeuralThompsonModel.refit`) when there is one of the same input width, else a new
    network of ``config`` fitted from scratch. ``previous`` is left unchanged.

    Args:
        previous: The version before, or None.
        config: The configuration of a model fitted from scratch.
        features: (n, d_in) pair features.
        outcomes: ``{name: (n,)}`` or (n, k), as :meth:`NeuralThompsonModel.fit`.
    """
    if previous is not None and previous.config.input_dim == config.input_dim:
        model = NeuralThompsonModel.from_bytes(previous.to_bytes())
        model.refit(features, outcomes)
    else:
        model = NeuralThompsonModel(config)
        model.fit(features, outcomes)
    return model


def calibrated_unsubscription(model: NeuralThompsonModel, features: np.ndarray) -> FloatArray:
    """``(n,)`` the model's calibrated MAP unsubscription probability of each row of ``features``
    ``(n, d)``: the cost the version guard compares across versions (``models.version_guard``)."""
    X = np.ascontiguousarray(features, dtype=np.float32)
    return np.asarray(model.mean_scores(X, calibrate=True)["unsubscription"], dtype=np.float64)
