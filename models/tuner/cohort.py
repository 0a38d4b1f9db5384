"""The seed's cohort variant: one lower-dimensional tuning problem per cohort of users.

Instead of one GP over a global setting ``x = (x_1, …, x_K)`` of K cohorts' parameters, each cohort k has
its own metrics ``f_ik(x_k)`` of its own parameters only, so every GP is over the cohort's d_k dimensions
(the seed: "four metrics where each metric is a function of a one-dimensional hyperparameter"), fitted on
that cohort's observations only, and each cohort gets its own Thompson distribution over its own
settings, served to its users only.

Scope: each cohort carries its own guardrail thresholds ``c_ik`` (its share of the global guardrail, as
in a per-cohort A/B comparison with its own control). The seed's global form, guardrails on the sum over
cohorts ``Σ_k f_ik(x_k) ≥ c_i``, couples the cohorts' choices inside the indicator and makes the argmax of
each draw a search over the product of the cohorts' candidate sets; it is not built here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from numpy.typing import ArrayLike

from models.errors import ModelInputError
from models.tuner.config import TunerConfig
from models.tuner.thompson import ParameterDistribution, thompson_distribution


@dataclass(frozen=True, eq=False)
class CohortObservations:
    """One cohort's data.

    Attributes:
        X: (n_k, d_k) the cohort's settings, in its config's box.
        Y: (n_k, n_metrics) its metrics measured on its own users, the primary in column 0.
        config: its problem (box of d_k dimensions, guardrails with its own thresholds, S, N, seed).
    """

    X: ArrayLike
    Y: ArrayLike
    config: TunerConfig


def cohort_distributions(cohorts: Mapping[str, CohortObservations]) -> dict[str, ParameterDistribution]:
    """One Thompson distribution per cohort, each from that cohort's GPs alone.

    Returns:
        cohort name → its distribution over its own candidate settings.
    """
    if not cohorts:
        raise ModelInputError("cohort_distributions needs at least one cohort")
    return {name: thompson_distribution(obs.X, obs.Y, obs.config) for name, obs in cohorts.items()}
