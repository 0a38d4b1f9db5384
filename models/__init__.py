"""Learning, pure: reward and cost estimators with posterior uncertainty.

- ``models.posterior``: linear-Gaussian head (LinTS / LinUCB), compact per-key state.
- ``models.logistic``: Bayesian logistic head, Laplace approximation, online Newton updates.
- ``models.laplace`` / ``models.neural``: multi-outcome network with last-layer Laplace
  Thompson sampling and the two-speed learner.
- ``models.calibration``: isotonic calibration of Thompson samples, expected calibration error.
- ``models.snapshot``: versioned snapshot bytes for all of the above.
- ``models.random_effects``: per-user linear-Gaussian heads on the global model's residual, as
  stacked arrays (the stream layer keeps them in a table).

Imports numpy, scipy, torch, scikit-learn and ``banditlp`` (errors, array types) only; never Kafka,
``allocator`` or ``evaluation``. Submodules are not imported here, so importing a numpy-only
head does not load torch.
"""
