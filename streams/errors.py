"""Errors raised by the stream layer; each kind has one fixed response.

- ``DecodeError`` (bytes that are not our Avro, unknown schema id, schema mismatch): the
  record goes to dead-letters with its reason and original bytes; the stream goes on.
- ``ValidationError`` (decoded but unusable: NaN/inf, empty or oversized lists, unknown
  batch): dead-letter, go on.
- ``BrokerError`` / ``ConfigError`` / ``DeliveryError``: stop the process with a clear message.
"""

from __future__ import annotations

from banditlp.errors import BanditLPError


class StreamError(BanditLPError):
    """Base of the stream layer's errors."""


class ConfigError(StreamError):
    """A setting is missing or malformed (stop)."""


class BrokerError(StreamError):
    """The local broker could not be provisioned, started or reached (stop)."""


class DeliveryError(StreamError):
    """Produced records were not acknowledged by Kafka after the producer's retries (stop: the
    offsets of the records they came from stay uncommitted, so a restart redoes them)."""


class SchemaError(StreamError):
    """A schema file is missing or invalid, or a record does not fit its schema on encode."""


class DecodeError(StreamError):
    """A record's bytes could not be decoded (dead-letter).

    Attributes:
        topic: the topic the record came from.
        partition: its partition, or -1 when unknown.
        offset: its offset, or -1 when unknown.
        cause: a short reason (``"not Confluent wire format"``, ``"unknown schema id 7"``, ...).
    """

    def __init__(self, topic: str, cause: str, *, partition: int = -1, offset: int = -1) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.cause = cause
        super().__init__(f"cannot decode record from {topic}[{partition}]@{offset}: {cause}")


class ValidationError(StreamError):
    """A decoded record breaks an invariant (NaN/inf, sizes, unknown batch) (dead-letter)."""
