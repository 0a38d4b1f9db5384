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
values for Gaussian heads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, overload

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from banditlp.arrays import Float32Array, FloatArray
from models.calibration import MIN_ISOTONIC_EVENTS, Calibrator, IsotonicCalibrator, PlattCalibrator, fit_calibrator
from models.errors import ModelInputError, NotFittedError, ShapeError
from models.inputs import as_matrix
from models.laplace import LastLayerLaplace, SampleMode
from models.neural_net import MultiOutcomeNet, NeuralConfig
from models.snapshot import SnapshotMixin, register_kind

# Rows per scoring chunk: bounds the (chunk, k·h) float64 temporaries to a few tens of MB.
_SCORE_CHUNK = 32_768


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
class NeuralThompsonModel(SnapshotMixin):
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

    def _as_tensor(self, features: ArrayLike | torch.Tensor) -> torch.Tensor:
        d = self.config.input_dim
        if isinstance(features, torch.Tensor):
            x = features.to(device=self.device, dtype=torch.float32)
            if x.ndim != 2 or x.shape[1] != d:
                raise ShapeError(f"features must have shape (n, {d}), got {tuple(features.shape)}")
            if not bool(torch.isfinite(x).all()):
                raise ModelInputError("features contain NaN or inf")
            return x
        arr = np.asarray(features, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != d:
            raise ShapeError(f"features must have shape (n, {d}), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ModelInputError("features contain NaN or inf")
        return torch.from_numpy(arr).to(self.device)

    def _phi_tilde(self, x: torch.Tensor) -> torch.Tensor:
        """[φ; 1] in float64 (the Laplace layer's input); (n, d_in) -> (n, h+1)."""
        phi = self.net.features(x).to(torch.float64)
        return torch.cat([phi, torch.ones((phi.shape[0], 1), dtype=phi.dtype, device=phi.device)], dim=1)

    def phi_tilde(self, features: ArrayLike) -> FloatArray:
        """Last-layer inputs ``[φ; 1]`` for rows of features; (n, d_in) -> (n, h+1) float64."""
        x = self._as_tensor(features)
        with torch.no_grad():
            return np.concatenate(
                [self._phi_tilde(c).cpu().numpy() for c in torch.split(x, _SCORE_CHUNK)]
                or [np.zeros((0, self.config.hidden[-1] + 1))]
            )

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

    # -- scoring ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError("NeuralThompsonModel has not been fitted")

    def _score(
        self,
        features: ArrayLike | torch.Tensor,
        kind: str,
        tau: float = 0.0,
        generator: torch.Generator | None = None,
        mode: SampleMode = "marginal",
        calibrate: bool = False,
    ) -> dict[str, Any]:
        self._check_fitted()
        if not (np.isfinite(tau) and tau >= 0):
            raise ModelInputError(f"tau must be finite and >= 0, got {tau!r}")
        as_numpy = not isinstance(features, torch.Tensor)
        x = self._as_tensor(features)
        outs = []
        with torch.no_grad():
            for chunk in torch.split(x, _SCORE_CHUNK):
                phi = self._phi_tilde(chunk)
                if kind == "mean":
                    f = self.laplace.mean_logits(phi)
                elif kind == "std":
                    f = self.laplace.std_logits(phi)
                else:
                    f = self.laplace.sample_logits(phi, tau, generator, mode)
                outs.append(f)
            f = torch.cat(outs) if outs else torch.zeros((0, len(self.config.outcomes)), dtype=torch.float64)
        result: dict[str, Any] = {}
        for j, spec in enumerate(self.config.outcomes):
            col = f[:, j]
            if kind != "std" and spec.likelihood == "bernoulli":
                col = torch.sigmoid(col)
            arr: Any = col.cpu().numpy() if as_numpy else col
            if calibrate and spec.name in self.calibrators:
                cal = self.calibrators[spec.name].apply(col.cpu().numpy())
                arr = cal if as_numpy else torch.from_numpy(cal).to(col.device)
            result[spec.name] = arr
        return result

    def marginal_scores(
        self, features: ArrayLike, tau: float, generator: torch.Generator | None = None
    ) -> tuple[dict[str, FloatArray], dict[str, FloatArray], dict[str, FloatArray]]:
        """Marginal Thompson samples, MAP scores and predictive stds in one pass over the pairs.

        The same numbers as ``sample_scores(mode="marginal")``, ``mean_scores`` and
        ``predictive_std`` called one after the other with the same generator, for a third of
        the work: the trunk and the std run once per chunk. Uncalibrated; Bernoulli samples and
        means are probabilities, stds are on the logit scale.

        Args:
            features: (n_pairs, d_in).
            tau: temperature τ ≥ 0.
            generator: torch generator on the model's device (None: torch's global one).

        Returns:
            ``(samples, means, stds)``, each ``{outcome: (n_pairs,)}`` float64.
        """
        draws, means, stds = self.marginal_draws(features, tau, 1, generator)
        return {name: d[0] for name, d in draws.items()}, means, stds

    def marginal_draws(
        self, features: ArrayLike, tau: float, n_draws: int, generator: torch.Generator | None = None
    ) -> tuple[dict[str, FloatArray], dict[str, FloatArray], dict[str, FloatArray]]:
        """``n_draws`` independent marginal Thompson samples per pair, with the MAP scores and stds.

        The trunk, the means and the stds run once; only the normal draws repeat. Draw 0 is
        ``marginal_scores``'s sample with the same generator.

        Args:
            features: (n_pairs, d_in).
            tau: temperature τ ≥ 0.
            n_draws: K ≥ 1.
            generator: torch generator on the model's device (None: torch's global one).

        Returns:
            ``(draws, means, stds)``: draws ``{outcome: (n_draws, n_pairs)}``, the others
            ``{outcome: (n_pairs,)}``, float64.
        """
        self._check_fitted()
        if not (np.isfinite(tau) and tau >= 0):
            raise ModelInputError(f"tau must be finite and >= 0, got {tau!r}")
        if n_draws < 1:
            raise ModelInputError(f"n_draws must be >= 1, got {n_draws!r}")
        x = self._as_tensor(features)
        k = len(self.config.outcomes)
        sample_parts, mean_parts, std_parts = [], [], []
        with torch.no_grad():
            for chunk in torch.split(x, _SCORE_CHUNK):
                s, m, sd = self.laplace.marginal_draws(self._phi_tilde(chunk), tau, n_draws, generator)
                sample_parts.append(s)
                mean_parts.append(m)
                std_parts.append(sd)
        empty = torch.zeros((0, k), dtype=torch.float64)
        f = torch.cat(sample_parts, dim=1).cpu() if sample_parts else torch.zeros((n_draws, 0, k), dtype=torch.float64)
        mu = torch.cat(mean_parts).cpu() if mean_parts else empty
        sd_all = torch.cat(std_parts).cpu() if std_parts else empty
        draws, means, stds = {}, {}, {}
        for j, spec in enumerate(self.config.outcomes):
            sample, mean = f[:, :, j], mu[:, j]
            if spec.likelihood == "bernoulli":
                sample, mean = torch.sigmoid(sample), torch.sigmoid(mean)
            draws[spec.name], means[spec.name] = sample.contiguous().numpy(), mean.contiguous().numpy()
            stds[spec.name] = sd_all[:, j].contiguous().numpy()
        return draws, means, stds

    @overload
    def mean_scores(self, features: torch.Tensor, *, calibrate: bool = False) -> dict[str, torch.Tensor]: ...
    @overload
    def mean_scores(self, features: ArrayLike, *, calibrate: bool = False) -> dict[str, FloatArray]: ...

    def mean_scores(self, features: Any, *, calibrate: bool = False) -> dict[str, Any]:
        """Deterministic (MAP) scores: ``σ(φ̃ᵀθ̂)`` for Bernoulli heads, ``φ̃ᵀθ̂`` for Gaussian ones.

        Args:
            features: (n_pairs, d_in) numpy array or torch tensor.
            calibrate: apply the fitted calibrators to the Bernoulli heads.

        Returns:
            ``{outcome: (n_pairs,)}`` float64, numpy for numpy input, torch for torch input.
        """
        return self._score(features, "mean", calibrate=calibrate)

    @overload
    def predictive_std(self, features: torch.Tensor) -> dict[str, torch.Tensor]: ...
    @overload
    def predictive_std(self, features: ArrayLike) -> dict[str, FloatArray]: ...

    def predictive_std(self, features: Any) -> dict[str, Any]:
        """Last-layer Laplace std of each head's linear predictor, ``sqrt(φ̃ᵀH⁻¹φ̃)``.

        On the logit scale for Bernoulli heads, the value scale for Gaussian heads (excluding
        the observation noise σ²).

        Args:
            features: (n_pairs, d_in) numpy array or torch tensor.

        Returns:
            ``{outcome: (n_pairs,)}`` float64, numpy for numpy input, torch for torch input.
        """
        return self._score(features, "std")

    @overload
    def sample_scores(
        self,
        features: torch.Tensor,
        tau: float = 1.0,
        generator: torch.Generator | int | None = None,
        *,
        mode: SampleMode = "marginal",
        calibrate: bool = False,
    ) -> dict[str, torch.Tensor]: ...
    @overload
    def sample_scores(
        self,
        features: ArrayLike,
        tau: float = 1.0,
        generator: torch.Generator | int | None = None,
        *,
        mode: SampleMode = "marginal",
        calibrate: bool = False,
    ) -> dict[str, FloatArray]: ...

    def sample_scores(
        self,
        features: Any,
        tau: float = 1.0,
        generator: torch.Generator | int | None = None,
        *,
        mode: SampleMode = "marginal",
        calibrate: bool = False,
    ) -> dict[str, Any]:
        """Thompson-sampled scores, one per pair.

        ``mode="marginal"``: each pair's linear predictor is drawn independently from
        ``N(φ̃ᵀθ̂, τ φ̃ᵀH⁻¹φ̃)`` (a per-pair marginal sample of ``θ ~ N(θ̂, τH⁻¹)``);
        ``mode="joint"``: one weight draw per head shared by all pairs in the call. Bernoulli
        heads return ``σ(f)``. τ = 0 returns :meth:`mean_scores` exactly.

        Args:
            features: (n_pairs, d_in) numpy array or torch tensor.
            tau: temperature τ ≥ 0 scaling the posterior covariance.
            generator: a torch generator on the model's device, an int seed, or None (global RNG).
            mode: ``"marginal"`` or ``"joint"``.
            calibrate: apply the fitted (heuristic) calibrators to the Bernoulli samples.

        Returns:
            ``{outcome: (n_pairs,)}`` float64, numpy for numpy input, torch for torch input.
        """
        if isinstance(generator, int):
            generator = torch.Generator(device=self.device).manual_seed(generator)
        return self._score(features, "sample", tau, generator, mode, calibrate)

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
