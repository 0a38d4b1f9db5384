"""The seed's utility and Thompson sampling over candidate settings: observations → ``(x_i, p_i)``.

One step (:func:`thompson_distribution`): fit one GP per metric on the observations
(:mod:`models.tuner.gp`); take N candidates, a scrambled Sobol set over the box plus every distinct
observed setting; draw S joint samples of every metric's latent ``f`` at the N candidates (the metrics'
GPs are independent, each draw is joint over the candidates); compute the utility per draw,

    U_s(x_j) = f_1,s(x_j) + λ Σ_i 1{f_i,s(x_j) satisfies c_i},

and set ``p_j`` = the fraction of draws in which candidate j maximises U. That is the seed's Monte-Carlo
estimate of ``P(U(x_j) is the largest among U(x_1), …, U(x_N))``; the output is the discrete
distribution ``F_t = ((x_1, p_1), …, (x_N, p_N))`` that the traffic is split by.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import qmc

from banditlp.arrays import FloatArray
from models.errors import ModelError, ModelInputError, ShapeError
from models.inputs import as_matrix, read_only_view
from models.tuner.config import Guardrail, TunerConfig
from models.tuner.gp import fit_metric_gp, joint_posterior


def arm_id(point: ArrayLike) -> str:
    """A stable id of one setting: the first 12 hex digits of the BLAKE2b digest of its float64 bytes.

    The same setting gets the same id in every step, so an assignment can keep its users on it.
    """
    raw = np.ascontiguousarray(np.asarray(point, dtype=np.float64)).tobytes()
    return hashlib.blake2b(raw, digest_size=6).hexdigest()


@dataclass(frozen=True, eq=False)
class ParameterDistribution:
    """The discrete distribution ``((x_1, p_1), …, (x_N, p_N))`` of one tuning step.

    Attributes:
        points: (N, d) candidate settings (read-only).
        probs: (N,) probabilities, non-negative, summing to 1 (read-only).
        arm_ids: N stable ids, ``arm_id(points[j])``.
    """

    points: FloatArray
    probs: FloatArray
    arm_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=np.float64)
        probs = np.asarray(self.probs, dtype=np.float64)
        if points.ndim != 2 or probs.shape != (points.shape[0],) or len(self.arm_ids) != points.shape[0]:
            raise ShapeError(
                f"points (N, d), probs (N,) and N arm ids must agree, got {points.shape}, {probs.shape}, "
                f"{len(self.arm_ids)}"
            )
        if not (np.all(np.isfinite(probs)) and np.all(probs >= 0) and abs(probs.sum() - 1.0) < 1e-9):
            raise ModelInputError("probs must be non-negative and sum to 1")
        if len(set(self.arm_ids)) != len(self.arm_ids):
            raise ModelInputError("arm ids must be distinct")
        object.__setattr__(self, "points", read_only_view(points))
        object.__setattr__(self, "probs", read_only_view(probs))

    @classmethod
    def of(cls, points: ArrayLike, probs: ArrayLike) -> ParameterDistribution:
        """A distribution over ``points`` (N, d) with ``probs`` (N,), its arm ids derived from the points."""
        pts = np.asarray(points, dtype=np.float64)
        return cls(pts, np.asarray(probs, dtype=np.float64), tuple(arm_id(p) for p in pts))

    @property
    def mode(self) -> FloatArray:
        """(d,) the most probable setting (the first one on a tie)."""
        return np.asarray(self.points[int(np.argmax(self.probs))])

    def sample(self, k: int, rng: np.random.Generator) -> FloatArray:
        """(k, d) settings drawn with replacement with probabilities ``probs``."""
        idx = rng.choice(self.points.shape[0], size=k, p=self.probs)
        return np.asarray(self.points[idx])


def satisfied(values: FloatArray, guardrail: Guardrail) -> FloatArray:
    """1.0 where ``values`` meet the guardrail (``≥`` or ``≤`` its threshold), else 0.0, elementwise."""
    ok = values >= guardrail.threshold if guardrail.direction == ">=" else values <= guardrail.threshold
    return ok.astype(np.float64)


def utility(
    primary: ArrayLike, guardrail_values: ArrayLike, guardrails: tuple[Guardrail, ...], lam: float
) -> FloatArray:
    """The seed's ``U = f_1 + λ Σ_i 1{f_i satisfies c_i}``, elementwise over any batch shape.

    Args:
        primary: (...) values of f_1.
        guardrail_values: (G, ...) values of the G guardrail metrics, aligned with ``primary``.
        guardrails: the G constraints.
        lam: λ.

    Returns:
        (...) utilities.
    """
    f1 = np.asarray(primary, dtype=np.float64)
    g = np.asarray(guardrail_values, dtype=np.float64)
    if g.shape != (len(guardrails), *f1.shape):
        raise ShapeError(f"guardrail_values must have shape {(len(guardrails), *f1.shape)}, got {g.shape}")
    bonus = np.zeros_like(f1)
    for values, rail in zip(g, guardrails):
        bonus += satisfied(values, rail)
    return f1 + lam * bonus


def thompson_probabilities(U: ArrayLike) -> FloatArray:
    """The fraction of draws in which each candidate maximises U (ties go to the lowest index).

    Args:
        U: (S, N) utilities of N candidates in S draws.

    Returns:
        (N,) probabilities, multiples of 1/S.
    """
    Ua = np.asarray(U, dtype=np.float64)
    if Ua.ndim != 2 or Ua.shape[0] < 1:
        raise ShapeError(f"U must have shape (S, N) with S >= 1, got {Ua.shape}")
    winners = np.argmax(Ua, axis=1)
    probs: FloatArray = np.bincount(winners, minlength=Ua.shape[1]).astype(np.float64) / Ua.shape[0]
    return probs


def draw_joint(
    mean: FloatArray, cov: FloatArray, n_samples: int, rng: np.random.Generator, jitter: float
) -> FloatArray:
    """(S, N) draws of ``N(mean, cov)`` as ``mean + Z Lᵀ`` with ``L`` the Cholesky factor of ``cov + εI``.

    ε starts at ``jitter`` (relative to the mean diagonal) and grows tenfold until the factorisation
    succeeds: observed settings are also candidates, and the posterior at a repeated point is close to
    singular.

    Raises:
        ModelError: no ε up to 1e-2 of the mean diagonal made ``cov`` factorisable.
    """
    n = mean.shape[0]
    scale = float(np.mean(np.diag(cov))) or 1.0
    eps = max(jitter, 1e-12)
    while eps <= 1e-2:
        try:
            L = np.linalg.cholesky(cov + eps * scale * np.eye(n))
            break
        except np.linalg.LinAlgError:
            eps *= 10.0
    else:
        raise ModelError("posterior covariance is not positive definite even with jitter")
    Z = rng.standard_normal((n_samples, n))
    draws: FloatArray = mean[None, :] + Z @ L.T
    return draws


def candidate_set(config: TunerConfig, observed: ArrayLike | None = None) -> FloatArray:
    """(N, d) candidates: ``config.n_candidates`` scrambled Sobol points over the box, then every distinct
    observed setting not among them (sorted), so a setting already tried can keep its traffic."""
    lo = np.array([b[0] for b in config.bounds])
    hi = np.array([b[1] for b in config.bounds])
    sobol = qmc.Sobol(d=config.dim, scramble=True, seed=config.seed).random(config.n_candidates)
    points: FloatArray = lo + sobol * (hi - lo)
    if observed is not None:
        obs = np.unique(as_matrix(observed, config.dim, "observed"), axis=0)
        known = {row.tobytes() for row in points}
        fresh = [row for row in obs if row.tobytes() not in known]  # settings drawn from the Sobol set are there
        if fresh:
            points = np.vstack([points, np.array(fresh)])
    return points


def posterior_draws(X: ArrayLike, Y: ArrayLike, candidates: ArrayLike, config: TunerConfig) -> FloatArray:
    """(n_metrics, S, N) joint posterior draws of every metric's latent f at the candidates.

    Args:
        X: (n, d) observed settings.
        Y: (n, n_metrics) observations, the primary in column 0 and the guardrails after it.
        candidates: (N, d) settings to draw at.
        config: the tuner's configuration (S, the noise, the seed).
    """
    Xa = as_matrix(X, config.dim)
    Ya = np.asarray(Y, dtype=np.float64)
    if Ya.shape != (Xa.shape[0], config.n_metrics):
        raise ShapeError(f"Y must have shape ({Xa.shape[0]}, {config.n_metrics}), got {Ya.shape}")
    if not np.all(np.isfinite(Ya)):
        raise ModelInputError("Y contains NaN or inf")
    cand = as_matrix(candidates, config.dim, "candidates")
    rng = np.random.default_rng([config.seed, config.step])
    out = np.empty((config.n_metrics, config.n_samples, cand.shape[0]))
    for i in range(config.n_metrics):
        gp = fit_metric_gp(Xa, Ya[:, i], config.bounds, config.noise_variance, seed=config.seed + i)
        mean, cov = joint_posterior(gp, cand)
        out[i] = draw_joint(mean, cov, config.n_samples, rng, config.jitter)
    return out


def thompson_distribution(X: ArrayLike, Y: ArrayLike, config: TunerConfig) -> ParameterDistribution:
    """One tuning step: observations in, the Thompson distribution over the candidates out.

    Args:
        X: (n, d) observed settings (repeats allowed).
        Y: (n, n_metrics) their noisy metrics, the primary in column 0.
        config: λ, the guardrails, S, N and the seed.

    Returns:
        The distribution over :func:`candidate_set` (``n_candidates`` Sobol points + distinct observed ones).
    """
    cand = candidate_set(config, X)
    draws = posterior_draws(X, Y, cand, config)
    U = utility(draws[0], draws[1:], config.guardrails, config.lam)
    return ParameterDistribution.of(cand, thompson_probabilities(U))
