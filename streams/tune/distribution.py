"""The ``parameter-distribution`` topic's writer side: arms in, a checked, versioned record on the topic.

An experiment's record (key: the experiment) lists its arms ``(arm_id, parameters, probability)``, a
version one above the last one on the topic, and the layout of the arms on [0, 1) that the scorer
serves users by (``models.tuner.assignment``). The layout has state: each new one is
``relayout(previous layout, new probabilities)``, which moves exactly TV(p, q) of the users, so the
publisher reads the experiment's newest record from the (compacted, one-partition) topic first and
lays the new arms out from its layout. The record is checked by the very code the scorer reads it
with (``ParameterDistributionRecord.from_avro``) before it is sent.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from models.tuner.assignment import Layout, initial_layout, relayout
from models.tuner.thompson import arm_id as point_arm_id
from streams.avro.serde import AvroSerde
from streams.decide.arm_knobs import check_knobs
from streams.errors import BrokerError, ConfigError, DecodeError, DeliveryError, ValidationError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.score.parameter_feed import ParameterDistributionRecord

log = logging.getLogger("banditlp.tune")

_ARM_SPEC = re.compile(r"^(?:(?P<id>[^/=:]+)/)?(?P<params>[^:]+):(?P<p>[^:]+)$")


@dataclass(frozen=True)
class ArmSpec:
    """One arm to publish: its knob values and share of users."""

    arm_id: str
    parameters: Mapping[str, float]
    probability: float


def default_arm_id(parameters: Mapping[str, float]) -> str:
    """A stable id of a knob setting: ``models.tuner``'s id of its values in knob-name order."""
    return point_arm_id(np.array([parameters[k] for k in sorted(parameters)], dtype=np.float64))


def parse_arm(spec: str) -> ArmSpec:
    """An arm from ``[ARM_ID/]KNOB=VALUE[,KNOB=VALUE...]:PROBABILITY``, e.g. ``tau=0.5:0.3`` or
    ``greedy/tau=0:0.5`` (without an id: ``default_arm_id`` of the knobs).

    Raises:
        ConfigError: the spec does not read so.
    """
    m = _ARM_SPEC.match(spec.strip())
    if m is None:
        raise ConfigError(f"arm {spec!r} is not [ARM_ID/]KNOB=VALUE[,KNOB=VALUE...]:PROBABILITY")
    try:
        params = {}
        for part in m["params"].split(","):
            name, value = part.split("=")
            params[name.strip()] = float(value)
        probability = float(m["p"])
    except ValueError:
        raise ConfigError(f"arm {spec!r}: knob values and the probability must be numbers") from None
    return ArmSpec(m["id"] or default_arm_id(params), params, probability)


def distribution_value(
    experiment: str,
    version: int,
    arms: Sequence[ArmSpec],
    layout: Layout,
    salt: str = "",
    created_at_ms: int | None = None,
) -> dict[str, Any]:
    """The ``parameter-distribution`` Avro value of ``arms`` laid out by ``layout``."""
    return {
        "experiment": experiment,
        "version": int(version),
        "created_at_ms": int(time.time() * 1000) if created_at_ms is None else int(created_at_ms),
        "arms": [
            {
                "arm_id": a.arm_id,
                "parameters": {k: float(v) for k, v in a.parameters.items()},
                "probability": a.probability,
            }
            for a in arms
        ],
        "salt": salt,
        "layout": {"edges": [float(e) for e in layout.edges], "owners": list(layout.owners)},
    }


def next_distribution(
    previous: ParameterDistributionRecord | None,
    experiment: str,
    arms: Sequence[ArmSpec],
    salt: str = "",
    created_at_ms: int | None = None,
) -> ParameterDistributionRecord:
    """The record that follows ``previous`` (None: the experiment's first): version + 1, and the layout
    relaid out from the previous one (moving TV(p, q) of the users), or laid out afresh for a first
    record or a new salt (which reshuffles every user anyway).

    Raises:
        ValidationError: the arms are not a valid distribution (as the scorer would reject it), or an
            arm's allocator knobs are out of range (``streams.decide.arm_knobs``).
    """
    for a in arms:
        check_knobs(a.arm_id, a.parameters)
    probs = {a.arm_id: a.probability for a in arms}
    if len(probs) != len(arms):
        raise ValidationError(f"experiment {experiment} lists an arm id twice")
    total = sum(probs.values())
    if not all(np.isfinite(p) and p >= 0 for p in probs.values()) or abs(total - 1.0) > 1e-6:
        raise ValidationError(f"experiment {experiment}'s arm probabilities sum to {total}, not 1")
    normalised = {a: p / total for a, p in probs.items()}  # relayout wants a sum within 1e-9
    keep = previous is not None and previous.salt == salt
    try:
        layout = (
            relayout(previous.resolved_layout(), normalised)  # type: ignore[union-attr]
            if keep
            else initial_layout(normalised)
        )
    except ValueError as exc:
        raise ValidationError(f"experiment {experiment}: {exc}") from None
    version = previous.version + 1 if previous is not None else 1
    value = distribution_value(experiment, version, arms, layout, salt, created_at_ms)
    return ParameterDistributionRecord.from_avro(value)


