"""The methods of the offline experiment: one contract (:mod:`.base`), one registry (:mod:`.registry`)."""

from evaluation.experiment.methods.base import Estimates, Method, MethodContext, Plan
from evaluation.experiment.methods.registry import (
    DEFAULT_METHODS,
    METHODS,
    MethodSpec,
    build_method,
    config_json,
    configured,
    method_spec,
)

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "Estimates",
    "Method",
    "MethodContext",
    "MethodSpec",
    "Plan",
    "build_method",
    "config_json",
    "configured",
    "method_spec",
]
