"""The tuner's parameter distributions, kept in memory from the compacted topic.

``parameter-distribution`` (key: experiment) holds the tuner's ``(x_i, p_i)`` list: parameter
arms (knob settings such as ``tau``) and the share of users each serves. Every processors
worker reads it in full (``streams.score.compacted``), checks each record
(``ParameterDistributionRecord``) and keeps the newest valid version of each experiment; a
malformed one is dead-lettered and the previous version stays.

The scorer serves each user the arm its hash position falls in (``ParameterDistributionRecord.serve``,
``models.tuner.assignment``): the arm's ``tau`` replaces the configured one, and the scores (then the
decisions) name the arm as ``parameter_version = "<experiment>@<version>:<arm_id>"``
(``parameter_version_of``; ``parse_parameter_version`` reads it back). A worker with no distribution of
its experiment serves every user at its configured τ under ``"default"``, as before the tuner.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditlp.errors import BanditLPError
from models.tuner.assignment import Layout, initial_layout, user_positions
from streams.avro.serde import AvroSerde
from streams.dead_letters import DeadLetterSink
from streams.errors import ValidationError
from streams.kafka.connection import ConnectionConfig
from streams.records import at_least, check_id
from streams.score.compacted import CompactedFeed

log = logging.getLogger("banditlp.parameter_feed")

MAX_ARMS = 1_000
#: How far the arms' probabilities may sum from 1.
PROBABILITY_TOLERANCE = 1e-6
#: Knobs that must not be negative when an arm sets them.
NONNEGATIVE_KNOBS = frozenset({"tau", "gamma"})
#: How far an arm's length in a published layout may be from its probability.
LAYOUT_TOLERANCE = 1e-6
#: What the scores and decisions of a user served no tuner arm say.
DEFAULT_VERSION = "default"


def parameter_version_of(experiment: str, version: int, arm_id: str) -> str:
    """The ``parameter_version`` of a user served ``arm_id`` of ``experiment``'s distribution ``version``."""
    return f"{experiment}@{version}:{arm_id}"


def parse_parameter_version(value: str) -> tuple[str, int, str] | None:
    """``(experiment, version, arm_id)`` of a ``parameter_version``; None for ``"default"`` or one not
    written by ``parameter_version_of`` (an experiment name has no ``@``, a version no ``:``)."""
    experiment, at, rest = value.partition("@")
    version, colon, arm = rest.partition(":")
    if not (at and colon and experiment and arm and version.isdigit()):
        return None
    return experiment, int(version), arm


@dataclass(frozen=True, eq=False)
class ServedArms:
    """The arm each of n users is served.

    Attributes:
        taus: ``(n,)`` each user's Thompson temperature.
        parameter_versions: n ``parameter_version`` strings.
        arm_ids: n arm ids (``"default"`` without a distribution).
    """

    taus: np.ndarray
    parameter_versions: list[str]
    arm_ids: list[str]

    @classmethod
    def default(cls, n: int, tau: float) -> ServedArms:
        """Every user at ``tau``, under ``"default"``."""
        return cls(np.full(n, float(tau)), [DEFAULT_VERSION] * n, [DEFAULT_VERSION] * n)


@dataclass(frozen=True)
class ParameterArm:
    """One knob setting and the share of users it serves."""

    arm_id: str
    parameters: Mapping[str, float]
    probability: float


