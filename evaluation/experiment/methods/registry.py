"""The registry of methods: one name, one frozen configuration, one builder each.

:data:`METHODS` maps every name the experiment accepts to its :class:`MethodSpec`; a method is
built by :func:`build_method` with the experiment's temperature applied to every configuration
that has a ``tau``. Variants of a method are registered under their own names with their own
configuration, so an ablation is two names in one experiment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evaluation.errors import EvaluationInputError
from evaluation.experiment.methods.base import Method, MethodContext
from evaluation.experiment.methods.linucb import LinUCBConfig, LinUCBMethod
from evaluation.experiment.methods.neural import NeuralMethod, NeuralMethodConfig, banditlp_config
from evaluation.experiment.methods.reference import (
    OracleLevelLPConfig,
    OracleLevelLPMethod,
    OracleLPConfig,
    OracleLPMethod,
    RandomLPConfig,
    RandomLPMethod,
)
from evaluation.experiment.methods.tuned import TunedConfig, TunedMethod
from evaluation.experiment.methods.tuned_budget import TunedBudgetConfig, TunedBudgetMethod
from evaluation.experiment.methods.vw import vw_specs


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: Its name in commands and results.
        description: One line for tables and help.
        config: Its frozen configuration (a dataclass instance).
        build: ``(config, context) -> Method``.
    """

    name: str
    description: str
    config: Any
    build: Callable[[Any, MethodContext], Method]


def _specs() -> tuple[MethodSpec, ...]:
    return (
        MethodSpec(
            "banditlp",
            "neural TS + last-layer Laplace + heuristic calibration + LP, budget on the draw and the means, paced",
            banditlp_config(),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_naive_calibration",
            "BanditLP with isotonic maps fitted on Thompson samples",
            dataclasses.replace(banditlp_config(), calibration="naive"),
            NeuralMethod,
        ),
        MethodSpec(
            "nn_lp",
            "calibrated MAP scores of the same network + LP",
            NeuralMethodConfig(scores="mean", calibration="heuristic", decision="lp"),
            NeuralMethod,
        ),
        MethodSpec(
            "nnts",
            "neural Thompson samples, top-k per user, no budget or provider rows",
            NeuralMethodConfig(scores="thompson", calibration="heuristic", decision="top_k"),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_scratch",
            "BanditLP retrained from scratch with a new seed every batch (the old trainer)",
            NeuralMethodConfig(scores="thompson", calibration="heuristic", decision="lp", retrain="scratch"),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_isotonic",
            "BanditLP with isotonic maps whatever the holdout's events (the paper's calibration)",
            NeuralMethodConfig(scores="thompson", calibration="isotonic", decision="lp"),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_mean_budget",
            "BanditLP, plan on the samples, budget held on the calibrated means",
            NeuralMethodConfig(scores="thompson", calibration="heuristic", decision="lp", budget_on="mean"),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_paced",
            "BanditLP with costs scaled by the realised/budgeted unsubscription ratio",
            NeuralMethodConfig(scores="thompson", calibration="heuristic", decision="lp", pacing_prior=20.0),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_mean_budget_paced",
            "BanditLP, budget on the calibrated means, scaled by the realised/budgeted ratio",
            NeuralMethodConfig(
                scores="thompson", calibration="heuristic", decision="lp", budget_on="mean", pacing_prior=20.0
            ),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_unguarded",
            "BanditLP with the budget on the Thompson draws alone, no pacing (the paper's rule)",
            NeuralMethodConfig(scores="thompson", calibration="heuristic", decision="lp"),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_mean_row",
            "BanditLP's guard without pacing: the budget on the draw and on the calibrated means",
            NeuralMethodConfig(scores="thompson", calibration="heuristic", decision="lp", budget_on="mean_row"),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_paced_q99",
            "BanditLP with costs scaled by the 99% quantile of the realised/budgeted unsubscription ratio",
            NeuralMethodConfig(
                scores="thompson", calibration="heuristic", decision="lp", pacing_prior=15.0, pacing_quantile=0.99
            ),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_no_version_guard",
            "BanditLP without the version guard: its costs paced, not held to the warier of the last versions",
            dataclasses.replace(banditlp_config(), version_guard=1),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_chance",
            "BanditLP, budget held at the 90% quantile of joint posterior draws of the plan's cost",
            NeuralMethodConfig(scores="thompson", calibration="heuristic", decision="lp", budget_on="quantile"),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_chance_paced",
            "banditlp_chance with costs scaled by the realised/budgeted unsubscription ratio",
            NeuralMethodConfig(
                scores="thompson", calibration="heuristic", decision="lp", budget_on="quantile", pacing_prior=20.0
            ),
            NeuralMethod,
        ),
        MethodSpec(
            "banditlp_tuned",
            "BanditLP with each user's tau from models/tuner's Thompson distribution (GPs per arm metric)",
            TunedConfig(),
            TunedMethod,
        ),
        MethodSpec(
            "banditlp_tuned_budget",
            "banditlp_tuned with each arm's (tau, unsubscription budget scale) tuned; one budget row per arm",
            TunedBudgetConfig(),
            TunedBudgetMethod,
        ),
        *vw_specs(),
        MethodSpec("linucb_lp", "LinUCB reward bound + linear mean cost + LP", LinUCBConfig(), LinUCBMethod),
        MethodSpec("random_lp", "uniform random scores + LP", RandomLPConfig(), RandomLPMethod),
        MethodSpec("oracle_lp", "true probabilities + LP (the regret benchmark)", OracleLPConfig(), OracleLPMethod),
        MethodSpec(
            "oracle_level_lp",
            "true rewards and relative costs + LP; the unsubscription level learnt from feedback (median)",
            OracleLevelLPConfig(),
            OracleLevelLPMethod,
        ),
        MethodSpec(
            "oracle_level_lp_q90",
            "oracle_level_lp with the level's 90% posterior quantile",
            OracleLevelLPConfig(quantile=0.9),
            OracleLevelLPMethod,
        ),
    )


