"""The tuner's parameter distributions, kept in memory from the compacted topic.

``parameter-distribution`` (key: experiment) holds the tuner's ``(x_i, p_i)`` list: parameter
arms (knob settings such as ``tau``) and the share of users each serves. Every processors
worker reads it in full (``streams.score.compacted``), checks each record
(``ParameterDistributionRecord``) and keeps the newest valid version of each experiment; a
malformed one is dead-lettered and the previous version stays. Serving users by arm is the
tuner's part of the design; until then the scorer scores every user at its configured τ, and
this feed is where the arms it will use are held, already checked.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    """

    experiment: str
    version: int
    created_at_ms: int
    arms: tuple[ParameterArm, ...]

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
        return cls(
            experiment,
            at_least("distribution version", value["version"], 1),
            at_least("created_at_ms", value["created_at_ms"]),
            tuple(arms),
        )


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