@dataclass(frozen=True)
class ParameterDistributionRecord:
    """One experiment's distribution over parameter arms.

    Attributes:
        arms: ``(n,)`` arms with distinct ids, probabilities in [0, 1] summing to 1.
        salt: mixed into every user's hash position.
        layout: which arm owns which part of [0, 1) (the published one, or the arms in id order).
    """

    experiment: str
    version: int
    created_at_ms: int
    arms: tuple[ParameterArm, ...]
    salt: str = ""
    layout: Layout | None = None

    def resolved_layout(self) -> Layout:
        """The layout users are served by: the published one, or the arms in id order."""
        return self.layout if self.layout is not None else initial_layout({a.arm_id: a.probability for a in self.arms})

    def serve(self, user_ids: list[str], default_tau: float) -> ServedArms:
        """The arm of each user (its hash position's interval of the layout), with the arm's ``tau``
        (``default_tau`` for an arm that sets none)."""
        layout = self.resolved_layout()
        owner = layout.locate(user_positions(user_ids, self.experiment, self.salt))  # (n,) interval index
        by_id = {a.arm_id: a for a in self.arms}
        interval_tau = np.array([by_id[a].parameters.get("tau", default_tau) for a in layout.owners])
        interval_version = [parameter_version_of(self.experiment, self.version, a) for a in layout.owners]
        return ServedArms(
            interval_tau[owner].astype(np.float64),
            [interval_version[k] for k in owner],
            [layout.owners[k] for k in owner],
        )

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> ParameterDistributionRecord:
        """From a decoded ``parameter-distribution`` value.

        Raises:
            ValidationError: an empty or oversized id; a version below 1 or a negative time;
                no arms or more than ``MAX_ARMS``; two arms of one id; a knob value or a
                probability that is not finite, a negative ``tau``/``gamma`` or probability;
                probabilities that do not sum to 1.
        """
        experiment = check_id("experiment", value["experiment"])
        if "@" in experiment:  # the parameter_version "<experiment>@<version>:<arm>" must read back
            raise ValidationError(f"experiment {experiment!r} has an '@'")
        arms_in = value["arms"]
        if not arms_in or len(arms_in) > MAX_ARMS:
            raise ValidationError(f"experiment {experiment} lists {len(arms_in)} arms; 1 to {MAX_ARMS} are allowed")
        arms = []
        for a in arms_in:
            arm_id = check_id("arm_id", a["arm_id"])
            params = {check_id("parameter name", k): float(v) for k, v in a["parameters"].items()}
            for k, v in params.items():
                if not math.isfinite(v) or (k in NONNEGATIVE_KNOBS and v < 0):
                    raise ValidationError(f"arm {arm_id} sets {k} = {v}")
            p = float(a["probability"])
            if not math.isfinite(p) or not 0.0 <= p <= 1.0:
                raise ValidationError(f"arm {arm_id} has probability {p}")
            arms.append(ParameterArm(arm_id, params, p))
        if len({a.arm_id for a in arms}) != len(arms):
            raise ValidationError(f"experiment {experiment} lists an arm id twice")
        total = math.fsum(a.probability for a in arms)
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            raise ValidationError(f"experiment {experiment}'s arm probabilities sum to {total}, not 1")
        layout = _layout_of(experiment, value.get("layout"), {a.arm_id: a.probability for a in arms})
        return cls(
            experiment,
            at_least("distribution version", value["version"], 1),
            at_least("created_at_ms", value["created_at_ms"]),
            tuple(arms),
            str(value.get("salt", "")),
            layout,
        )


def _layout_of(experiment: str, raw: dict[str, Any] | None, probs: dict[str, float]) -> Layout | None:
    """The published layout, checked against the arms: a valid partition of [0, 1) owned by the listed
    arms, each arm's total length within ``LAYOUT_TOLERANCE`` of its probability."""
    if raw is None:
        return None
    try:
        layout = Layout(np.asarray(raw["edges"], dtype=np.float64), tuple(raw["owners"]))
    except BanditLPError as exc:
        raise ValidationError(f"experiment {experiment}'s layout: {exc}") from None
    masses = layout.masses()
    unknown = set(masses) - set(probs)
    if unknown:
        raise ValidationError(f"experiment {experiment}'s layout names arms it does not list: {sorted(unknown)[:3]}")
    worst = max(abs(masses.get(a, 0.0) - p) for a, p in probs.items())
    if worst > LAYOUT_TOLERANCE:
        raise ValidationError(f"experiment {experiment}'s layout is {worst:.3g} off an arm's probability")
    return layout


class ParameterFeed(CompactedFeed):
    """The newest valid ``ParameterDistributionRecord`` of each experiment."""

    name = "parameter-feed"

    def __init__(
        self,
        connection: ConnectionConfig,
        serde: AvroSerde,
        topic: str,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        super().__init__(connection, serde, topic, "parameter-distribution", dead_letters)
        self._lock = threading.Lock()
        self._current: dict[str, ParameterDistributionRecord] = {}

    def handle(self, value: dict[str, Any]) -> None:
        record = ParameterDistributionRecord.from_avro(value)
        with self._lock:
            held = self._current.get(record.experiment)
            if held is None or record.version > held.version:
                self._current[record.experiment] = record
                log.info("experiment %s: %d arms, version %d", record.experiment, len(record.arms), record.version)

    def distribution(self, experiment: str) -> ParameterDistributionRecord | None:
        """The newest valid distribution of ``experiment``, or None."""
        with self._lock:
            return self._current.get(experiment)
