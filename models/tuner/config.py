"""The tuner's configuration: the constrained problem and the Thompson-sampling budget, as frozen values.

The problem is the seed's (seeds/bayesian-optimization-balancing-metrics.md): maximise the primary
metric ``f_1(x)`` over a box subject to guardrails ``f_i(x) ≥ c_i`` (or ``≤ c_i``), relaxed into the
utility ``U(x) = f_1(x) + λ Σ_i 1{f_i(x) satisfies c_i}`` with λ large. Metric 0 is the primary;
metrics 1..n-1 are the guardrails, in the order of :attr:`TunerConfig.guardrails`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from models.errors import ModelInputError

Direction = Literal[">=", "<="]


@dataclass(frozen=True)
class Guardrail:
    """One constraint ``f_i(x) ≥ threshold`` (``direction=">="``) or ``f_i(x) ≤ threshold`` (``"<="``)."""

    threshold: float
    direction: Direction = ">="

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold):
            raise ModelInputError(f"guardrail threshold must be finite, got {self.threshold}")
        if self.direction not in (">=", "<="):
            raise ModelInputError(f"guardrail direction must be '>=' or '<=', got {self.direction!r}")


@dataclass(frozen=True)
class TunerConfig:
    """How one tuning step turns observations into a distribution over settings.

    Attributes:
        bounds: ``((lo_1, hi_1), …, (lo_d, hi_d))``, the box of settings x; the GPs see x mapped to [0, 1]^d.
        guardrails: one :class:`Guardrail` per guardrail metric (metrics 1..n-1).
        lam: λ, the reward for each satisfied guardrail. It must exceed the range of f_1 over the box so a
            setting that meets every guardrail in a draw beats every one that does not (the seed: "a large
            positive constant").
        n_samples: S, joint posterior draws per step; the probabilities are multiples of 1/S.
        n_candidates: N_sobol, the scrambled Sobol points over the box; the observed settings are added, so
            the distribution has N = N_sobol + (distinct observed settings) candidates.
        seed: seeds the Sobol set (fixed across steps, so arms keep their ids), the hyperparameter fit's
            restarts and the draws: the same observations, seed and step give the same distribution.
        step: the tuning step's index, mixed into the draws' generator (``default_rng([seed, step])``) so
            successive steps use fresh draws over the same candidates.
        noise_variance: the observation noise variance of every metric in its own units, or ``None`` to learn
            it by marginal likelihood with the hyperparameters.
        jitter: added to the diagonal of each joint posterior covariance before its Cholesky factor.
    """

    bounds: tuple[tuple[float, float], ...]
    guardrails: tuple[Guardrail, ...] = ()
    lam: float = 100.0
    n_samples: int = 1024
    n_candidates: int = 512
    seed: int = 0
    step: int = 0
    noise_variance: float | None = None
    jitter: float = 1e-8

    def __post_init__(self) -> None:
        if len(self.bounds) < 1:
            raise ModelInputError("bounds must name at least one dimension")
        for lo, hi in self.bounds:
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ModelInputError(f"each bound must be finite with lo < hi, got ({lo}, {hi})")
        if not (math.isfinite(self.lam) and self.lam > 0):
            raise ModelInputError(f"lam must be positive and finite, got {self.lam}")
        if self.seed < 0 or self.step < 0:
            raise ModelInputError(f"seed and step must be >= 0, got {self.seed}, {self.step}")
        if self.n_samples < 1 or self.n_candidates < 1:
            raise ModelInputError(f"n_samples and n_candidates must be >= 1, got {self.n_samples}, {self.n_candidates}")
        if self.noise_variance is not None and not (math.isfinite(self.noise_variance) and self.noise_variance > 0):
            raise ModelInputError(f"noise_variance must be positive and finite, got {self.noise_variance}")
        if not (math.isfinite(self.jitter) and self.jitter >= 0):
            raise ModelInputError(f"jitter must be >= 0, got {self.jitter}")

    @property
    def dim(self) -> int:
        """d, the number of tuned parameters."""
        return len(self.bounds)

    @property
    def n_metrics(self) -> int:
        """n, the primary plus the guardrails."""
        return 1 + len(self.guardrails)
