"""A live tuning run's directory: ``DIR/tune-live.json``, rewritten after every step of the tuner job.

What ``banditlp report DIR`` shows of a run (``evaluation.reporting.tune_run``)::

    {"experiment": "tau", "knobs": [["tau", 0.0, 2.0]], "windows": 12, "max_unsubscription_rate": 0.01,
     "steps": [{"step": 1, "at_ms": ..., "version": 2 | null (nothing published),
                "arms": [{"arm_id", "parameters": {knob: value}, "probability"}]   (the distribution in force),
                "metrics": [{"arm_id", "n_feedback", "reward_per_send", "unsubscriptions_per_send",
                             "decisions", "sends", "overlap_at_k", "allocation_variance", "windows"}]}]}

``metrics`` are the per-arm sums of the windows that counted at that step (``streams.tune.windows``):
per send of feedback, and the decisions' mean overlap@K and allocation variance per pair (null where
nothing was measured). ``--publish --out DIR`` appends its one step the same way.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from evaluation.reporting.tune_run import TUNE_LIVE_JSON
from streams.errors import ConfigError
from streams.score.parameter_feed import ParameterDistributionRecord
from streams.tune.windows import ArmWindow, summed

__all__ = ["TUNE_LIVE_JSON", "TuneRunLog", "arm_metrics"]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 and math.isfinite(num) else None


def arm_metrics(windows: dict[str, list[ArmWindow]]) -> list[dict[str, Any]]:
    """One entry per arm of the windows that counted (``run_log``'s ``metrics``)."""
    out = []
    for arm, ws in sorted(windows.items()):
        s = summed(ws)
        out.append(
            {
                "arm_id": arm,
                "n_feedback": int(s["n_feedback"]),
                "reward_per_send": _ratio(s["value_sum"], s["n_feedback"]),
                "unsubscriptions_per_send": _ratio(s["unsubscriptions"], s["n_feedback"]),
                "decisions": int(s["decisions"]),
                "sends": int(s["sends"]),
                "overlap_at_k": _ratio(s["overlap_sum"], s["overlap_users"]),
                "allocation_variance": _ratio(s["variance_sum"], s["pairs"]),
                "windows": len(ws),
            }
        )
    return out


class TuneRunLog:
    """Appends one step per call to ``DIR/tune-live.json`` (kept whole on disk after each write)."""

    def __init__(
        self,
        run_dir: Path,
        experiment: str,
        knobs: tuple[tuple[str, float, float], ...] = (),
        windows: int | None = None,
        max_unsubscription_rate: float | None = None,
    ) -> None:
        self.path = Path(run_dir) / TUNE_LIVE_JSON
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            document = json.loads(self.path.read_text()) if self.path.is_file() else None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot use it as a tuning run's log: {exc}") from exc
        if document is not None and document.get("experiment") != experiment:
            raise ConfigError(f"{self.path} is experiment {document.get('experiment')!r}'s, not {experiment!r}'s")
        self.document: dict[str, Any] = document or {"experiment": experiment, "steps": []}
        self.document["knobs"] = [list(k) for k in knobs] or self.document.get("knobs", [])
        if windows is not None:
            self.document["windows"] = windows
        if max_unsubscription_rate is not None:
            self.document["max_unsubscription_rate"] = max_unsubscription_rate

    def step(
        self,
        record: ParameterDistributionRecord | None,
        held: ParameterDistributionRecord | None,
        windows: dict[str, list[ArmWindow]],
    ) -> None:
        """Log one step: ``record`` what it published (None: nothing), ``held`` the distribution in force
        after it, ``windows`` the per-arm windows that counted.

        Raises:
            ConfigError: the file cannot be written.
        """
        current = record if record is not None else held
        steps = self.document["steps"]
        steps.append(
            {
                "step": len(steps) + 1,
                "at_ms": int(time.time() * 1000),
                "version": record.version if record is not None else None,
                "distribution_version": current.version if current is not None else None,
                "arms": [
                    {"arm_id": a.arm_id, "parameters": dict(a.parameters), "probability": a.probability}
                    for a in (current.arms if current is not None else ())
                ],
                "metrics": arm_metrics(windows),
            }
        )
        tmp = self.path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(self.document, indent=1))
            tmp.replace(self.path)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write it: {exc}") from exc
