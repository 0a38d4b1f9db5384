"""The constrained Bayesian-optimisation tuner (seeds/bayesian-optimization-balancing-metrics.md), pure.

- ``models.tuner.config``: the frozen configuration (λ, guardrail thresholds and directions, S, N, seed).
- ``models.tuner.gp``: one Gaussian process per metric (BoTorch ``SingleTaskGP``, Matérn-5/2).
- ``models.tuner.thompson``: the utility U(x) and Thompson sampling over candidate settings, giving the
  discrete distribution ``(x_1, p_1) … (x_N, p_N)``; the cohort variant.
- ``models.tuner.assignment``: a deterministic, minimally-moving map of users to arms of a distribution.

Imports numpy, torch, botorch/gpytorch and ``banditlp``; never Kafka, ``allocator`` or ``evaluation``.
"""
