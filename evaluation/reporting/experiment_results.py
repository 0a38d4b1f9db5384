"""An experiment's ``results.json``, read into typed values.

The file is written by the offline experiment::

    {"config": {...},
     "methods": {NAME: {"reward": [[per batch] per seed], "oracle_fraction": [[...]],
                        "unsub_usage": [[...]], "provider_min_shortfall": [[...]],
                        "overlap_at_k": [[...]], ...}},
     ...sweeps under their own keys}

Every per-batch measure is a list of per-seed lists, one number per batch (``null`` or ``NaN``
for a batch without a value); a flat list of numbers is read as a single seed. A measure may
also be a mapping of such lists (for example one calibration error per outcome), read as one
series per entry, ``"calibration_error.unsub"``.

The measures the page is built around (:data:`CORE_SERIES`) must have that shape when present:
anything else there is an error, so a broken file is not drawn as a plausible one. Any other key
of a method is shown when it is a per-batch measure or a calibration curve and listed as not
shown otherwise; top-level keys other than ``config`` and ``methods`` are read as sweeps
(``evaluation.reporting.sweeps``). Nothing optional is required.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.reporting.bands import band
from evaluation.reporting.errors import ReportInputError
from evaluation.reporting.json_values import json_kind as _kind
from evaluation.reporting.json_values import per_seed_matrix
from evaluation.reporting.reductions import USAGE_WINDOW
from evaluation.reporting.sweeps import Sweep, read_sweeps

RESULTS_JSON = "results.json"

#: Per-batch measures with a fixed meaning: validated strictly where present.
CORE_SERIES = ("reward", "oracle_fraction", "unsub_usage", "provider_min_shortfall", "overlap_at_k")

#: The method every regret is measured against.
ORACLE_METHOD = "oracle_lp"

# Names a calibration curve's two columns go by.
_PREDICTED_KEYS = ("predicted", "mean_predicted", "prob_pred", "predicted_mean", "x")
_OBSERVED_KEYS = ("observed", "fraction_positive", "prob_true", "observed_rate", "empirical", "y")


@dataclass(frozen=True, eq=False)
class CalibrationCurve:
    """A reliability curve: observed frequency against predicted probability, per bin.

    Attributes:
        label: What was calibrated (an outcome such as ``"unsub"``; empty when unnamed).
        predicted: ``(n_bins,)`` mean predicted probability per bin (averaged over seeds).
        observed: ``(n_bins,)`` observed frequency per bin (averaged over seeds).
    """

    label: str
    predicted: FloatArray
    observed: FloatArray


@dataclass(frozen=True, eq=False)
class MethodResults:
    """One method's measures.

    Attributes:
        name: The method's name as the file spells it.
        series: Measure name -> ``(S, B)`` per-seed, per-batch values (nan where missing).
        curves: Calibration curves found under the method.
    """

    name: str
    series: Mapping[str, FloatArray]
    curves: tuple[CalibrationCurve, ...] = ()

    @property
    def n_seeds(self) -> int:
        """The most seeds any of its measures holds."""
        return max((v.shape[0] for v in self.series.values()), default=0)

    @property
    def n_batches(self) -> int:
        """The most batches any of its measures holds."""
        return max((v.shape[1] for v in self.series.values()), default=0)


@dataclass(frozen=True, eq=False)
class ExperimentResults:
    """A whole ``results.json``.

    Attributes:
        config: The experiment's configuration, as written.
        methods: Method name -> its results, in the file's order.
        sweeps: The sweeps found at the top level.
        not_shown: One line per key that was present but could not be shown, with the reason.
        usage_from: First batch of the budget-usage window: the config's ``summary_from`` when
            it has one, else ``USAGE_WINDOW[0]``.
    """

    config: Mapping[str, Any]
    methods: Mapping[str, MethodResults]
    sweeps: tuple[Sweep, ...] = ()
    not_shown: tuple[str, ...] = field(default=())
    usage_from: int = USAGE_WINDOW[0]

    def series_names(self) -> list[str]:
        """Every measure some method has a value of, core measures first, then in order of appearance."""
        seen: dict[str, None] = {}
        for method in self.methods.values():
            for name, values in method.series.items():
                if np.isfinite(values).any():
                    seen.setdefault(name, None)
        return sorted(seen, key=lambda n: CORE_SERIES.index(n) if n in CORE_SERIES else len(CORE_SERIES))

    def holding(self, name: str) -> dict[str, FloatArray]:
        """Method name -> ``(S, B)`` values of measure ``name``, for the methods with a value of it.

        A method whose values are all missing (``null``: e.g. a diagnostic of a model it does not
        have) is left out.
        """
        return {
            m.name: m.series[name]
            for m in self.methods.values()
            if name in m.series and np.isfinite(m.series[name]).any()
        }


def load_results(path: Path) -> ExperimentResults:
    """Read and validate an experiment's ``results.json``.

    Args:
        path: The file.

    Returns:
        The results.

    Raises:
        ReportInputError: if the file cannot be read, is not JSON, has no non-empty ``methods``
            mapping, or a core measure (:data:`CORE_SERIES`) is not a list of per-seed lists
            of numbers of equal length.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: cannot read it: {exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    return parse_results(document, source=str(path))


def parse_results(document: Any, source: str = RESULTS_JSON) -> ExperimentResults:
    """Validate a decoded ``results.json`` document (see the module docstring for its shape).

    Args:
        document: What ``json.loads`` returned.
        source: The file's name, for messages.

    Returns:
        The results.

    Raises:
        ReportInputError: as :func:`load_results`.
    """
    if not isinstance(document, dict):
        raise ReportInputError(f"{source}: expected a JSON object at the top, got {_kind(document)}")
    methods_doc = document.get("methods")
    if not isinstance(methods_doc, dict) or not methods_doc:
        raise ReportInputError(
            f"{source}: expected a non-empty object under 'methods' (method name -> measures), "
            f"got {_kind(methods_doc) if 'methods' in document else 'no such key'}"
        )
    not_shown: list[str] = []
    config = document.get("config", {})
    if not isinstance(config, dict):
        not_shown.append(f"config: expected an object, got {_kind(config)}")
        config = {}
    methods: dict[str, MethodResults] = {}
    for name, measures in methods_doc.items():
        if not isinstance(measures, dict):
            raise ReportInputError(f"{source}: methods.{name} must be an object of measures, got {_kind(measures)}")
        methods[str(name)] = _method(str(name), measures, source, not_shown)
    rest = {k: v for k, v in document.items() if k not in ("config", "methods")}
    usage_from = config.get("summary_from", USAGE_WINDOW[0])
    if not isinstance(usage_from, int) or isinstance(usage_from, bool) or usage_from < 1:
        usage_from = USAGE_WINDOW[0]
    sweeps, sweep_notes = read_sweeps(rest, methods, usage_from)
    not_shown.extend(sweep_notes)
    return ExperimentResults(
        config=config, methods=methods, sweeps=sweeps, not_shown=tuple(not_shown), usage_from=usage_from
    )


def _method(name: str, measures: dict[str, Any], source: str, not_shown: list[str]) -> MethodResults:
    series: dict[str, FloatArray] = {}
    curves: list[CalibrationCurve] = []
    for key, value in measures.items():
        where = f"methods.{name}.{key}"
        if _is_calibration_key(key) and isinstance(value, dict):
            found = _curves(value)
            if found:
                curves.extend(found)
                continue
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                try:
                    series[f"{key}.{sub}"] = per_seed_matrix(sub_value, f"{where}.{sub}")
                except ReportInputError as exc:
                    if key in CORE_SERIES:
                        raise ReportInputError(f"{source}: {exc}") from None
                    not_shown.append(str(exc))
            continue
        try:
            series[key] = per_seed_matrix(value, where)
        except ReportInputError as exc:
            if key in CORE_SERIES:
                raise ReportInputError(f"{source}: {exc}") from None
            not_shown.append(str(exc))
    return MethodResults(name=name, series=series, curves=tuple(curves))


def _is_calibration_key(key: str) -> bool:
    lowered = key.lower()
    return ("calibration" in lowered or "reliability" in lowered) and "error" not in lowered


def _curves(value: dict[str, Any]) -> list[CalibrationCurve]:
    # A curve ({"predicted": [...], "observed": [...]}) or a mapping of outcome -> curve.
    single = _curve("", value)
    if single is not None:
        return [single]
    found = []
    for label, sub in value.items():
        if isinstance(sub, dict):
            curve = _curve(str(label), sub)
            if curve is not None:
                found.append(curve)
    return found


def _curve(label: str, value: dict[str, Any]) -> CalibrationCurve | None:
    predicted = next((value[k] for k in _PREDICTED_KEYS if k in value), None)
    observed = next((value[k] for k in _OBSERVED_KEYS if k in value), None)
    if predicted is None or observed is None:
        return None
    try:
        p = per_seed_matrix(predicted, "predicted")
        o = per_seed_matrix(observed, "observed")
    except ReportInputError:
        return None
    if p.shape[1] != o.shape[1]:
        return None
    return CalibrationCurve(label=label, predicted=band(p).mean, observed=band(o).mean)
