"""Reading a topic back in integration tests: every committed record, decoded, in partition order."""

from __future__ import annotations

import time
from collections.abc import Callable

from streams.kafka.connection import ConnectionConfig
from streams.kafka.reading import read_to_end
from streams.settings import Settings


def _connection(kafka: ConnectionConfig | str) -> ConnectionConfig:
    return kafka if isinstance(kafka, ConnectionConfig) else ConnectionConfig(kafka)


def read_raw(
    kafka: ConnectionConfig | str, topic: str, timeout_s: float = 60.0
) -> list[tuple[int, int, bytes | None, bytes]]:
    """``(partition, offset, key, value)`` of every committed record of ``topic``, from the
    beginning to the end offsets at the time of the call (read_committed), partition by partition
    in offset order."""
    out = [
        (m.partition(), m.offset(), m.key(), m.value())
        for m in read_to_end(_connection(kafka), topic, timeout_s=timeout_s)
    ]
    out.sort(key=lambda r: (r[0], r[1]))
    return out


def read_all(
    kafka: ConnectionConfig | str, topic: str, subject: str, timeout_s: float = 60.0
) -> list[tuple[bytes, dict]]:
    """``(key, decoded value)`` of every committed record of ``topic`` (see :func:`read_raw`)."""
    serde = Settings().serde()
    return [(key, serde.decode(subject, value)) for _, _, key, value in read_raw(kafka, topic, timeout_s)]


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    alive: Callable[[], None] | None = None,
    every_s: float = 0.5,
) -> None:
    """Poll ``condition`` until it holds; ``alive`` may raise when a process under test died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if alive is not None:
            alive()
        time.sleep(every_s)
    raise AssertionError(f"not reached within {timeout_s:.0f} s: {what}")
