"""The tuner on a synthetic constrained problem with known metric functions, against random and grid search.

- ``evaluation.tuning.problem``: the synthetic problem (2-D box, a primary and two guardrails, Gaussian
  noise) and its truth on a dense grid.
- ``evaluation.tuning.methods``: ``tuner`` (the GP Thompson distribution), ``random_search``, ``grid_search``.
- ``evaluation.tuning.loop``: a fixed budget of observations in rounds, and the per-seed scores.
- ``evaluation.tuning.report``: the per-method table, tune.json and the distribution plot.
"""