def record_value(record: ParameterDistributionRecord) -> dict[str, Any]:
    """The Avro value of a checked record (its layout resolved)."""
    arms = [ArmSpec(a.arm_id, a.parameters, a.probability) for a in record.arms]
    return distribution_value(
        record.experiment, record.version, arms, record.resolved_layout(), record.salt, record.created_at_ms
    )


def read_latest(
    connection: ConnectionConfig, serde: AvroSerde, topic: str, experiment: str, timeout_s: float = 30.0
) -> ParameterDistributionRecord | None:
    """The newest valid record of ``experiment`` on the topic, read from its beginning to the end offset
    it has now (None: none); malformed records are skipped with a log line (the scorers dead-letter them).

    Raises:
        BrokerError: the topic's end offset could not be read, or reading it took over ``timeout_s``.
    """
    consumer = clients.consumer(
        connection,
        {"group.id": "banditlp-tuner-read", "enable.auto.commit": False, "isolation.level": "read_committed"},
    )
    tp = TopicPartition(topic, 0)
    try:
        try:
            _, end = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        except Exception as exc:
            raise BrokerError(f"no end offset for {topic}: {exc}") from exc
        best: ParameterDistributionRecord | None = None
        if end <= 0:
            return None
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while consumer.position([tp])[0].offset < end:
            if time.monotonic() > deadline:
                raise BrokerError(f"{topic} not read to offset {end} in {timeout_s:.0f} s")
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.value() is None:
                continue
            if msg.key() != experiment.encode():
                continue
            try:
                record = ParameterDistributionRecord.from_avro(serde.decode("parameter-distribution", msg.value()))
            except (DecodeError, ValidationError) as exc:
                log.warning("skipped %s@%d: %s", topic, msg.offset(), exc)
                continue
            if record.experiment == experiment and (best is None or record.version > best.version):
                best = record
        return best
    finally:
        consumer.close()


def send(
    connection: ConnectionConfig,
    serde: AvroSerde,
    topic: str,
    record: ParameterDistributionRecord,
    timeout_s: float = 30,
) -> None:
    """Write ``record`` (key: its experiment) and wait for the broker's acknowledgement.

    Raises:
        DeliveryError: it was not acknowledged in ``timeout_s``.
    """
    producer = clients.producer(connection, {"enable.idempotence": True})
    errors: list[str] = []
    clients.produce(
        producer,
        topic,
        serde.encode("parameter-distribution", record_value(record)),
        record.experiment.encode(),
        on_delivery=lambda err, _msg: errors.append(str(err)) if err is not None else None,
    )
    left = producer.flush(timeout_s)
    if left or errors:
        raise DeliveryError(
            f"parameter distribution {record.experiment} v{record.version} not delivered: {errors or left}"
        )
    log.info("published %s v%d: %d arms", record.experiment, record.version, len(record.arms))


def publish(
    connection: ConnectionConfig,
    serde: AvroSerde,
    topic: str,
    experiment: str,
    arms: Sequence[ArmSpec],
    salt: str = "",
    previous: ParameterDistributionRecord | None = None,
) -> ParameterDistributionRecord:
    """Publish ``arms`` as ``experiment``'s next distribution, laid out from the newest one on the topic
    (or from ``previous``, when the caller holds the newest already); returns what was published.

    Raises:
        ValidationError: the arms are not a valid distribution.
        BrokerError, DeliveryError: the topic could not be read or written.
    """
    held = previous if previous is not None else read_latest(connection, serde, topic, experiment)
    record = next_distribution(held, experiment, arms, salt)
    send(connection, serde, topic, record)
    return record
