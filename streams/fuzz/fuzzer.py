"""The fuzzer: seeded streams of invalid records for one input subject, each with how to find it.

``Fuzzer.records(subject, base, n)`` turns valid values (``base(i)``: the caller's factory, one
per record so that ids differ) into ``n`` records that every consumer must reject: byte damage
(``streams.fuzz.mutations.BYTE_KINDS``, which must make the bytes undecodable) and rule damage
(``streams.fuzz.rules.RULES``, which leaves valid Avro that breaks the contract). Both are
checked against fastavro alone (the reference serde, not the columnar codecs the workers use,
and none of the workers' validation): a byte mutation that fastavro still decodes is drawn
again, and a rule mutation must encode and decode with fastavro. So a record that a worker
accepts, or that crashes it, is the worker's bug, not the fuzzer's.

Each record's key is ``fuzz-<subject>-<seed>-<i>``: a dead letter keeps the key, so the test
matches every record to its dead letter by it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.avro.serde import AvroSerde
from streams.errors import DecodeError, SchemaError
from streams.fuzz.mutations import BYTE_KINDS, NotApplicable, mutate_bytes, mutate_value
from streams.fuzz.rules import COMPACTED, RULES

#: Attempts to draw an applicable mutation before falling back to a truncated frame.
ATTEMPTS = 50


@dataclass(frozen=True)
class FuzzRecord:
    """One invalid record for topic ``subject``.

    Attributes:
        key: unique, ``fuzz-<subject>-<seed>-<i>`` (a dead letter keeps it).
        value: the bytes to produce (None: a tombstone).
        mutation: what was done, e.g. ``"non_finite candidates.[].features.[]"`` or ``"truncated"``.
        expect: the error class the consumer should give (``DecodeError`` or ``ValidationError``).
    """

    subject: str
    key: bytes
    value: bytes | None
    mutation: str
    expect: str


class Fuzzer:
    """Invalid records, seeded.

    Args:
        reference: a fastavro-only serde (``Settings.serde(columnar=False)``) on the same
            registry as the workers, so schema ids agree.
        seed: seeds every draw; the same seed gives the same records.
        byte_share: the share of records with byte damage (the rest break a rule).
        oversized_value_bytes: the size an ``oversized`` record's value is built to (just under
            the broker's ``message.max.bytes``, 1,048,588 by default, it tests that the dead
            letter of a record at the limit still fits).
        oversized_share: the share of the rule mutations that are ``oversized`` (they are big).
    """

    def __init__(
        self,
        reference: AvroSerde,
        seed: int,
        byte_share: float = 0.4,
        oversized_value_bytes: int = 1_000_000,
        oversized_share: float = 0.01,
    ) -> None:
        if reference.columnar:
            raise ValueError("the fuzzer's reference serde must be fastavro alone (columnar=False)")
        self.reference = reference
        self.seed = seed
        self.byte_share = byte_share
        self.oversized_value_bytes = oversized_value_bytes
        self.oversized_share = oversized_share

    def records(self, subject: str, base: Callable[[int], dict[str, Any]], n: int) -> list[FuzzRecord]:
        """``n`` invalid records of ``subject``; ``base(i)`` is a valid value for record ``i``.

        Raises:
            ValueError: ``base`` gave a value fastavro does not encode (not a valid base).
        """
        rng = np.random.default_rng([self.seed, sum(map(ord, subject))])
        registry = self.reference.registry
        own_id = registry.current(subject)[0]
        others = sorted({registry.current(s)[0] for s in RULES if s != subject} - {own_id})
        byte_kinds = [k for k in BYTE_KINDS if not (k == "tombstone" and subject in COMPACTED)]
        rules = RULES[subject]
        out = []
        for i in range(n):
            value = base(i)
            try:
                encoded = self.reference.encode(subject, value)
            except SchemaError as exc:
                raise ValueError(f"base({i}) of {subject} is not valid: {exc}") from exc
            key = f"fuzz-{subject}-{self.seed}-{i}".encode()
            if rng.random() < self.byte_share:
                out.append(self._bytes(subject, key, value, encoded, byte_kinds, others, rng))
            else:
                out.append(self._rule(subject, key, value, encoded, rules, rng))
        return out

    def _undecodable(self, subject: str, data: bytes | None) -> bool:
        try:
            self.reference.decode(subject, data)
        except DecodeError:
            return True
        return False

    def _bytes(
        self,
        subject: str,
        key: bytes,
        value: dict[str, Any],
        encoded: bytes,
        kinds: list[str],
        others: list[int],
        rng: np.random.Generator,
    ) -> FuzzRecord:
        registry = self.reference.registry
        for _ in range(ATTEMPTS):
            kind = kinds[int(rng.integers(len(kinds)))]
            data = mutate_bytes(kind, registry, subject, value, encoded, others, rng)
            if self._undecodable(subject, data):
                return FuzzRecord(subject, key, data, kind, "DecodeError")
        data = encoded[: int(rng.integers(len(encoded)))]  # a truncated frame never decodes
        return FuzzRecord(subject, key, data, "truncated", "DecodeError")

    def _rule(
        self,
        subject: str,
        key: bytes,
        value: dict[str, Any],
        encoded: bytes,
        rules: tuple[Any, ...],
        rng: np.random.Generator,
    ) -> FuzzRecord:
        oversized = [r for r in rules if r.kind == "oversized"]
        others = [r for r in rules if r.kind != "oversized"]
        # the id that makes the value about oversized_value_bytes long (a varint grows by 3 bytes)
        oversize = max(1, self.oversized_value_bytes - len(encoded) - 3)
        for _ in range(ATTEMPTS):
            pool = oversized if oversized and rng.random() < self.oversized_share else others
            rule = pool[int(rng.integers(len(pool)))]
            try:
                mutated = mutate_value(value, rule, rng, oversize)
                data = self.reference.encode(subject, mutated)
            except (NotApplicable, SchemaError):
                continue
            self.reference.decode(subject, data)  # valid Avro: raises if the mutation broke the format
            return FuzzRecord(subject, key, data, str(rule), "ValidationError")
        return self._bytes(subject, key, value, encoded, ["truncated"], [], rng)