#: Every method by name, in the order of tables and results.
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _specs()}

#: The methods of an experiment when none are named: the paper's comparison.
DEFAULT_METHODS: tuple[str, ...] = (
    "banditlp",
    "banditlp_naive_calibration",
    "nn_lp",
    "nnts",
    "linucb_lp",
    "random_lp",
    "oracle_lp",
)


def method_spec(name: str) -> MethodSpec:
    """The spec registered under ``name``.

    Raises:
        EvaluationInputError: for an unknown name; the message lists the known ones.
    """
    try:
        return METHODS[name]
    except KeyError:
        raise EvaluationInputError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None


def configured(name: str, tau: float, version_guard: int | None = None) -> Any:
    """The configuration of method ``name`` at temperature ``tau`` (unchanged when it has no ``tau``).

    ``version_guard``: the N of every method that holds its costs to a version guard (a
    ``version_guard`` field above 1: ``banditlp``, ``banditlp_naive_calibration``); the methods
    without one, and the ablation that turns it off, keep theirs. None changes nothing."""
    config = method_spec(name).config
    names = {f.name for f in dataclasses.fields(config)}
    if "tau" in names:
        config = dataclasses.replace(config, tau=float(tau))
    if version_guard is not None and "version_guard" in names and config.version_guard > 1:
        config = dataclasses.replace(config, version_guard=int(version_guard))
    return config


def build_method(name: str, context: MethodContext, tau: float, version_guard: int | None = None) -> Method:
    """A fresh instance of method ``name`` at temperature ``tau`` (and version guard, see :func:`configured`)."""
    return method_spec(name).build(configured(name, tau, version_guard), context)


def config_json(config: Any) -> dict[str, Any]:
    """A method configuration as JSON values (its dataclass fields)."""
    return dataclasses.asdict(config)
