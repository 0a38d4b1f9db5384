"""Keeps the newest model snapshot of one model name in memory, from the compacted topic.

Every scorer needs the same global model, so each worker reads ``model-snapshots`` in full
(its own consumer, no group, from the beginning) in a background thread and swaps the
model in with one assignment when a newer version arrives: scorers pick up a retrained
model without restarting. At start the feed reads the topic up to its end offset before it
reports itself caught up, so a scorer that waits for that scores with the newest snapshot
rather than with the prior. Until a snapshot exists, scoring uses the untrained prior, whose
input width is ``feature_dim`` when configured, else the width of the first record scored.
A malformed snapshot, or a newer version of the model that does not load, is dead-lettered
(``streams.score.compacted``) and the current model stays.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from banditlp.errors import BanditLPError
from models.neural import NeuralThompsonModel
from models.snapshot import read_header
from streams.avro.serde import AvroSerde
from streams.dead_letters import DeadLetterSink
from streams.errors import ValidationError
from streams.kafka.connection import ConnectionConfig
from streams.records import at_least, check_id
from streams.score.compacted import CompactedFeed
from streams.score.model import ScoringModel

log = logging.getLogger("banditlp.model_feed")

#: The snapshot kind the scorer loads.
SCORER_KIND = NeuralThompsonModel.snapshot_kind


@dataclass(frozen=True, eq=False)
class ModelSnapshotRecord:
    """One ``model-snapshots`` value whose envelope and payload agree.

    Attributes:
        payload: snapshot bytes (``models.snapshot``) whose header names the same ``name``,
            ``version`` and ``kind`` as the envelope (checked, with the payload's checksum).
    """

    name: str
    version: int
    kind: str
    created_at_ms: int
    n_observations: int
    payload: bytes

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> ModelSnapshotRecord:
        """From a decoded ``model-snapshots`` value.

        Raises:
            ValidationError: an empty or oversized name or kind, a version below 1, a negative
                time or count, a payload that is not a snapshot (bad magic, checksum, truncated)
                or whose header names another model, version or kind than the envelope.
        """
        name, kind = check_id("model name", value["name"]), check_id("snapshot kind", value["kind"])
        version = at_least("snapshot version", value["version"], 1)
        payload = value["payload"]
        try:
            header = read_header(payload)
        except BanditLPError as exc:
            raise ValidationError(f"snapshot {name} v{version}: the payload is not a snapshot: {exc}") from exc
        if (header.name, header.version, header.kind) != (name, version, kind):
            raise ValidationError(
                f"snapshot {name} v{version} ({kind}) carries a payload of {header.name!r} "
                f"v{header.version} ({header.kind})"
            )
        return cls(
            name,
            version,
            kind,
            at_least("created_at_ms", value["created_at_ms"]),
            at_least("n_observations", value["n_observations"]),
            payload,
        )


def load_scoring_model(snap: ModelSnapshotRecord) -> ScoringModel:
    """The scorer's model of a checked snapshot.

    Raises:
        ValidationError: the snapshot is not of the scorer's kind, does not load, or holds a
            model that was never fitted (scoring with it raises ``NotFittedError``, which
            would stop the scorer at its next take).
    """
    if snap.kind != SCORER_KIND:
        raise ValidationError(f"snapshot {snap.name} v{snap.version} is a {snap.kind}, the scorer needs {SCORER_KIND}")
    try:
        model = ScoringModel.from_snapshot(snap.name, snap.version, snap.payload)
    except (BanditLPError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ValidationError(f"snapshot {snap.name} v{snap.version} does not load: {exc}") from exc
    if not model.model.fitted:
        raise ValidationError(f"snapshot {snap.name} v{snap.version} holds a model that was never fitted")
    return model


class ModelFeed(CompactedFeed):
    """The current ``ScoringModel`` of ``model_name``, refreshed from ``topic``.

    Every snapshot is checked (``ModelSnapshotRecord``); a newer version of ``model_name`` is
    loaded, and one that does not load, or is not of the scorer's kind, is dead-lettered like a
    malformed one. Snapshots of other models, and versions not newer than the current one, are
    left alone.
    """

    name = "model-feed"

    def __init__(
        self,
        connection: ConnectionConfig,
        serde: AvroSerde,
        topic: str,
        model_name: str,
        feature_dim: int | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        super().__init__(connection, serde, topic, "model-snapshots", dead_letters)
        self.model_name = model_name
        self.feature_dim = feature_dim
        self._model: ScoringModel | None = None
        self._lock = threading.Lock()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        """Wait (without blocking the event loop) until the snapshots topic has been read to
        the end offset it had at start, at most ``timeout_s``; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.caught_up.is_set():
            log.warning("model feed not caught up after %.0f s; scoring with what it has", timeout_s)
        return self.caught_up.is_set()

    def model_for(self, feature_dim: int) -> ScoringModel:
        """The newest snapshot, or the untrained prior (of ``self.feature_dim`` inputs when
        configured, else ``feature_dim``).

        Raises:
            ValidationError: ``feature_dim`` is not the model's input width.
        """
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = ScoringModel.prior(self.model_name, self.feature_dim or feature_dim)
                model = self._model
        if model.feature_dim != feature_dim:
            raise ValidationError(
                f"{feature_dim} features, but model {model.name} v{model.version} expects {model.feature_dim}"
            )
        return model

    @property
    def version(self) -> int:
        return -1 if self._model is None else self._model.version

    def handle(self, value: dict[str, Any]) -> None:
        self.offer(value)

    def offer(self, value: dict[str, Any]) -> bool:
        """Swap in a decoded ``model-snapshots`` value if it is a newer version of our model.

        Raises:
            ValidationError: the snapshot is malformed, or a newer version of our model that
                is not of the scorer's kind or does not load.
        """
        snap = ModelSnapshotRecord.from_avro(value)
        if snap.name != self.model_name or snap.version <= self.version:
            return False
        model = load_scoring_model(snap)
        with self._lock:
            if self._model is None or model.version > self._model.version:
                self._model = model
        log.info("model %s v%d loaded", model.name, model.version)
        return True
